"""Issue #14: a `tenge` merchant's KZTE invoice pays the zone's wallet (the reference tells the
invoices apart) and its value and quantity land on the zone's clearing account."""

from __future__ import annotations

from decimal import Decimal

import pytest
from kzte_support import Shop

from pos import accounts
from pos.models import SettlementMode
from pos.states import InvoiceStatus
from settlement.ledger.balances import balance_map
from settlement.ledger.booking import drain_queue

pytestmark = pytest.mark.db


def test_two_tenge_invoices_pay_the_zone_wallet_and_each_settles_on_its_own(shop: Shop) -> None:
    with shop.rt.session_factory.begin() as session:
        tenge = accounts.create_merchant(
            session, shop.rt.settings, "Zone Paid Shop", settlement_mode=SettlementMode.TENGE
        )
        shop.merchant_id = tenge.id  # no wallet of its own: the zone's receives
    first, second = shop.invoice(1000_00), shop.invoice(2000_00)
    zone = shop.rt.settings.zone_kzte_wallet
    assert first.kzte_recipient == second.kzte_recipient == zone
    assert first.kzte_reference != second.kzte_reference
    shop.pay(shop.uri(second.id), Decimal("1.1"))  # 10 % over
    paid = shop.drive_until(second.id, lambda i: i.status is InvoiceStatus.SETTLED, "settled")
    assert shop.reload(first.id).status is InvoiceStatus.NEW  # same wallet, other reference
    drain_queue(shop.rt.session_factory, shop.rt.settings)
    with shop.rt.session_factory() as session:
        balances = balance_map(session)
    assert balances["zone:clearing:kzte"] == (220_000, paid.amount_paid_atomic)
    assert balances["zone:refunds_due"] == (20_000, None)
    assert balances[f"merchant:{tenge.id}:payable"] == (200_000 - 2_000, None)
