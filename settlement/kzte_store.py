"""The KZTE watcher's reads and writes: invoices and payments in the database, cursors in Redis.

Cursors are only a shortcut: a flushed Redis (or an expired key) makes the next read list the
feed's history again from the oldest watched invoice on (the feed's floor), which costs calls
but never skips a payment, since a cursor moves only past signatures already decided and
recorded.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable, Mapping
from datetime import datetime, timedelta

from redis.exceptions import RedisError
from sqlalchemy import ColumnElement, or_, select
from sqlalchemy.orm import Session

from pos import invoices
from pos.errors import ConcurrentUpdateError
from pos.models import Invoice, Payment, PaymentStatus
from pos.runtime import Runtime
from pos.states import InvoiceStatus, PaymentMethod
from settlement.chains.solana_rpc import SignatureInfo, SigStatus
from settlement.kzte_feeds import Feed, FeedKind, Watched
from settlement.payments import Observation, observe_payment, reevaluate

log = logging.getLogger(__name__)

CHAIN = "solana"
METHOD = PaymentMethod.KZTE.value
CURSOR_PREFIX = "cc:kzte:until:"  # + reference key
DESTINATION_CURSOR_PREFIX = "cc:kzte:dest-until:"  # + destination token account
OPEN = (InvoiceStatus.NEW, InvoiceStatus.PROCESSING)
LATE = (InvoiceStatus.EXPIRED, InvoiceStatus.SETTLED)
_IN_CHUNK = 500  # bound parameters per IN (…) query


def cursor_key(feed: Feed) -> str:
    prefix = CURSOR_PREFIX if feed.kind is FeedKind.REFERENCE else DESTINATION_CURSOR_PREFIX
    return prefix + feed.address


def _scope(now: datetime, late_watch_hours: int) -> tuple[ColumnElement[bool], ...]:
    horizon = now - timedelta(hours=late_watch_hours)
    return (
        Invoice.method == PaymentMethod.KZTE,
        Invoice.kzte_reference.is_not(None),
        or_(
            Invoice.status.in_(OPEN),
            (Invoice.status.in_(LATE)) & (Invoice.created_at >= horizon),
        ),
    )


def load_watched(rt: Runtime, now: datetime) -> list[Watched]:
    """Open KZTE invoices, and expired / settled ones within the late window, with payments."""
    scope = _scope(now, rt.settings.late_watch_hours)
    with rt.session_factory() as session:
        rows = session.execute(
            select(
                Invoice.id,
                Invoice.kzte_reference,
                Invoice.kzte_recipient,
                Invoice.kzte_mint,
                Invoice.status,
                Invoice.created_at,
                Invoice.expires_at,
            ).where(*scope)
        ).all()
        watched = {
            r.id: Watched(
                r.id,
                r.kzte_reference,
                r.kzte_recipient,
                r.kzte_mint,
                r.status,
                r.created_at,
                r.expires_at,
            )
            for r in rows
            if r.kzte_reference and r.kzte_recipient and r.kzte_mint
        }
        payments = session.execute(
            select(Payment.invoice_id, Payment.txid, Payment.status, Payment.amount_atomic)
            .join(Invoice, Payment.invoice_id == Invoice.id)
            .where(Payment.chain == CHAIN, *scope)
        ).all()
    for p in payments:
        if p.invoice_id in watched:
            watched[p.invoice_id].payments[p.txid] = (p.status, p.amount_atomic)
    return list(watched.values())


def references_in_scope(rt: Runtime, keys: Collection[str], now: datetime) -> set[str]:
    """Which of these account keys are references of invoices the watcher must watch.

    A transaction that matched no loaded invoice may still pay one created after this pass
    loaded its invoices; such a transaction stays undecided until the next pass loads it.
    """
    found: set[str] = set()
    if not keys:
        return found
    scope = _scope(now, rt.settings.late_watch_hours)
    ordered = sorted(keys)
    with rt.session_factory() as session:
        for start in range(0, len(ordered), _IN_CHUNK):
            batch = ordered[start : start + _IN_CHUNK]
            found.update(
                str(r)
                for r in session.scalars(
                    select(Invoice.kzte_reference).where(Invoice.kzte_reference.in_(batch), *scope)
                )
            )
    return found


def payment_status(status: SigStatus | None) -> PaymentStatus | None:
    """Our payment status for a node's signature status (None: not decided yet)."""
    if status is None or status.failed:
        return None
    if status.commitment == "finalized":
        return PaymentStatus.FINAL
    if status.commitment == "confirmed":
        return PaymentStatus.SEEN
    return None  # "processed" can still be dropped


def observation(
    sig: str, amount: int, status: PaymentStatus, seen: SigStatus, info: SignatureInfo | None
) -> Observation:
    return Observation(
        chain=CHAIN,
        txid=sig,
        output_index=0,
        amount_atomic=amount,
        status=status,
        confirmations=seen.confirmations or 0,
        block_height=seen.slot,  # the slot: Solana's position in the chain
        seen_at=None if info is None else info.block_time,
    )


def record(rt: Runtime, observations: Mapping[str, list[Observation]]) -> tuple[int, int, set[str]]:
    """Write observations invoice by invoice: (payments changed, events, ids to retry)."""
    changed = events = 0
    failed: set[str] = set()
    for invoice_id, seen in observations.items():
        with rt.session_factory() as session:
            try:
                did = _apply(session, invoice_id, seen)
                made = reevaluate(
                    session,
                    session.get_one(Invoice, invoice_id),
                    late_window=timedelta(hours=rt.settings.late_watch_hours),
                )
                session.commit()
            except ConcurrentUpdateError as exc:
                session.rollback()
                log.info("invoice %s changed meanwhile; next pass retries: %s", invoice_id, exc)
                failed.add(invoice_id)
                continue
            changed += did
            events += len(made)
            invoices.publish_after_commit(rt.session_factory, rt.coordinator, session)
    return changed, events, failed


def _apply(session: Session, invoice_id: str, seen: list[Observation]) -> int:
    invoice = session.get_one(Invoice, invoice_id)
    changed = 0
    for observation in seen:
        owner = session.scalar(
            select(Payment.invoice_id).where(
                Payment.chain == CHAIN, Payment.txid == observation.txid, Payment.output_index == 0
            )
        )
        if owner is not None and owner != invoice_id:
            # One transfer carrying two invoices' references pays only the first one.
            log.warning(
                "%s already pays invoice %s; not counted for %s",
                observation.txid,
                owner,
                invoice_id,
            )
            continue
        _payment, did_change = observe_payment(session, invoice, observation)
        changed += int(did_change)
        if did_change:
            log.info(
                "invoice %s: payment %s of %d base units is %s",
                invoice_id,
                observation.txid,
                observation.amount_atomic,
                observation.status,
            )
    session.flush()
    session.expire(invoice, ["payments"])  # reevaluate sums the rows just written
    return changed


def expire_proven(rt: Runtime, marks: Mapping[str, datetime], now: datetime) -> list[str]:
    """Expire unpaid invoices the watcher saw completely past their window (`marks`).

    The same transition as pos.invoices.expire_due, for the invoices its one-per-method
    watermark cannot reach yet (see kzte_feeds.expiry_marks).
    """
    expired: list[str] = []
    with rt.session_factory() as session:
        for invoice_id, mark in marks.items():
            invoice = session.get(Invoice, invoice_id)
            if invoice is None or invoice.status is not InvoiceStatus.NEW:
                continue
            if invoice.expires_at > mark:
                continue  # its window was extended since this pass loaded it
            try:
                with session.begin_nested():
                    invoices.change_status(
                        session,
                        invoice,
                        InvoiceStatus.EXPIRED,
                        {"paid_atomic": invoice.amount_paid_atomic},
                        now,
                    )
            except ConcurrentUpdateError:
                session.expire(invoice)  # someone else moved it; the next pass looks again
                continue
            expired.append(invoice_id)
        session.commit()
        invoices.publish_after_commit(rt.session_factory, rt.coordinator, session)
    return expired


def read_cursors(rt: Runtime, feeds: Iterable[Feed]) -> dict[str, str]:
    """The `until` cursors by key; a Redis outage only means reading whole histories again."""
    keys = [cursor_key(f) for f in feeds]
    if not keys:
        return {}
    try:
        values = rt.coordinator.client.mget(keys)
    except RedisError as exc:
        log.warning("cursors unavailable, reading whole histories: %s", exc)
        return {}
    return {k: str(v) for k, v in zip(keys, values, strict=True) if v is not None}


def write_cursors(rt: Runtime, moves: Mapping[str, str], ttl: timedelta) -> None:
    """Store the moved cursors; a failed write only makes the next pass re-read (idempotent)."""
    if not moves:
        return
    pipe = rt.coordinator.client.pipeline(transaction=False)
    for key, signature in moves.items():
        pipe.set(key, signature, ex=int(ttl.total_seconds()))
    try:
        pipe.execute()
    except RedisError as exc:
        log.warning("could not store %d cursors: %s", len(moves), exc)
