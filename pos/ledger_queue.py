"""The ledger's inbox: "look at this invoice again", written with the change that needs it.

An upsert, so any number of changes in any number of transactions leave one row per invoice,
and a newer `queued_at` tells the drainer that the invoice changed again while it was working
(settlement.ledger.booking.book_one deletes a row only if `queued_at` is still the one it read).

Lock order. Every writer of a queue row holds the invoice's row lock first: `enqueue` takes it
(a no-op when the caller already bumped the invoice's version), and the booker takes it before
it deletes the row. With one order, invoice then queue, a watcher recording a payment,
a person marking the invoice and the booker wait for each other instead of deadlocking (on
PostgreSQL a watcher that upserted the row before bumping the invoice, while a marker held the
invoice and upserted next, was a deadlock: seen in CI's soak). SQLite has one writer at a time
and ignores FOR UPDATE, so there the order costs nothing and changes nothing.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from pos.db import utcnow
from pos.models import Invoice, LedgerQueue


def lock_invoice(session: Session, invoice_id: str) -> None:
    """Hold the invoice's row lock until the caller's transaction ends (see the lock order)."""
    session.execute(select(Invoice.id).where(Invoice.id == invoice_id).with_for_update())


def enqueue(session: Session, invoice_id: str, now: datetime | None = None) -> None:
    """Ask the ledger to re-book `invoice_id`; part of the caller's transaction."""
    lock_invoice(session, invoice_id)
    # A fresh instant even when the caller reuses one `now` for several transactions: the
    # booker tells "changed again meanwhile" by `queued_at` alone.
    queued_at = max(now, utcnow()) if now is not None else utcnow()
    values = {"invoice_id": invoice_id, "queued_at": queued_at}
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(LedgerQueue).values(values)
    statement = statement.on_conflict_do_update(
        index_elements=[LedgerQueue.invoice_id], set_={"queued_at": statement.excluded.queued_at}
    )
    session.execute(statement)
