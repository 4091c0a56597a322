"""Booking: an invoice's postings follow its payments (DESIGN §7).

`wanted_postings` is the rule: from the invoice's payments and status alone it says which
postings should stand now —
  receipt:<payment id>  each FINAL payment worth at least a tiyn: its value and quantity
                        (`tenge`: Dr zone:clearing / Cr zone:unallocated; `direct`: the
                        merchant's memorandum accounts)
  allocation            a SETTLED invoice: the value of min(due, the counted final amount) —
                        for a marked one, of the amount paid at the mark — to payable + fee +
                        rounding (`tenge`), or to sales and fees_due (`direct`)
  owed_back             a SETTLED, EXPIRED or INVALID invoice: whatever it received beyond its
                        allocation (paid over, paid after the late window, expired short,
                        invalidated) to zone:refunds_due, or to the merchant's refunds_owed
  return:<refund id>    a SETTLED invoice's sale returned by its merchant (a `sale_return`
                        refund not cancelled), up to the sale: from payable to zone:refunds_due
                        (`tenge`), or from the memorandum sales to refunds_owed (`direct`)
`book_invoice` compares that with the postings standing and writes the difference: a posting
no longer wanted is reversed (exactly its own legs), a wanted one not standing is written, and
a changed one is reversed and written again. Keys make every step happen once:
`invoice:<id>:<fact>:<n>` for the n-th posting of a fact, `reversal:<transaction id>`, plus the
unique `reverses_id`. So a payment that loses finality takes exactly its own receipt with it;
a second, unconfirmed payment is never booked until it is final itself; and running the
booking again changes nothing.

Changes reach the booking through `ledger_queue` (written in the transaction that changed the
payment or the invoice); `drain_queue` is the worker's duty. On PostgreSQL the invoice row is
locked while it is booked, so a watcher's change waits (and re-queues it) rather than racing.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import cast

from sqlalchemy import Table, bindparam, delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload, sessionmaker

from pos.db import utcnow
from pos.models import Invoice, LedgerQueue, PaymentStatus, SettlementMode
from pos.runtime import Runtime
from pos.settings import Settings
from pos.states import EventType, InvoiceStatus
from settlement.ledger.models import (
    LedgerTransaction,
    Refund,
    RefundKind,
    RefundStatus,
    TransactionKind,
)
from settlement.ledger.posting import (
    Leg,
    Posting,
    allocation,
    allocation_legs,
    gross_tiyn,
    merchant_fee_bp,
    owed_back_legs,
    receipt_legs,
    return_legs,
    reversal_legs,
    write_postings,
)
from settlement.worker import Duty

log = logging.getLogger(__name__)

TERMINAL = frozenset({InvoiceStatus.SETTLED, InvoiceStatus.EXPIRED, InvoiceStatus.INVALID})
# Kinds the booking owns; payouts, conversions, refunds and fee payments are posted elsewhere.
BOOKED_KINDS = frozenset(
    {TransactionKind.RECEIPT, TransactionKind.SETTLEMENT, TransactionKind.OWED_BACK}
)
DRAIN_BATCH = 200
DRAIN_TRIES = 3


@dataclass(frozen=True)
class Wanted:
    """A posting the invoice's current state calls for."""

    fact: str
    kind: TransactionKind
    legs: tuple[Leg, ...]
    payment_id: int | None = None


def paid_at_mark(invoice: Invoice) -> int:
    """The amount paid when a person last marked the invoice settled (recorded in the event)."""
    for event in reversed(invoice.events):
        if event.type == EventType.SETTLED.value:
            paid = event.data.get("paid_atomic")
            return invoice.amount_paid_atomic if paid is None else int(paid)
    return invoice.amount_paid_atomic


@dataclass(frozen=True)
class Split:
    """What an invoice's final payments come to, and how much of it its sale takes."""

    wanted: list[Wanted]
    received_tiyn: int
    received_atomic: int  # of the booked receipts (a payment worth under a tiyn is not)
    allocated_tiyn: int
    allocated_atomic: int
    closed: bool  # settled, expired or invalid: what was not allocated is owed back
    sale_tiyn: int = 0  # of the allocation, the sale's part (net + fee): what can be returned
    returned_tiyn: int = 0  # of the sale, what its merchant returned (booked here)

    @property
    def owed_back(self) -> tuple[int, int]:
        """(tiyn, atomic) to give back; nothing while the invoice is open; never negative."""
        if not self.closed:
            return 0, 0
        return (
            max(self.received_tiyn - self.allocated_tiyn, 0),
            max(self.received_atomic - self.allocated_atomic, 0),
        )


def split(invoice: Invoice, settings: Settings, returns: Sequence[tuple[int, int]] = ()) -> Split:
    """The rule (see the module docstring); reads the invoice, its payments and `returns`,
    the (refund id, tiyn) of its sale returns not cancelled, oldest first."""
    direct = invoice.settlement_mode is SettlementMode.DIRECT
    method, merchant_id = invoice.method, invoice.merchant_id

    def value(atomic: int) -> int:
        return gross_tiyn(method, atomic, invoice.rate, settings.kzte_decimals)

    late_until = invoice.expires_at + timedelta(hours=settings.late_watch_hours)
    wanted: list[Wanted] = []
    received = received_atomic = counted = counted_atomic = 0
    for payment in invoice.payments:
        if payment.status is not PaymentStatus.FINAL:
            continue
        worth = value(payment.amount_atomic)
        if worth <= 0:
            continue  # worth less than a tiyn: nothing to book (reconcile lists it)
        legs = receipt_legs(direct, method, merchant_id, worth, payment.amount_atomic)
        fact = f"receipt:{payment.id}"
        wanted.append(Wanted(fact, TransactionKind.RECEIPT, tuple(legs), payment.id))
        received += worth
        received_atomic += payment.amount_atomic
        if payment.first_seen_at <= late_until:  # after the late window it never counts
            counted += worth
            counted_atomic += payment.amount_atomic
    allocated = allocated_atomic = sale = returned = 0
    if invoice.status is InvoiceStatus.SETTLED:
        due = invoice.amount_due_atomic
        if invoice.marked:
            # A person's decision: the value at the mark, received or not (reconcile shows it).
            allocated_atomic = min(paid_at_mark(invoice), due)
            allocated = value(allocated_atomic)
        else:
            allocated_atomic = min(counted_atomic, due)
            allocated = min(value(allocated_atomic), counted)
        if allocated > 0:
            parts = allocation(invoice.price_tiyn, allocated, merchant_fee_bp(invoice, settings))
            legs = allocation_legs(direct, merchant_id, parts)
            wanted.append(Wanted("allocation", TransactionKind.SETTLEMENT, tuple(legs)))
            sale = parts.owed_tiyn
    for refund_id, tiyn in returns:
        # Never more than the sale (a reorg can shrink it, or unsettle it: then none stands).
        taken = min(tiyn, sale - returned)
        if taken > 0:
            legs = return_legs(direct, merchant_id, taken)
            wanted.append(Wanted(f"return:{refund_id}", TransactionKind.OWED_BACK, tuple(legs)))
            returned += taken
    closed = invoice.status in TERMINAL
    if closed and received > allocated:
        legs = owed_back_legs(direct, merchant_id, received - allocated)
        wanted.append(Wanted("owed_back", TransactionKind.OWED_BACK, tuple(legs)))
    return Split(
        wanted, received, received_atomic, allocated, allocated_atomic, closed, sale, returned
    )


def sale_returns(session: Session, invoice_id: str) -> list[tuple[int, int]]:
    """(refund id, tiyn) of the invoice's sale returns not cancelled, oldest first."""
    return _returns(session, [invoice_id])[invoice_id]


def wanted_postings(
    invoice: Invoice, settings: Settings, returns: Sequence[tuple[int, int]] = ()
) -> list[Wanted]:
    return split(invoice, settings, returns).wanted


def _shape(legs: Sequence[Leg]) -> Counter[tuple[str, str, int, int | None]]:
    return Counter(
        (leg.account, leg.side.value, leg.amount_tiyn, leg.amount_atomic) for leg in legs
    )


def _legs_of(txn: LedgerTransaction) -> list[Leg]:
    return [Leg(e.account, e.side, e.amount_tiyn, e.amount_atomic) for e in txn.entries]


def plan_invoice(
    invoice: Invoice,
    settings: Settings,
    posted: Sequence[LedgerTransaction],
    returns: Sequence[tuple[int, int]],
    now: datetime,
) -> list[Posting]:
    """The reversals and postings that bring `invoice` in line with the rule, given what is
    posted for it (its transactions, oldest first, entries loaded) and its sale returns."""
    reversed_ids = {t.reverses_id for t in posted if t.reverses_id is not None}
    generations: Counter[str] = Counter()
    standing: dict[str, LedgerTransaction] = {}
    stale: list[LedgerTransaction] = []
    for row in posted:
        if row.kind not in BOOKED_KINDS:
            continue
        if row.fact is not None:
            generations[row.fact] += 1
        if row.id in reversed_ids:
            continue
        if row.fact is None:
            stale.append(row)  # booked by the rules before 0010: re-booked under these
        else:
            standing[row.fact] = row
    to_post: list[Wanted] = []
    for want in wanted_postings(invoice, settings, returns):
        txn: LedgerTransaction | None = standing.pop(want.fact, None)
        if txn is not None and _shape(_legs_of(txn)) == _shape(want.legs):
            continue
        if txn is not None:
            stale.append(txn)
        to_post.append(want)
    stale.extend(standing.values())
    postings = [
        Posting(
            key=f"reversal:{txn.id}",
            kind=TransactionKind.REVERSAL,
            legs=reversal_legs(_legs_of(txn)),
            effective_at=now,
            invoice_id=invoice.id,
            merchant_id=invoice.merchant_id,
            method=invoice.method.value,
            description=f"invoice {invoice.id}: {txn.fact or txn.kind.value} reversed",
            reverses_id=txn.id,
            fact=txn.fact,
            payment_id=txn.payment_id,
        )
        for txn in sorted(stale, key=lambda t: t.id)
    ]
    for want in to_post:
        generation = generations[want.fact] + 1
        postings.append(
            Posting(
                key=f"invoice:{invoice.id}:{want.fact}:{generation}",
                kind=want.kind,
                legs=want.legs,
                effective_at=now,
                invoice_id=invoice.id,
                merchant_id=invoice.merchant_id,
                method=invoice.method.value,
                description=f"invoice {invoice.id}: {want.fact.split(':')[0].replace('_', ' ')}",
                fact=want.fact,
                payment_id=want.payment_id,
            )
        )
    return postings


def _posted(session: Session, invoice_ids: Sequence[str]) -> dict[str, list[LedgerTransaction]]:
    """Each invoice's transactions, oldest first, with their entries: two queries in all."""
    found: dict[str, list[LedgerTransaction]] = {invoice_id: [] for invoice_id in invoice_ids}
    for txn in session.scalars(
        select(LedgerTransaction)
        .where(LedgerTransaction.invoice_id.in_(invoice_ids))
        .options(selectinload(LedgerTransaction.entries))
        .order_by(LedgerTransaction.id)
    ):
        found[str(txn.invoice_id)].append(txn)
    return found


def _returns(session: Session, invoice_ids: Sequence[str]) -> dict[str, list[tuple[int, int]]]:
    """`sale_returns` of many invoices in one query."""
    found: dict[str, list[tuple[int, int]]] = {invoice_id: [] for invoice_id in invoice_ids}
    for invoice_id, refund_id, tiyn in session.execute(
        select(Refund.invoice_id, Refund.id, Refund.amount_tiyn)
        .where(
            Refund.invoice_id.in_(invoice_ids),
            Refund.kind == RefundKind.SALE_RETURN,
            Refund.status != RefundStatus.CANCELLED,
        )
        .order_by(Refund.id)
    ):
        found[str(invoice_id)].append((int(refund_id), int(tiyn)))
    return found


def book_invoice(
    session: Session, settings: Settings, invoice: Invoice, now: datetime | None = None
) -> int:
    """Write the reversals and postings that bring `invoice` in line; returns how many."""
    postings = plan_invoice(
        invoice,
        settings,
        _posted(session, [invoice.id])[invoice.id],
        sale_returns(session, invoice.id),
        now or utcnow(),
    )
    written = write_postings(session, postings)
    session.flush()
    return written


def book_batch(
    session: Session, settings: Settings, invoices: Sequence[Invoice], now: datetime | None = None
) -> int:
    """`book_invoice` for many invoices in the caller's transaction: what is posted, the
    returns and the payments are read in a few queries, and every posting is written in one
    flush plus one multi-row INSERT of the entries."""
    now = now or utcnow()
    ids = [invoice.id for invoice in invoices]
    posted, returns = _posted(session, ids), _returns(session, ids)
    postings: list[Posting] = []
    for invoice in invoices:
        plan = plan_invoice(invoice, settings, posted[invoice.id], returns[invoice.id], now)
        postings.extend(plan)
    written = write_postings(session, postings)
    session.flush()
    return written


def book_one(factory: sessionmaker[Session], settings: Settings, invoice_id: str) -> int:
    """Book one invoice in its own transaction (the queue row goes with it); retried when a
    concurrent booker wrote the same key first."""
    for attempt in range(DRAIN_TRIES):
        with factory() as session:
            try:
                # The token before the invoice: a change committed after this read carries a
                # newer `queued_at`, so the delete below leaves it (SQLite reads outside a
                # transaction until the first write, so this order is what makes it safe
                # there). The invoice's lock then comes before the queue row's, the order every
                # enqueuer keeps (pos.ledger_queue).
                queued_at = session.scalar(
                    select(LedgerQueue.queued_at).where(LedgerQueue.invoice_id == invoice_id)
                )
                invoice = session.scalar(
                    select(Invoice).where(Invoice.id == invoice_id).with_for_update()
                )
                written = 0 if invoice is None else book_invoice(session, settings, invoice)
                if queued_at is not None:
                    # Only if nothing re-queued it meanwhile: a newer change is booked next pass.
                    session.execute(
                        delete(LedgerQueue).where(
                            LedgerQueue.invoice_id == invoice_id,
                            LedgerQueue.queued_at == queued_at,
                        )
                    )
                session.commit()
                return written
            except IntegrityError:
                session.rollback()
                if attempt == DRAIN_TRIES - 1:
                    raise
                log.info("invoice %s was booked concurrently; looking again", invoice_id)
    return 0  # unreachable: the loop returns or raises


def drain_queue(
    factory: sessionmaker[Session], settings: Settings, batch: int = DRAIN_BATCH
) -> int:
    """Book the queued invoices (oldest first, up to `batch`) in one transaction; returns the
    postings written.

    Each row's `queued_at` is read first, then the invoices are locked (PostgreSQL: FOR UPDATE
    SKIP LOCKED, so the booker never waits on a watcher holding one; a skipped invoice keeps
    its row and is booked next pass), booked with `book_batch`, and the rows deleted only where
    `queued_at` is still the one read. One commit for the batch; a crash before it leaves every
    row queued and nothing posted, and the keys make booking again exact. If a concurrent
    booker wrote one of the keys first, the batch rolls back and is booked one by one.
    """
    with factory() as session:
        queued = session.execute(
            select(LedgerQueue.invoice_id, LedgerQueue.queued_at)
            .order_by(LedgerQueue.queued_at)
            .limit(batch)
        ).all()
    if not queued:
        return 0
    tokens = {str(invoice_id): queued_at for invoice_id, queued_at in queued}
    try:
        return _book_queued(factory, settings, tokens)
    except IntegrityError:
        log.info("a concurrent booker wrote part of a batch first; booking it one by one")
        return sum(book_one(factory, settings, invoice_id) for invoice_id in tokens)


def _book_queued(
    factory: sessionmaker[Session], settings: Settings, tokens: dict[str, datetime]
) -> int:
    with factory() as session:
        invoices = session.scalars(
            select(Invoice)
            .where(Invoice.id.in_(tokens))
            .order_by(Invoice.id)
            .with_for_update(skip_locked=True)
            .options(selectinload(Invoice.payments), selectinload(Invoice.merchant))
        ).all()
        written = book_batch(session, settings, invoices)
        done = [{"booked": i.id, "token": tokens[i.id]} for i in invoices]
        if done:
            queue = cast(Table, LedgerQueue.__table__)  # the Core table: executemany
            session.execute(
                delete(queue).where(
                    queue.c.invoice_id == bindparam("booked"),
                    queue.c.queued_at == bindparam("token"),
                ),
                done,
            )
        session.commit()
        return written


def drain(rt: Runtime) -> int:
    """Worker duty: book what changed."""
    return drain_queue(rt.session_factory, rt.settings)


def duty() -> list[Duty]:
    """The ledger's duties for `settlement.worker.all_duties`."""
    return [Duty("ledger-book", 0.5, drain)]
