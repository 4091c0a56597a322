"""The invoice state machine (DESIGN §3), in one table and one function.

Statuses use BTCPay Server's vocabulary so merchants feel at home. Exception flags
(`paid_partial`, `paid_over`, `paid_late`, `marked`) live beside the status, not in it.
"""

from __future__ import annotations

from enum import StrEnum

from pos.errors import IllegalTransitionError
from pos.i18n import N_


class InvoiceStatus(StrEnum):
    NEW = "new"  # waiting for payment (possibly partly paid)
    PROCESSING = "processing"  # paid in full, not yet final on chain
    SETTLED = "settled"  # final; the ledger posts it
    EXPIRED = "expired"  # window passed with nothing or too little paid
    INVALID = "invalid"  # payment double-spent, reorged out for good, or marked invalid


class PaymentMethod(StrEnum):
    BTC = "btc"
    KZTE = "kzte"


class EventType(StrEnum):
    """Past-tense facts about an invoice; also the webhook event names."""

    CREATED = "invoice.created"
    PROCESSING = "invoice.processing"
    SETTLED = "invoice.settled"
    EXPIRED = "invoice.expired"
    INVALID = "invoice.invalid"
    REOPENED = "invoice.reopened"  # settled -> processing after a reorg took confirmations away
    PAID_PARTIAL = "invoice.paid_partial"
    PAID_OVER = "invoice.paid_over"
    PAID_LATE = "invoice.paid_late"
    MARKED = "invoice.marked"
    PAYMENT_SEEN = "invoice.payment_seen"
    # A transfer that names the invoice but cannot pay it (wrong token or recipient, or too
    # late): kept for the timeline and the checkout, changes nothing else
    # (pos.invoices.record_rejected_payment).
    PAYMENT_REJECTED = "invoice.payment_rejected"


# Every allowed status change, and nothing else. Reasons in the comments.
TRANSITIONS: dict[InvoiceStatus, frozenset[InvoiceStatus]] = {
    InvoiceStatus.NEW: frozenset(
        {
            InvoiceStatus.PROCESSING,
            # A payment first seen already final (catch-up after downtime, KZTE finalized at once).
            InvoiceStatus.SETTLED,
            InvoiceStatus.EXPIRED,
            InvoiceStatus.INVALID,  # marked by a person
        }
    ),
    InvoiceStatus.PROCESSING: frozenset({InvoiceStatus.SETTLED, InvoiceStatus.INVALID}),
    # A settled invoice loses finality in a reorg (back to processing) or for good (invalid).
    InvoiceStatus.SETTLED: frozenset({InvoiceStatus.PROCESSING, InvoiceStatus.INVALID}),
    # Late payments are watched for a day and still land (flag paid_late); people may mark.
    InvoiceStatus.EXPIRED: frozenset(
        {InvoiceStatus.PROCESSING, InvoiceStatus.SETTLED, InvoiceStatus.INVALID}
    ),
    # A person's mark settles it; or a watcher revives it when the payment it gave up on
    # (reorged out or vanished, never double-spent) is mined after all. Watchers never move
    # a marked invoice (settlement.payments.reevaluate).
    InvoiceStatus.INVALID: frozenset({InvoiceStatus.SETTLED, InvoiceStatus.PROCESSING}),
}

EVENT_FOR_STATUS: dict[InvoiceStatus, EventType] = {
    InvoiceStatus.PROCESSING: EventType.PROCESSING,
    InvoiceStatus.SETTLED: EventType.SETTLED,
    InvoiceStatus.EXPIRED: EventType.EXPIRED,
    InvoiceStatus.INVALID: EventType.INVALID,
}

# Statuses whose invoices the watchers still look at (expired ones only within the late window).
WATCHED_STATUSES = frozenset(
    {InvoiceStatus.NEW, InvoiceStatus.PROCESSING, InvoiceStatus.EXPIRED, InvoiceStatus.SETTLED}
)


def can_transition(current: InvoiceStatus, target: InvoiceStatus) -> bool:
    return target in TRANSITIONS[current]


def transition(current: InvoiceStatus, target: InvoiceStatus) -> EventType:
    """Check a status change against the table; return the event it emits or raise."""
    if not can_transition(current, target):
        raise IllegalTransitionError(
            N_("an invoice cannot go from %(current)s to %(target)s"),
            current=current,
            target=target,
        )
    if current is InvoiceStatus.SETTLED and target is InvoiceStatus.PROCESSING:
        return EventType.REOPENED
    return EVENT_FOR_STATUS[target]
