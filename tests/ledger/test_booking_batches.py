"""The ledger duty books a batch of invoices per transaction (issue #16: ledger posting).

A process killed after writing a batch's postings but before its commit leaves nothing
posted and every invoice still queued; booking again then posts each exactly once.
"""

from __future__ import annotations

import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from ledger_support import MakeInvoice, pay, unbalanced_transactions
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from pos.models import LedgerQueue, PaymentStatus
from pos.runtime import Runtime
from pos.states import PaymentMethod
from settlement.ledger.booking import book_one, drain_queue
from settlement.ledger.models import LedgerTransaction

pytestmark = pytest.mark.db

# The child books one batch as the duty does, and is SIGKILLed right after the batch's INSERTs
# reached the database, inside the open transaction: a crash mid-batch.
CHILD = textwrap.dedent(
    """
    import os, pickle, signal, sys
    from pos.db import make_engine, make_session_factory
    from settlement.ledger import booking

    settings = pickle.load(open(sys.argv[1], "rb"))
    real = booking.book_batch

    def book_then_die(*args, **kwargs):
        written = real(*args, **kwargs)
        print(f"wrote {written}", flush=True)
        os.kill(os.getpid(), signal.SIGKILL)

    booking.book_batch = book_then_die
    factory = make_session_factory(make_engine(settings.database_url))
    booking.drain_queue(factory, settings)
    """
)


def _count(session: Session, model: type) -> int:
    session.commit()  # a fresh snapshot
    return session.scalar(select(func.count()).select_from(model)) or 0


def test_a_crash_mid_batch_posts_nothing_and_booking_again_posts_each_once(
    runtime: Runtime, session: Session, make_invoice: MakeInvoice, tmp_path: Path
) -> None:
    sales = []
    for i in range(30):
        method = PaymentMethod.KZTE if i % 2 else PaymentMethod.BTC
        invoice = make_invoice(price_tiyn=100_000 + i, method=method)
        pay(session, invoice, invoice.amount_due_atomic + (i % 3) * 1_000, PaymentStatus.FINAL)
        sales.append(invoice.id)
    assert _count(session, LedgerQueue) == 30
    settings_file = tmp_path / "settings.pickle"
    settings_file.write_bytes(pickle.dumps(runtime.settings))
    child = subprocess.run(
        [sys.executable, "-c", CHILD, str(settings_file)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert child.returncode == -9, child.stderr[-2000:]
    assert child.stdout.startswith("wrote ") and int(child.stdout.split()[1]) >= 60
    # Nothing of the batch was committed: no posting, and every invoice still queued.
    assert _count(session, LedgerTransaction) == 0
    assert _count(session, LedgerQueue) == 30

    first = drain_queue(runtime.session_factory, runtime.settings)
    assert first == int(child.stdout.split()[1])  # the same postings, written once
    assert _count(session, LedgerQueue) == 0
    assert drain_queue(runtime.session_factory, runtime.settings) == 0
    keys = session.scalars(select(LedgerTransaction.idempotency_key)).all()
    assert len(keys) == len(set(keys)) == first
    assert unbalanced_transactions(session) == []
    booked = set(session.scalars(select(LedgerTransaction.invoice_id)).all())
    assert booked == set(sales)


def _shapes(session: Session, invoice_ids: list[str]) -> list[list[tuple[object, ...]]]:
    """Per invoice (in the order given), its postings without ids: kind, fact, legs."""
    session.commit()
    out = []
    for invoice_id in invoice_ids:
        txns = session.scalars(
            select(LedgerTransaction)
            .where(LedgerTransaction.invoice_id == invoice_id)
            .order_by(LedgerTransaction.id)
        ).all()
        out.append(
            [
                (
                    t.kind.value,
                    (t.fact or "").split(":")[0],
                    sorted(
                        (e.account, e.side.value, e.amount_tiyn, e.amount_atomic) for e in t.entries
                    ),
                )
                for t in txns
            ]
        )
    return out


def test_a_batch_books_exactly_what_one_invoice_per_transaction_books(
    runtime: Runtime, session: Session, make_invoice: MakeInvoice
) -> None:
    def histories() -> list[str]:
        ids = []
        for i in range(12):
            # KZTE: 1:1, so both sets lock the same rate (the sandbox's BTC rate moves).
            invoice = make_invoice(price_tiyn=50_000 + 7 * i, method=PaymentMethod.KZTE)
            paid = invoice.amount_due_atomic * (1 + i % 2) - (i % 4 == 3) * 1_000
            pay(session, invoice, paid, PaymentStatus.FINAL, txid=f"tx-{invoice.id}")
            ids.append(invoice.id)
        return ids

    alone = histories()
    for invoice_id in alone:  # the previous way: one transaction per invoice
        book_one(runtime.session_factory, runtime.settings, invoice_id)
    batched = histories()
    written = drain_queue(runtime.session_factory, runtime.settings)
    assert written == sum(len(p) for p in _shapes(session, batched)) > 12
    assert _shapes(session, batched) == _shapes(session, alone)
