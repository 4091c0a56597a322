"""What every drill gets: the parameters (quick or full) and the context with its helpers."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import func, select

from drills.stack import Stack
from drills.traffic import Api, Book, Miner, Record, Shopper
from pos.models import Invoice, Payment, PaymentStatus
from pos.states import InvoiceStatus
from settlement.ledger.models import LedgerTransaction, TransactionKind

WAIT_SECONDS = 60.0  # a drill's own checks wait this long for the worker


@dataclass(frozen=True)
class Params:
    """How hard and how long (quick: the bounded form CI runs)."""

    kills: int
    kill_gap: tuple[float, float]  # seconds between two worker kills, drawn uniformly
    kill_payments: int
    flow_every: float  # seconds between two background payments
    redis_gap: float  # seconds between the Redis faults
    redis_down: float
    outage: float  # node and surfpool outages
    outage_invoices: int  # invoices expiring during each outage (half of them paid)
    two_workers: float
    load_rate: float  # invoices a second
    load_seconds: float
    load_pay_one_in: int
    mine_every: float
    converge: float  # seconds the end waits for the stack to agree with the chains

    @staticmethod
    def quick() -> Params:
        return Params(
            kills=10,
            kill_gap=(1.0, 3.0),
            kill_payments=24,
            flow_every=0.7,
            redis_gap=4.0,
            redis_down=3.0,
            outage=8.0,
            outage_invoices=4,
            two_workers=12.0,
            load_rate=50.0,
            load_seconds=8.0,
            load_pay_one_in=25,
            mine_every=2.0,
            converge=150.0,
        )

    @staticmethod
    def full() -> Params:
        return Params(
            kills=15,
            kill_gap=(3.0, 12.0),
            kill_payments=200,
            flow_every=0.6,
            redis_gap=20.0,
            redis_down=15.0,
            outage=60.0,
            outage_invoices=10,
            two_workers=60.0,
            load_rate=50.0,
            load_seconds=60.0,
            load_pay_one_in=20,
            mine_every=3.0,
            converge=900.0,
        )


@dataclass
class Ctx:
    stack: Stack
    book: Book
    api: Api
    shopper: Shopper
    miner: Miner
    params: Params

    def check(self, drill: str, ok: bool, what: str) -> bool:
        if not ok:
            self.book.fail(drill, f"{self.stack.name}: {what}")
        return ok

    def invoice(self, invoice_id: str) -> Invoice | None:
        with self.stack.runtime.session_factory() as session:
            invoice = session.get(Invoice, invoice_id)
            if invoice is not None:
                session.expunge(invoice)
            return invoice

    def wait_status(
        self, record: Record, done: Callable[[InvoiceStatus], bool], timeout: float = WAIT_SECONDS
    ) -> InvoiceStatus | None:
        """Poll the invoice until `done(status)` (bounded); its last status."""
        deadline = time.monotonic() + timeout
        status = None
        while time.monotonic() < deadline:
            invoice = self.invoice(record.invoice_id)
            status = None if invoice is None else invoice.status
            if status is not None and done(status):
                return status
            time.sleep(0.2)
        return status

    def invoice_status(self, record: Record) -> InvoiceStatus | None:
        invoice = self.invoice(record.invoice_id)
        return None if invoice is None else invoice.status

    def net_settlements(self, invoice_id: str) -> int:
        with self.stack.runtime.session_factory() as session:
            rows = session.execute(
                select(LedgerTransaction.kind, func.count())
                .where(
                    LedgerTransaction.invoice_id == invoice_id,
                    LedgerTransaction.fact == "allocation",  # the sale, not its receipts
                )
                .group_by(LedgerTransaction.kind)
            ).all()
        counts = {kind: n for kind, n in rows}
        return counts.get(TransactionKind.SETTLEMENT, 0) - counts.get(TransactionKind.REVERSAL, 0)

    def payment_status(self, txid: str) -> PaymentStatus | None:
        with self.stack.runtime.session_factory() as session:
            return session.scalar(select(Payment.status).where(Payment.txid == txid))

    def mine(self, blocks: int = 1) -> None:
        with self.stack.btc_lock:
            self.stack.btc.mine(blocks)

    def settle_up(self, timeout: float = 45.0) -> None:
        """Let the previous drill's BTC payments be mined and its invoices settle (no verdict:
        the audit gives it), so one drill's leftovers do not blur the next one's numbers."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            open_paid = [
                r
                for r in self.book.records
                if r.txids
                and (inv := self.invoice(r.invoice_id)) is not None
                and inv.status is InvoiceStatus.PROCESSING
            ]
            if not open_paid:
                return
            if self.miner.enabled.is_set():
                time.sleep(1.0)
            else:
                self.mine(1)
                time.sleep(1.0)


def eventually(condition: Callable[[], bool], timeout: float = WAIT_SECONDS) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.3)
    return condition()
