"""Harness for watcher tests: a chain (sandbox or Core), a merchant, the worker's duties.

The worker's duties run only when a test calls `tick()` / `until(...)`, so a test decides
exactly what the watcher gets to see between two chain events.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_DOWN, Decimal

from chains import Chain
from sqlalchemy import select, update
from sqlalchemy.orm import selectinload

from pos import invoices
from pos.invoice_view import payment_uri
from pos.models import Invoice, Merchant, Payment
from pos.runtime import Runtime
from pos.states import InvoiceStatus, PaymentMethod
from sandbox.bitcoin.wallet import parse_bip21
from settlement.ledger.models import LedgerTransaction, Side
from settlement.ledger.posting import fee_tiyn, merchant_fee_bp, payable_account
from settlement.ledger.statements import balances
from settlement.worker import Duty, WorkerState, all_duties, run_pass

UNTIL_TIMEOUT = 30.0


def status_is(status: InvoiceStatus) -> Callable[[Invoice], bool]:
    return lambda invoice: invoice.status is status


@dataclass
class World:
    runtime: Runtime
    chain: Chain
    merchant_id: int
    duties: list[Duty] = field(default_factory=list)
    state: WorkerState = field(default_factory=WorkerState)

    # --- invoices ------------------------------------------------------------------------
    def invoice(self, price_tiyn: int = 250_000) -> str:
        with self.runtime.session_factory() as session:
            created = invoices.create_invoice(
                session,
                self.runtime.settings,
                self.runtime.rates,
                invoices.InvoiceRequest(self.merchant_id, price_tiyn, PaymentMethod.BTC),
            )
            session.commit()
            invoices.publish_after_commit(
                self.runtime.session_factory, self.runtime.coordinator, session
            )
            return created.id

    def load(self, invoice_id: str) -> Invoice:
        with self.runtime.session_factory() as session:
            invoice = session.scalars(
                select(Invoice)
                .where(Invoice.id == invoice_id)
                .options(
                    selectinload(Invoice.payments),
                    selectinload(Invoice.events),
                    selectinload(Invoice.merchant),
                )
            ).one()
        return invoice

    def uri(self, invoice_id: str) -> str:
        with self.runtime.session_factory() as session:
            invoice = invoices.get_invoice(session, invoice_id)
            return payment_uri(invoice, self.runtime.settings, "Test Shop")

    def address(self, invoice_id: str) -> str:
        return self.load(invoice_id).btc_address or ""

    def pay(self, invoice_id: str, factor: Decimal = Decimal(1)) -> str:
        """The shopper pays what the invoice's BIP21 URI asks (times `factor`); the txid."""
        request = parse_bip21(self.uri(invoice_id))
        amount = int((request.amount * factor).to_integral_value(ROUND_DOWN))
        return self.chain.pay(request.address, amount)

    def set_merchant(self, **values: object) -> None:
        with self.runtime.session_factory.begin() as session:
            session.execute(update(Merchant).where(Merchant.id == self.merchant_id).values(values))

    def expire_in(self, invoice_id: str, seconds: float) -> None:
        with self.runtime.session_factory.begin() as session:
            session.execute(
                update(Invoice)
                .where(Invoice.id == invoice_id)
                .values(expires_at=datetime.now(UTC) + timedelta(seconds=seconds))
            )

    def backdate_missing(self, invoice_id: str, hours: float = 2.0) -> int:
        """Move `Payment.missing_since` of the invoice's vanished payments back in time, as
        if the grace window had passed; returns how many payments were missing."""
        with self.runtime.session_factory.begin() as session:
            missing = session.scalars(
                select(Payment).where(
                    Payment.invoice_id == invoice_id, Payment.missing_since.is_not(None)
                )
            ).all()
            for payment in missing:
                payment.missing_since = datetime.now(UTC) - timedelta(hours=hours)
        return len(missing)

    # --- the worker ----------------------------------------------------------------------
    def tick(self) -> dict[str, int]:
        return run_pass(self.runtime, self.duties, self.state, force=True)

    def until(
        self,
        invoice_id: str,
        ready: Callable[[Invoice], bool],
        timeout: float = UNTIL_TIMEOUT,
    ) -> Invoice:
        """Run worker passes until the invoice satisfies `ready` (bounded; fails loudly)."""
        deadline = time.monotonic() + timeout
        while True:
            self.tick()
            invoice = self.load(invoice_id)
            if ready(invoice):
                return invoice
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"invoice {invoice_id} stuck at {invoice.status} {invoice.flags}, "
                    f"paid {invoice.amount_paid_atomic}/{invoice.amount_due_atomic}, "
                    f"payments {[(p.txid[:8], p.status.value) for p in invoice.payments]}"
                )
            time.sleep(0.05)

    def new_worker(self) -> None:
        """A restarted worker process: fresh duties, nothing remembered in memory."""
        self.close()
        self.duties = all_duties(self.runtime.settings)
        self.state = WorkerState()

    def close(self) -> None:
        for duty in self.duties:
            if duty.close is not None:
                duty.close()

    # --- the ledger ----------------------------------------------------------------------
    def balances(self) -> dict[str, int]:
        """Every account's balance (debits - credits) after the ledger consumer caught up."""
        self.tick()
        with self.runtime.session_factory() as session:
            return balances(session)

    def ledger_balanced(self) -> bool:
        """Every ledger transaction has debits = credits, so the whole ledger sums to zero."""
        self.tick()
        with self.runtime.session_factory() as session:
            for txn in session.scalars(select(LedgerTransaction)):
                signed = [
                    e.amount_tiyn if e.side is Side.DEBIT else -e.amount_tiyn for e in txn.entries
                ]
                if len(signed) < 2 or sum(signed) != 0:
                    return False
            return sum(balances(session).values()) == 0

    def payable(self) -> int:
        """What the zone owes the merchant (a credit balance, so shown positive)."""
        return -self.balances().get(payable_account(self.merchant_id), 0)

    def net_tiyn(self, invoice_id: str) -> int:
        """The merchant's share of a settled invoice: price less the zone's fee."""
        invoice = self.load(invoice_id)
        fee_bp = merchant_fee_bp(invoice, self.runtime.settings)
        return invoice.price_tiyn - fee_tiyn(invoice.price_tiyn, fee_bp)


def make_world(runtime: Runtime, chain: Chain, merchant: Merchant) -> World:
    runtime.settings = runtime.settings.with_overrides(bitcoin_rpc_url=chain.url)
    world = World(runtime, chain, merchant.id, all_duties(runtime.settings))
    world.tick()  # first pass: rebuild the live state, checkpoint at the tip
    return world
