"""Helpers for the KZTE tests: the shop under test and a bounded way to drive the watcher."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pytest

from pos import invoices
from pos.invoice_view import payment_uri
from pos.invoices import InvoiceRequest
from pos.models import Invoice
from pos.runtime import Runtime
from pos.states import PaymentMethod
from sandbox.solana.validator import RunningValidator
from sandbox.solana.wallet import pay_uri
from settlement.kzte_watcher import KzteWatcher, Schedule

# Every feed (and every sweep) is due on every pass: the tests wait for the chain, not for the
# schedule.
EAGER = Schedule(hot_seconds=0.0, open_seconds=0.0, late_seconds=0.0, sweep_seconds=0.0)
DEADLINE_SECONDS = 60.0  # finality on surfpool takes ~32 slots (~13 s); generous on a busy box


@dataclass
class Shop:
    """The runtime pointed at the sandbox chain, a merchant with a fresh wallet, a shopper."""

    rt: Runtime
    validator: RunningValidator
    merchant_id: int
    wallet: str
    shopper_dir: Path
    watcher: KzteWatcher

    def invoice(self, price_tiyn: int = 1500_00) -> Invoice:
        with self.rt.session_factory() as session:
            invoice = invoices.create_invoice(
                session,
                self.rt.settings,
                self.rt.rates,
                InvoiceRequest(self.merchant_id, price_tiyn, PaymentMethod.KZTE),
            )
            session.commit()
            invoices.publish_after_commit(self.rt.session_factory, self.rt.coordinator, session)
            session.expunge(invoice)
            return invoice

    def reload(self, invoice_id: str) -> Invoice:
        with self.rt.session_factory() as session:
            invoice = session.get_one(Invoice, invoice_id)
            _ = invoice.payments  # load before the session closes
            session.expunge_all()
            return invoice

    def uri(self, invoice_id: str) -> str:
        with self.rt.session_factory() as session:
            invoice = session.get_one(Invoice, invoice_id)
            return payment_uri(invoice, self.rt.settings, "Test Shop")

    def pay(
        self, uri: str, amount_factor: Decimal = Decimal(1), wrong_mint: bool = False
    ) -> list[str]:
        return pay_uri(
            uri,
            rpc_url=self.validator.rpc_url,
            wallet_dir=self.shopper_dir,
            faucet_data_dir=self.validator.data_dir,
            amount_factor=amount_factor,
            wrong_mint=wrong_mint,
        )

    def drive_until(self, invoice_id: str, done: Callable[[Invoice], bool], what: str) -> Invoice:
        """Run watcher passes until `done(invoice)` holds; fail after a generous deadline."""
        deadline = time.monotonic() + DEADLINE_SECONDS
        while True:
            self.watcher.run(self.rt)
            invoice = self.reload(invoice_id)
            if done(invoice):
                return invoice
            if time.monotonic() > deadline:
                pytest.fail(f"invoice never became {what}: {invoice.status}, {invoice.flags}")
            time.sleep(0.2)
