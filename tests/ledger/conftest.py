"""Fixtures for the ledger tests: the ledger tables, a shop, and invoices paid in full."""

from __future__ import annotations

import pytest
from bank_support import give_bank_details
from ledger_support import MakeInvoice
from sqlalchemy.orm import Session

import settlement.ledger.models  # noqa: F401 - the ledger tables, for the per-test cleanup
from pos import invoices
from pos.models import Invoice, Merchant
from pos.runtime import Runtime
from pos.states import PaymentMethod

import factories


@pytest.fixture
def shop(runtime: Runtime, session: Session) -> Merchant:
    merchant = factories.merchant(session, runtime.settings, "Ledger Shop", "ledger")
    merchant.payout_hold_hours = 0  # paid out at once here; test_settlement_scenario holds
    give_bank_details(session, merchant)  # else its payouts stay out of the bank export
    session.commit()
    return merchant


@pytest.fixture
def make_invoice(runtime: Runtime, session: Session, shop: Merchant) -> MakeInvoice:
    def make(
        price_tiyn: int = 250_000,
        method: PaymentMethod = PaymentMethod.KZTE,
        merchant: Merchant | None = None,
    ) -> Invoice:
        invoice = invoices.create_invoice(
            session,
            runtime.settings,
            runtime.rates,
            invoices.InvoiceRequest((merchant or shop).id, price_tiyn, method),
        )
        session.commit()
        return invoice

    return make
