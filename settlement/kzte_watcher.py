"""The KZTE watcher: finds Solana Pay payments by reference key and tracks them to finality.

One pass (`KzteWatcher.poll`), run by the leader worker about every second:
  1. read the watched KZTE invoices from the database (open ones, and expired / settled ones
     within the late window) and their recorded Solana payments;
  2. for the references that are due, ask getSignaturesForAddress(reference, until=cursor) —
     concurrency-limited — where the per-reference `until` cursor (Redis, with a TTL) makes
     each poll return only signatures not yet handled;
  3. read each new signature with getTransaction and validate it (settlement.kzte_validation);
  4. read the commitment of new payments and of every not-yet-final payment with
     getSignatureStatuses, 256 signatures per call: `confirmed` -> PaymentStatus.SEEN (the
     invoice goes processing), `finalized` -> FINAL (settled);
  5. record them with settlement.payments.observe_payment + reevaluate, commit, publish; then
     move the cursors of references whose new signatures were all decided.

Unknown is not "not paid": a timeout or RPC error leaves everything as it was and the cursor
where it was, so the same signatures are looked at again next pass. A signature the node does
not have (yet — or any more, after a local validator restart) is unknown too. A recorded
payment is never taken back on a missing status: Solana has no reorg of `confirmed` in
practice, and a local validator that lost its history must not unpay an invoice.

Scale: references are polled on a schedule by status and age (`Schedule`), oldest-due first,
at most `max_references_per_pass` per pass, so 10,000 open invoices cost a bounded number of
calls per second instead of 10,000. The merchant-facing latency is that of the hot tier (a
fresh invoice, shown at the counter right now); older invoices are polled less often.
WebSocket subscriptions (logsSubscribe / signatureSubscribe) are not used yet: polling is the
floor the design asks for, and the hot tier keeps detection around one second.

A Payment row's output_index is 0: only a transaction's last instruction can pay an invoice.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from redis.exceptions import RedisError
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from pos import invoices
from pos.db import utcnow
from pos.errors import ConcurrentUpdateError, CoordinationUnavailableError
from pos.models import Invoice, Payment, PaymentStatus
from pos.runtime import Runtime
from pos.states import InvoiceStatus, PaymentMethod
from settlement.chains.solana_rpc import (
    Answer,
    CallStats,
    ChainTransaction,
    SignatureInfo,
    SigStatus,
    SolanaRpc,
    SolanaRpcError,
)
from settlement.kzte_validation import ExpectedTransfer, validate_transfer
from settlement.payments import Observation, observe_payment, reevaluate
from settlement.worker import Duty

log = logging.getLogger(__name__)

CHAIN = "solana"
METHOD = PaymentMethod.KZTE.value
CURSOR_PREFIX = "cc:kzte:until:"
OPEN = (InvoiceStatus.NEW, InvoiceStatus.PROCESSING)
LATE = (InvoiceStatus.EXPIRED, InvoiceStatus.SETTLED)


@dataclass(frozen=True)
class Schedule:
    """Seconds between getSignaturesForAddress polls of one reference, by invoice state."""

    hot_seconds: float = 1.0  # a NEW invoice younger than `hot_age`: someone is paying now
    hot_age: timedelta = timedelta(minutes=10)
    open_seconds: float = 5.0  # older NEW invoices, and PROCESSING ones (a top-up may follow)
    late_seconds: float = 30.0  # EXPIRED / SETTLED within the late window (late or extra pay)

    def interval(self, status: InvoiceStatus, created_at: datetime, now: datetime) -> float:
        if status is InvoiceStatus.NEW:
            return self.hot_seconds if now - created_at < self.hot_age else self.open_seconds
        if status is InvoiceStatus.PROCESSING:
            return self.open_seconds
        return self.late_seconds


@dataclass
class Watched:
    """A watched invoice as the watcher needs it (no ORM object kept across passes)."""

    id: str
    reference: str
    recipient: str
    mint: str
    status: InvoiceStatus
    created_at: datetime
    expires_at: datetime
    payments: dict[str, tuple[PaymentStatus, int]] = field(default_factory=dict)

    @property
    def expected(self) -> ExpectedTransfer:
        return ExpectedTransfer(self.recipient, self.mint, self.reference, self.id)


@dataclass
class PassReport:
    """What one pass did, for logs, tests and the benchmark."""

    polled: int = 0
    unknown: int = 0
    candidates: int = 0
    rejected: int = 0
    changed: int = 0
    events: int = 0


class KzteWatcher:
    """Polls the Solana node for KZTE invoice payments; state here is only a schedule."""

    def __init__(
        self,
        schedule: Schedule | None = None,
        *,
        concurrency: int = 16,
        max_references_per_pass: int = 400,
        timeout_seconds: float = 5.0,
        attempts: int = 3,
    ) -> None:
        self.schedule = schedule or Schedule()
        self.concurrency = concurrency
        self.max_references_per_pass = max_references_per_pass
        self.timeout_seconds = timeout_seconds
        self.attempts = attempts
        self.stats = CallStats()
        self.next_due: dict[str, float] = {}
        # When each reference was last read completely (answer known, every signature decided).
        self.complete_at: dict[str, datetime] = {}
        self.last_report = PassReport()

    def run(self, rt: Runtime) -> int:
        """The worker duty: one pass; returns payments changed plus invoice events."""
        report = asyncio.run(self.poll(rt))
        return report.changed + report.events

    async def poll(self, rt: Runtime) -> PassReport:
        """One pass over the due references and the not-yet-final payments."""
        report = PassReport()
        self.last_report = report
        now = utcnow()
        watched = _load_watched(rt, now)
        by_ref = {w.reference: w for w in watched}
        for schedule_map in (self.next_due, self.complete_at):
            for ref in [r for r in schedule_map if r not in by_ref]:
                del schedule_map[ref]
        clock = time.monotonic()
        due = sorted(
            (w for w in watched if self.next_due.get(w.reference, 0.0) <= clock),
            key=lambda w: self.next_due.get(w.reference, 0.0),
        )[: self.max_references_per_pass]
        pending = [
            sig for w in watched for sig, (st, _) in w.payments.items() if st is PaymentStatus.SEEN
        ]
        if not due and not pending:
            self._set_watermark(rt, watched, now)
            return report
        cursors = _read_cursors(rt, [w.reference for w in due])
        rpc = SolanaRpc(
            rt.settings.solana_rpc_url,
            timeout_seconds=self.timeout_seconds,
            attempts=self.attempts,
            stats=self.stats,
        )
        async with rpc:
            limit = asyncio.Semaphore(self.concurrency)
            found = await asyncio.gather(
                *(self._signatures(rpc, limit, w.reference, cursors.get(w.reference)) for w in due)
            )
            report.polled = len(due)
            # New signatures per reference; None: the reference is undecided this pass.
            fresh: dict[str, list[SignatureInfo] | None] = {}
            for w, answer in zip(due, found, strict=True):
                self.next_due[w.reference] = clock + self.schedule.interval(
                    w.status, w.created_at, now
                )
                if not answer.known or answer.value is None:
                    report.unknown += 1
                    fresh[w.reference] = None
                    continue
                fresh[w.reference] = [s for s in answer.value if s.signature not in w.payments]
            candidates = [
                (w, s)
                for w in due
                for s in fresh.get(w.reference) or []
                if not s.failed  # a failed transaction moved nothing: decided, not counted
            ]
            txs = await asyncio.gather(
                *(self._transaction(rpc, limit, s.signature) for _, s in candidates)
            )
            valid: list[tuple[Watched, SignatureInfo, int]] = []
            for (w, s), tx_answer in zip(candidates, txs, strict=True):
                tx = tx_answer.value
                if not tx_answer.known or tx is None:
                    fresh[w.reference] = None  # not readable yet: look again next pass
                    continue
                amount = _judge(w, tx, report)
                if amount is not None:
                    valid.append((w, s, amount))
            report.candidates = len(valid)
            status_answer = await rpc.signature_statuses(
                [s.signature for _, s, _ in valid] + pending
            )
        if report.unknown:
            log.warning(
                "Solana node %s gave no answer for %d of %d references; nothing changes for them",
                rt.settings.solana_rpc_url,
                report.unknown,
                len(due),
            )
        if not status_answer.known or status_answer.value is None:
            log.warning("Solana statuses unknown (%s); nothing changes", status_answer.error)
            return report
        observations = _observations(watched, valid, status_answer.value, fresh)
        failed_invoices = _record(rt, observations, report)
        _advance_cursors(rt, due, fresh, failed_invoices, rt.settings.late_watch_hours)
        for w in due:
            if fresh.get(w.reference) is not None and w.id not in failed_invoices:
                self.complete_at[w.reference] = now
        self._set_watermark(rt, watched, now)
        return report

    def _set_watermark(self, rt: Runtime, watched: list[Watched], now: datetime) -> None:
        """Tell the expiry sweeper up to when we saw everything of the invoices now due to expire.

        An unpaid invoice past its window expires only once its reference was read completely
        after that moment; a node outage therefore delays expiry instead of expiring (and later
        flagging paid_late) an invoice that was paid in time. A reference never read yet counts
        from its invoice's creation: nothing could pay it before it existed.
        """
        marks = [
            self.complete_at.get(w.reference, w.created_at)
            for w in watched
            if w.status is InvoiceStatus.NEW and w.expires_at <= now
        ]
        try:
            rt.coordinator.set_watermark(METHOD, min([now, *marks]))
        except CoordinationUnavailableError as exc:
            log.warning("could not publish the KZTE watermark: %s", exc)

    async def _signatures(
        self, rpc: SolanaRpc, limit: asyncio.Semaphore, reference: str, until: str | None
    ) -> Answer[list[SignatureInfo]]:
        async with limit:
            answer = await rpc.signatures_for_address(reference, until)
            if until is not None and isinstance(answer.error, SolanaRpcError):
                # The node refuses the cursor (it forgot that signature, e.g. a restarted local
                # validator or a pruned node): ask for the whole, short history instead.
                log.info("cursor of %s refused (%s); reading all of it", reference, answer.error)
                answer = await rpc.signatures_for_address(reference, None)
            return answer

    async def _transaction(
        self, rpc: SolanaRpc, limit: asyncio.Semaphore, signature: str
    ) -> Answer[ChainTransaction | None]:
        async with limit:
            return await rpc.transaction(signature)


def _judge(w: Watched, tx: ChainTransaction, report: PassReport) -> int | None:
    verdict = validate_transfer(tx, w.expected)
    if verdict.ok:
        return verdict.amount_base_units
    report.rejected += 1
    level = logging.WARNING if verdict.suspicious else logging.INFO
    log.log(level, "invoice %s: %s not counted: %s", w.id, tx.signature, verdict.reason)
    return None


def _observations(
    watched: list[Watched],
    valid: list[tuple[Watched, SignatureInfo, int]],
    statuses: dict[str, SigStatus],
    fresh: dict[str, list[SignatureInfo] | None],
) -> dict[str, list[Observation]]:
    """Payment observations per invoice id, from the statuses the node reported."""
    result: dict[str, list[Observation]] = defaultdict(list)
    for w, s, amount in valid:
        status = _payment_status(statuses.get(s.signature))
        if status is None:
            fresh[w.reference] = None  # processed only, or not visible yet: decide later
            continue
        result[w.id].append(_observation(s.signature, amount, status, statuses[s.signature], s))
    for w in watched:
        for sig, (current, amount) in w.payments.items():
            if current is not PaymentStatus.SEEN or sig not in statuses:
                continue  # a missing status is unknown: the payment stays as recorded
            status = _payment_status(statuses[sig])
            if status is PaymentStatus.FINAL:
                result[w.id].append(_observation(sig, amount, status, statuses[sig], None))
    return result


def _payment_status(status: SigStatus | None) -> PaymentStatus | None:
    if status is None or status.failed:
        return None
    if status.commitment == "finalized":
        return PaymentStatus.FINAL
    if status.commitment == "confirmed":
        return PaymentStatus.SEEN
    return None  # "processed" can still be dropped


def _observation(
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


def _record(
    rt: Runtime, observations: dict[str, list[Observation]], report: PassReport
) -> set[str]:
    """Write observations invoice by invoice; return the ids whose write must be retried."""
    failed: set[str] = set()
    for invoice_id, seen in observations.items():
        with rt.session_factory() as session:
            try:
                changed = _apply(session, invoice_id, seen)
                events = reevaluate(session, session.get_one(Invoice, invoice_id))
                session.commit()
            except ConcurrentUpdateError as exc:
                session.rollback()
                log.info("invoice %s changed meanwhile; next pass retries: %s", invoice_id, exc)
                failed.add(invoice_id)
                continue
            report.changed += changed
            report.events += len(events)
            invoices.publish_after_commit(rt.session_factory, rt.coordinator, session)
    return failed


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


def _load_watched(rt: Runtime, now: datetime) -> list[Watched]:
    horizon = now - timedelta(hours=rt.settings.late_watch_hours)
    scope = (
        Invoice.method == PaymentMethod.KZTE,
        Invoice.kzte_reference.is_not(None),
        or_(
            Invoice.status.in_(OPEN),
            (Invoice.status.in_(LATE)) & (Invoice.created_at >= horizon),
        ),
    )
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


def _read_cursors(rt: Runtime, references: list[str]) -> dict[str, str]:
    """The `until` cursors; a Redis outage only means asking for the whole (short) history."""
    if not references:
        return {}
    try:
        values = rt.coordinator.client.mget([CURSOR_PREFIX + r for r in references])
    except RedisError as exc:
        log.warning("cursors unavailable, reading full histories: %s", exc)
        return {}
    return {r: str(v) for r, v in zip(references, values, strict=True) if v is not None}


def _advance_cursors(
    rt: Runtime,
    due: list[Watched],
    fresh: dict[str, list[SignatureInfo] | None],
    failed_invoices: set[str],
    late_watch_hours: int,
) -> None:
    """Move each cursor to the newest signature once every newer one was decided and recorded."""
    ttl = int(timedelta(hours=late_watch_hours + 1).total_seconds())
    pipe = rt.coordinator.client.pipeline(transaction=False)
    moved = 0
    for w in due:
        new = fresh.get(w.reference)
        if not new or w.id in failed_invoices:
            continue
        pipe.set(CURSOR_PREFIX + w.reference, new[0].signature, ex=ttl)
        moved += 1
    if not moved:
        return
    try:
        pipe.execute()
    except RedisError as exc:  # the next pass re-reads those signatures; all writes idempotent
        log.warning("could not store %d cursors: %s", moved, exc)


def duty(watcher: KzteWatcher | None = None) -> Duty:
    """The worker duty: one leader polls the Solana node about every second."""
    active = watcher or KzteWatcher()
    return Duty("kzte-watcher", 1.0, active.run, leader_only=True)
