"""The KZTE watcher's reads and writes: invoices and payments in the database, cursors in Redis.

Cursors are only a shortcut: a flushed Redis (or an expired key) makes the next read list the
feed's history again from the oldest watched invoice on (the feed's floor), which costs calls
but never skips a payment, since a cursor moves only past signatures already decided and
recorded.

Finality timeout: a payment `confirmed` (SEEN) for longer than `FINALITY_TIMEOUT` without
becoming `finalized` (its fork was abandoned, or the node lost it) becomes MISSING — unknown,
not failed: it keeps counting for `payments.UNKNOWN_GRACE`, after which its invoice turns
invalid; its status is still asked for two weeks, and a late `finalized` revives it. Each
timeout is logged at ERROR and leaves an audit row (`kzte.finality_timeout`) for the operator;
it never settles anything.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from redis.exceptions import RedisError
from sqlalchemy import ColumnElement, or_, select
from sqlalchemy.orm import Session

from pos import invoices
from pos.accounts import audit
from pos.errors import ConcurrentUpdateError
from pos.models import Invoice, Payment, PaymentStatus
from pos.runtime import Runtime
from pos.states import InvoiceStatus, PaymentMethod
from settlement.chains.solana_rpc import SignatureInfo, SigStatus
from settlement.kzte_feeds import Feed, FeedKind, Watched
from settlement.payments import (
    UNKNOWN_GRACE,
    Observation,
    observe_payment,
    reevaluate,
    reevaluate_safely,
)

log = logging.getLogger(__name__)

CHAIN = "solana"
METHOD = PaymentMethod.KZTE.value
CURSOR_PREFIX = "cc:kzte:until:"  # + reference key
DESTINATION_CURSOR_PREFIX = "cc:kzte:dest-until:"  # + destination token account
OPEN = (InvoiceStatus.NEW, InvoiceStatus.PROCESSING)
LATE = (InvoiceStatus.EXPIRED, InvoiceStatus.SETTLED)
_IN_CHUNK = 500  # bound parameters per IN (…) query
# Solana finalizes ~32 slots (~13 s) after `confirmed`; ten minutes covers a slow node many
# times over, so past it the confirmed block is taken as abandoned (or forgotten by the node).
FINALITY_TIMEOUT = timedelta(minutes=10)
# A missing payment's status is asked this long (like the Bitcoin watcher's unknown payments).
UNKNOWN_TRACKING = timedelta(days=14)
PAID = (InvoiceStatus.PROCESSING, InvoiceStatus.SETTLED)
FINALITY_ALERT = "kzte.finality_timeout"


@dataclass(frozen=True)
class Unfinal:
    """A recorded KZTE payment that is not final yet: SEEN (confirmed) or MISSING."""

    invoice_id: str
    merchant_id: int
    invoice_status: InvoiceStatus
    signature: str
    status: PaymentStatus
    amount_atomic: int
    confirmations: int
    slot: int | None
    first_seen_at: datetime
    missing_since: datetime | None

    def timed_out(self, now: datetime, timeout: timedelta) -> bool:
        """Confirmed for longer than `timeout` and still not finalized."""
        return self.status is PaymentStatus.SEEN and now - self.first_seen_at >= timeout

    def lapsed(self, now: datetime) -> bool:
        """Missing past the grace window while its invoice is still paid or settled."""
        since = self.missing_since
        return (
            self.status is PaymentStatus.MISSING
            and since is not None
            and now - since >= UNKNOWN_GRACE
            and self.invoice_status in PAID
        )


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


def load_unfinal(rt: Runtime, now: datetime) -> list[Unfinal]:
    """Every KZTE payment whose commitment is still asked for: SEEN ones, and MISSING ones
    for `UNKNOWN_TRACKING` (whatever their invoice's status, so a late finalization revives
    an invoice that turned invalid meanwhile)."""
    with rt.session_factory() as session:
        rows = session.execute(
            select(
                Payment.invoice_id,
                Invoice.merchant_id,
                Invoice.status.label("invoice_status"),
                Payment.txid,
                Payment.status,
                Payment.amount_atomic,
                Payment.confirmations,
                Payment.block_height,
                Payment.first_seen_at,
                Payment.missing_since,
            )
            .join(Invoice, Payment.invoice_id == Invoice.id)
            .where(
                Payment.chain == CHAIN,
                (Payment.status == PaymentStatus.SEEN)
                | (
                    (Payment.status == PaymentStatus.MISSING)
                    & (Payment.missing_since > now - UNKNOWN_TRACKING)
                ),
            )
        ).all()
    return [
        Unfinal(
            r.invoice_id,
            r.merchant_id,
            r.invoice_status,
            r.txid,
            r.status,
            r.amount_atomic,
            r.confirmations,
            r.block_height,
            r.first_seen_at,
            r.missing_since,
        )
        for r in rows
    ]


def missing_observation(payment: Unfinal) -> Observation:
    """The same payment, now unknown (its slot and confirmations kept for the record)."""
    return Observation(
        chain=CHAIN,
        txid=payment.signature,
        output_index=0,
        amount_atomic=payment.amount_atomic,
        status=PaymentStatus.MISSING,
        confirmations=payment.confirmations,
        block_height=payment.slot,
    )


def reevaluate_lapsed(rt: Runtime, invoice_ids: Iterable[str]) -> int:
    """Re-decide invoices whose missing payments outlived the grace window; the events made."""
    made = 0
    late_window = timedelta(hours=rt.settings.late_watch_hours)
    for invoice_id in sorted(set(invoice_ids)):
        with rt.session_factory() as session:
            try:
                events = reevaluate_safely(session, invoice_id, late_window=late_window)
                session.commit()
            except ConcurrentUpdateError as exc:
                session.rollback()
                log.info("invoice %s kept changing; next pass retries: %s", invoice_id, exc)
                continue
            if events:
                log.warning(
                    "invoice %s: its missing KZTE payment outlived the grace window: %s",
                    invoice_id,
                    ", ".join(events),
                )
            made += len(events)
            invoices.publish_after_commit(rt.session_factory, rt.coordinator, session)
    return made


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


def record(
    rt: Runtime,
    observations: Mapping[str, list[Observation]],
    timeouts: Mapping[str, Sequence[Unfinal]] | None = None,
    now: datetime | None = None,
) -> tuple[int, int, set[str]]:
    """Write observations invoice by invoice: (payments changed, events, ids to retry).

    `timeouts`: payments of these invoices that passed the finality timeout (their MISSING
    observations are in `observations`); each gets its audit row in the same transaction,
    and an ERROR log once committed.
    """
    changed = events = 0
    failed: set[str] = set()
    for invoice_id, seen in observations.items():
        lapsed = (timeouts or {}).get(invoice_id, ())
        with rt.session_factory() as session:
            try:
                did = _apply(session, invoice_id, seen)
                for payment in lapsed:
                    _audit_timeout(session, payment, now)
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
        for payment in lapsed:
            log.error(
                "KZTE payment %s of invoice %s (merchant %d, %d base units) confirmed at slot "
                "%s is not finalized after %d s: it is unknown now (it counts for %d s more, "
                "then the invoice turns invalid; a late finalization still settles it). Check "
                "the Solana node.",
                payment.signature,
                invoice_id,
                payment.merchant_id,
                payment.amount_atomic,
                payment.slot,
                (FINALITY_TIMEOUT if now is None else now - payment.first_seen_at).total_seconds(),
                UNKNOWN_GRACE.total_seconds(),
            )
    return changed, events, failed


def record_rejections(
    rt: Runtime, rejected: Sequence[tuple[str, str, str, str]]
) -> list[tuple[str, str]]:
    """Note each (invoice id, signature, reason code, detail) in its invoice's timeline
    (pos.invoices.record_rejected_payment, once per signature); return the (invoice id,
    signature) pairs that could not be written because the invoice changed meanwhile."""
    failed: list[tuple[str, str]] = []
    for invoice_id, signature, code, detail in rejected:
        with rt.session_factory() as session:
            invoice = session.get(Invoice, invoice_id)
            if invoice is None:
                continue
            try:
                invoices.record_rejected_payment(session, invoice, signature, code, detail)
                session.commit()
            except ConcurrentUpdateError as exc:
                session.rollback()
                log.info("invoice %s changed meanwhile; next pass retries: %s", invoice_id, exc)
                failed.append((invoice_id, signature))
                continue
            invoices.publish_after_commit(rt.session_factory, rt.coordinator, session)
    return failed


def _audit_timeout(session: Session, payment: Unfinal, now: datetime | None) -> None:
    age = None if now is None else int((now - payment.first_seen_at).total_seconds())
    audit(
        session,
        FINALITY_ALERT,
        merchant_id=payment.merchant_id,
        detail={
            "invoice_id": payment.invoice_id,
            "signature": payment.signature,
            "slot": payment.slot,
            "amount_base_units": payment.amount_atomic,
            "confirmed_for_seconds": age,
        },
    )


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
            if invoices.expire_one(session, invoice, now):
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
