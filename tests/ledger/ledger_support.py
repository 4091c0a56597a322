"""Helpers shared by the ledger tests (a module of its own: `conftest` names clash)."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from pos.models import Invoice, LedgerQueue, PaymentStatus
from pos.settings import Settings
from pos.states import PaymentMethod
from settlement.ledger.booking import book_invoice
from settlement.ledger.models import LedgerEntry, LedgerTransaction, Side
from settlement.payments import Observation, observe_payment, reevaluate

MakeInvoice = Callable[..., Invoice]


def pay(
    session: Session,
    invoice: Invoice,
    amount_atomic: int,
    status: PaymentStatus = PaymentStatus.FINAL,
    txid: str | None = None,
) -> list[str]:
    """A watcher's observation of one payment, applied and committed."""
    txid = txid or f"tx-{invoice.id}"  # payments are unique per chain and txid
    chain = "bitcoin" if invoice.method is PaymentMethod.BTC else "solana"
    observe_payment(session, invoice, Observation(chain, txid, 0, amount_atomic, status))
    events = reevaluate(session, invoice)
    session.commit()
    return events


def unbalanced_transactions(session: Session) -> list[int]:
    """Ids of ledger transactions with fewer than two legs or debits != credits (none, ever)."""
    bad = []
    for txn in session.scalars(select(LedgerTransaction)):
        debits = sum(e.amount_tiyn for e in txn.entries if e.side is Side.DEBIT)
        credits = sum(e.amount_tiyn for e in txn.entries if e.side is Side.CREDIT)
        if len(txn.entries) < 2 or debits != credits:
            bad.append(txn.id)
    return bad


def ledger_size(session: Session, invoice_id: str | None = None) -> tuple[int, int]:
    """(transactions, entries), of one invoice or all: a replay must leave both unchanged."""
    session.commit()  # a fresh snapshot: other sessions have written
    only = () if invoice_id is None else (LedgerTransaction.invoice_id == invoice_id,)
    return (
        session.scalar(select(func.count()).select_from(LedgerTransaction).where(*only)) or 0,
        session.scalar(
            select(func.count())
            .select_from(LedgerEntry)
            .join(LedgerTransaction, LedgerTransaction.id == LedgerEntry.transaction_id)
            .where(*only)
        )
        or 0,
    )


def legs_of(txn: LedgerTransaction) -> list[tuple[str, str, int]]:
    return sorted((e.account, e.side.value, e.amount_tiyn) for e in txn.entries)


def book_all(session: Session, settings: Settings) -> None:
    """What the worker's ledger duty does: book every queued invoice, then commit."""
    session.commit()
    for queued in session.scalars(select(LedgerQueue)).all():
        invoice = session.get(Invoice, queued.invoice_id)
        if invoice is not None:
            book_invoice(session, settings, invoice)
        session.delete(queued)
    session.commit()
