"""Turning observed on-chain payments into invoice state (shared by every chain watcher).

A watcher reports what the chain shows about each payment (`observe_payment`); then
`reevaluate` asks the pure rule `assess` what the payments add up to and applies the
transitions of DESIGN §3:

  counted = payments that are seen, confirmed or final, and UNKNOWN ones (reorged out or
            vanished from the mempool, no conflict seen) for a grace window from
            `missing_since`; never one first seen after the invoice's late window (its
            transaction is recorded once as rejected, too_late), nor one whose transaction
            was replaced by a conflicting spend
  new/expired, 0 < paid < threshold   -> flag paid_partial (expiry then ends it as expired)
  new/expired, paid >= threshold      -> processing (+ paid_late if the payment that completed
                                         it came after the window)
  processing, final >= threshold      -> settled
  settled, final < threshold <= paid  -> processing again (a reorg took confirmations away)
  processing/settled, paid < threshold -> invalid (a conflict was seen, or the unknown payments
                                         outlived the grace window)
  invalid (not marked), paid >= threshold again -> processing / settled (the very transaction
                                         came back: it was mined after all)
`threshold` is the amount due less the merchant's tolerance; paid > due flags paid_over. An
invoice a person marked is never moved by a watcher. Every step is idempotent: running it again
with the same observations changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from pos import invoices, ledger_queue
from pos.db import utcnow
from pos.errors import ConcurrentUpdateError
from pos.models import Invoice, Payment, PaymentStatus
from pos.money import tolerance_floor
from pos.states import InvoiceStatus

# Unknown payments (reorged out, vanished from the mempool) keep counting this long.
UNKNOWN_GRACE = timedelta(hours=1)
DEFAULT_LATE_WINDOW = timedelta(hours=24)  # settings.late_watch_hours by default
DEFINITE = frozenset({PaymentStatus.SEEN, PaymentStatus.CONFIRMED, PaymentStatus.FINAL})
UNKNOWN = frozenset({PaymentStatus.REORGED, PaymentStatus.MISSING})
REEVALUATE_TRIES = 3


@dataclass(frozen=True)
class Observation:
    """What a watcher saw of one payment (one BTC output or one KZTE transfer)."""

    chain: str
    txid: str
    output_index: int
    amount_atomic: int
    status: PaymentStatus
    confirmations: int = 0
    block_hash: str | None = None
    block_height: int | None = None
    # When the chain first knew the payment (mempool entry time, block time, Solana block
    # time); after downtime this, not the moment we noticed, decides whether it was late.
    seen_at: datetime | None = None
    # The outpoints ("txid:vout") the transaction spends, when the chain has such a thing.
    spends: tuple[str, ...] = ()
    replaced_by: str | None = None  # with REPLACED: the conflicting transaction


def observe_payment(
    session: Session, invoice: Invoice, seen: Observation, now: datetime | None = None
) -> tuple[Payment, bool]:
    """Insert or update the payment row (unique by chain, txid, output); (row, changed?)."""
    now = now or utcnow()
    payment = session.scalar(
        select(Payment).where(
            Payment.chain == seen.chain,
            Payment.txid == seen.txid,
            Payment.output_index == seen.output_index,
        )
    )
    missing_since = now if seen.status in UNKNOWN else None
    if payment is None:
        payment = Payment(
            invoice=invoice,
            chain=seen.chain,
            txid=seen.txid,
            output_index=seen.output_index,
            amount_atomic=seen.amount_atomic,
            status=seen.status,
            confirmations=seen.confirmations,
            block_hash=seen.block_hash,
            block_height=seen.block_height,
            first_seen_at=min(seen.seen_at or now, now),
            updated_at=now,
            spent_outpoints=list(seen.spends),
            replaced_by=seen.replaced_by,
            missing_since=missing_since,
        )
        session.add(payment)
        session.flush()
        ledger_queue.enqueue(session, invoice.id, now)
        return payment, True
    changed = False
    if seen.spends and not payment.spent_outpoints:
        payment.spent_outpoints = list(seen.spends)
        changed = True
    if seen.replaced_by and seen.replaced_by != payment.replaced_by:
        payment.replaced_by = seen.replaced_by
        changed = True
    new_values = (seen.status, seen.confirmations, seen.block_hash, seen.block_height)
    old_values = (payment.status, payment.confirmations, payment.block_hash, payment.block_height)
    if new_values != old_values:
        # The grace window runs from the first moment it went missing, not from each poll.
        if seen.status not in UNKNOWN:
            payment.missing_since = None
        elif payment.status not in UNKNOWN or payment.missing_since is None:
            payment.missing_since = now
        payment.status, payment.confirmations, payment.block_hash, payment.block_height = new_values
        changed = True
    if changed:
        payment.updated_at = now
        ledger_queue.enqueue(session, payment.invoice_id, now)  # postings follow payments
    return payment, changed


# --- the rule, pure ---------------------------------------------------------------------------


@dataclass(frozen=True)
class PaymentFact:
    """What `assess` needs of one payment."""

    amount_atomic: int
    status: PaymentStatus
    first_seen_at: datetime
    missing_since: datetime | None = None


@dataclass(frozen=True)
class Assessment:
    """What the payments of one invoice add up to at one moment."""

    paid_atomic: int  # counted payments
    final_atomic: int  # final payments (counted ones only)
    # When the counted payments, in the order the chain first knew them, reached the threshold:
    # the moment that decides lateness. None while they do not reach it.
    completed_at: datetime | None
    loss_reason: str | None  # why money that counted before no longer does


def arrived_too_late(first_seen_at: datetime, late_until: datetime) -> bool:
    """Whether a payment came after the invoice's late window: it never counts, whatever the
    chain says of it later (the ledger owes it back, settlement.ledger.booking)."""
    return first_seen_at > late_until


def payment_counts(fact: PaymentFact, now: datetime, late_until: datetime) -> bool:
    """Whether one payment counts towards its invoice at `now`."""
    if arrived_too_late(fact.first_seen_at, late_until):
        return False
    if fact.status in DEFINITE:
        return True
    if fact.status in UNKNOWN:
        return fact.missing_since is None or now - fact.missing_since < UNKNOWN_GRACE
    return False


def assess(
    facts: Sequence[PaymentFact],
    threshold_atomic: int,
    late_until: datetime,
    now: datetime,
) -> Assessment:
    """The pure payment-evaluation rule (no database): sums, completion time, loss reason."""
    counts = [payment_counts(f, now, late_until) for f in facts]
    counted = [f for f, c in zip(facts, counts, strict=True) if c]
    paid = sum(f.amount_atomic for f in counted)
    final = sum(f.amount_atomic for f in counted if f.status is PaymentStatus.FINAL)
    completed_at: datetime | None = None
    running = 0
    for fact in sorted(counted, key=lambda f: f.first_seen_at):
        running += fact.amount_atomic
        if running >= threshold_atomic:
            completed_at = fact.first_seen_at
            break
    reason: str | None = None
    if any(f.status is PaymentStatus.REPLACED for f in facts):
        reason = "payment double-spent or replaced"
    elif any(f.status in UNKNOWN and not c for f, c in zip(facts, counts, strict=True)):
        reason = "payment reorged out or dropped, and not mined within the grace window"
    return Assessment(paid, final, completed_at, reason)


def facts_of(payments: Iterable[Payment]) -> list[PaymentFact]:
    return [
        PaymentFact(p.amount_atomic, p.status, p.first_seen_at, p.missing_since) for p in payments
    ]


# --- applying it ------------------------------------------------------------------------------


def reevaluate(
    session: Session,
    invoice: Invoice,
    now: datetime | None = None,
    late_window: timedelta = DEFAULT_LATE_WINDOW,
) -> list[str]:
    """Apply every transition the invoice's payments now justify; return the event types."""
    now = now or utcnow()
    threshold = tolerance_floor(invoice.amount_due_atomic, invoice.merchant.tolerance_bp)
    late_until = invoice.expires_at + late_window
    verdict = assess(facts_of(invoice.payments), threshold, late_until, now)
    paid, final = verdict.paid_atomic, verdict.final_atomic
    events: list[str] = []

    def record(event: object) -> None:
        if event is not None:
            events.append(getattr(event, "type", ""))

    for payment in invoice.payments:
        if arrived_too_late(payment.first_seen_at, late_until):
            # Money the shopper sent that will never count: the owner and the shopper see why
            # (once per transaction; record_rejected_payment ignores a repeat), marked or not.
            detail = (
                f"first seen {payment.first_seen_at.isoformat()}, "
                f"the late window ended {late_until.isoformat()}"
            )
            record(
                invoices.record_rejected_payment(session, invoice, payment.txid, "too_late", detail)
            )
    if paid != invoice.amount_paid_atomic:
        record(invoices.set_amount_paid(session, invoice, paid))
    status = invoice.status
    # A person decided a marked invoice: watchers only keep its totals and flags.
    if invoice.marked:
        pass
    elif status in (InvoiceStatus.NEW, InvoiceStatus.EXPIRED):
        if 0 < paid < threshold:
            record(invoices.set_flag(session, invoice, "paid_partial", {"paid_atomic": paid}))
        elif paid >= threshold:
            completed_at = verdict.completed_at or now
            if status is InvoiceStatus.EXPIRED or completed_at > invoice.expires_at:
                record(invoices.set_flag(session, invoice, "paid_late", {"paid_atomic": paid}))
            record(
                invoices.change_status(
                    session, invoice, InvoiceStatus.PROCESSING, {"paid_atomic": paid}, now
                )
            )
            status = invoice.status
    elif status is InvoiceStatus.INVALID and paid >= threshold:
        # Only watcher-made invalids get here (marked ones returned above): the transaction
        # that was missing was mined after all, so the money did arrive.
        record(
            invoices.change_status(
                session,
                invoice,
                InvoiceStatus.PROCESSING,
                {"paid_atomic": paid, "reason": "the missing payment was mined after all"},
                now,
            )
        )
        status = invoice.status
    if paid > invoice.amount_due_atomic:
        record(
            invoices.set_flag(
                session,
                invoice,
                "paid_over",
                {"paid_atomic": paid, "due_atomic": invoice.amount_due_atomic},
            )
        )
    if invoice.marked:
        return events

    if status is InvoiceStatus.PROCESSING and paid >= threshold and final >= threshold:
        record(
            invoices.change_status(
                session, invoice, InvoiceStatus.SETTLED, {"paid_atomic": paid}, now
            )
        )
    elif status is InvoiceStatus.SETTLED and paid >= threshold > final:
        record(
            invoices.change_status(
                session,
                invoice,
                InvoiceStatus.PROCESSING,
                {"reason": "confirmations lost in a reorg"},
                now,
            )
        )
    elif (
        status in (InvoiceStatus.PROCESSING, InvoiceStatus.SETTLED)
        and paid < threshold
        and verdict.loss_reason is not None
    ):
        record(
            invoices.change_status(
                session,
                invoice,
                InvoiceStatus.INVALID,
                {"reason": verdict.loss_reason, "paid_atomic": paid},
                now,
            )
        )
    return events


def reevaluate_safely(
    session: Session,
    invoice_id: str,
    now: datetime | None = None,
    late_window: timedelta = DEFAULT_LATE_WINDOW,
) -> list[str]:
    """`reevaluate` in a savepoint, retried when someone changed the invoice meanwhile.

    A person marking an invoice (or another duty) bumps its version between our read and our
    write: roll back just this invoice's changes, reload it and decide again, so one
    concurrent update never aborts a watcher's whole poll.
    """
    for _attempt in range(REEVALUATE_TRIES):
        invoice = session.get(Invoice, invoice_id)
        if invoice is None:
            return []
        try:
            with session.begin_nested():
                return reevaluate(session, invoice, now, late_window)
        except ConcurrentUpdateError:
            session.expire(invoice)
    raise ConcurrentUpdateError(f"invoice {invoice_id} kept changing under the watcher")
