"""The ledger's inbox: "look at this invoice again", written with the change that needs it.

An upsert, so any number of changes in any number of transactions leave one row per invoice,
and a newer `queued_at` tells the drainer that the invoice changed again while it was working
(settlement.ledger.booking.drain_queue deletes a row only if `queued_at` is still the one it
read).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from pos.db import utcnow
from pos.models import LedgerQueue


def enqueue(session: Session, invoice_id: str, now: datetime | None = None) -> None:
    """Ask the ledger to re-book `invoice_id`; part of the caller's transaction."""
    values = {"invoice_id": invoice_id, "queued_at": now or utcnow()}
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(LedgerQueue).values(values)
    statement = statement.on_conflict_do_update(
        index_elements=[LedgerQueue.invoice_id], set_={"queued_at": statement.excluded.queued_at}
    )
    session.execute(statement)
