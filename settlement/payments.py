"""Turning observed on-chain payments into invoice state (shared by every chain watcher).

A watcher reports what the chain shows about each payment (`observe_payment`); then
`reevaluate` sums the payments that still count and applies the transitions of DESIGN §3:

  paid  = payments not replaced or reorged out        final = payments that are final
  new/expired, 0 < paid < threshold   -> flag paid_partial (expiry then ends it as expired)
  new/expired, paid >= threshold      -> processing (+ paid_late if after the window)
  processing, final >= threshold      -> settled
  settled, final < threshold <= paid  -> processing again (a reorg took confirmations away)
  processing/settled, paid < threshold because a payment was double-spent / replaced
                                      -> invalid
  processing/settled, paid < threshold because its block was reorged out
                                      -> invalid only after the grace window, else wait
`threshold` is the amount due less the merchant's tolerance; paid > due flags paid_over.
Every step is idempotent: running it again with the same observations changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from pos import invoices
from pos.db import utcnow
from pos.models import Invoice, Payment, PaymentStatus
from pos.money import tolerance_floor
from pos.states import InvoiceStatus

# Reorged-out payments get this long to be mined again before the invoice is invalid.
REORG_GRACE = timedelta(hours=1)
COUNTED = frozenset({PaymentStatus.SEEN, PaymentStatus.CONFIRMED, PaymentStatus.FINAL})


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
        )
        session.add(payment)
        session.flush()
        return payment, True
    new_values = (seen.status, seen.confirmations, seen.block_hash, seen.block_height)
    old_values = (payment.status, payment.confirmations, payment.block_hash, payment.block_height)
    if new_values == old_values:
        return payment, False
    payment.status, payment.confirmations, payment.block_hash, payment.block_height = new_values
    payment.updated_at = now
    return payment, True


def reevaluate(session: Session, invoice: Invoice, now: datetime | None = None) -> list[str]:
    """Apply every transition the invoice's payments now justify; return the event types."""
    now = now or utcnow()
    payments = list(invoice.payments)
    paid = sum(p.amount_atomic for p in payments if p.status in COUNTED)
    final = sum(p.amount_atomic for p in payments if p.status is PaymentStatus.FINAL)
    threshold = tolerance_floor(invoice.amount_due_atomic, invoice.merchant.tolerance_bp)
    events: list[str] = []

    def record(event: object) -> None:
        if event is not None:
            events.append(getattr(event, "type", ""))

    if paid != invoice.amount_paid_atomic:
        record(invoices.set_amount_paid(session, invoice, paid))

    status = invoice.status
    if status in (InvoiceStatus.NEW, InvoiceStatus.EXPIRED):
        if 0 < paid < threshold:
            record(invoices.set_flag(session, invoice, "paid_partial", {"paid_atomic": paid}))
        elif paid >= threshold:
            late = status is InvoiceStatus.EXPIRED or _first_counted_at(payments) > (
                invoice.expires_at
            )
            if late:
                record(invoices.set_flag(session, invoice, "paid_late", {"paid_atomic": paid}))
            record(
                invoices.change_status(
                    session, invoice, InvoiceStatus.PROCESSING, {"paid_atomic": paid}, now
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
    elif status in (InvoiceStatus.PROCESSING, InvoiceStatus.SETTLED) and paid < threshold:
        reason = _loss_reason(payments, now)
        if reason is not None:
            record(
                invoices.change_status(
                    session,
                    invoice,
                    InvoiceStatus.INVALID,
                    {"reason": reason, "paid_atomic": paid},
                    now,
                )
            )
    return events


def _first_counted_at(payments: list[Payment]) -> datetime:
    times = [p.first_seen_at for p in payments if p.status in COUNTED]
    return min(times) if times else utcnow()


def _loss_reason(payments: list[Payment], now: datetime) -> str | None:
    """Why the money is gone for good, or None while a reorged payment may still come back."""
    if any(p.status is PaymentStatus.REPLACED for p in payments):
        return "payment double-spent or replaced"
    reorged = [p for p in payments if p.status is PaymentStatus.REORGED]
    if reorged and all(now - p.updated_at >= REORG_GRACE for p in reorged):
        return "payment reorged out and not mined again within the grace window"
    return None
