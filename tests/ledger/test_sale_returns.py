"""A merchant returns a settled sale (issue #17 item 6: the refund button on a paid sale).

Every balance is computed here from the price and the fee rule, not with the posting module.
"""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from ledger_support import MakeInvoice, pay, unbalanced_transactions
from sqlalchemy import select
from sqlalchemy.orm import Session

from pos import accounts, money
from pos.business_day import local_date
from pos.db import utcnow
from pos.demo_wallets import demo_solana_wallet
from pos.models import Invoice, Merchant, SettlementMode
from pos.runtime import Runtime
from pos.states import InvoiceStatus, PaymentMethod
from settlement.ledger import merchant_dashboard, payouts, refunds
from settlement.ledger.balances import balance_map, ledger_balances
from settlement.ledger.booking import drain_queue
from settlement.ledger.models import Refund, RefundKind, RefundStatus
from settlement.ledger.reports import DateRange

pytestmark = pytest.mark.db
FEE_BP = 100  # the zone default in the test settings


def fee(price: int) -> int:
    return (price * FEE_BP + 5_000) // 10_000


def balances(runtime: Runtime, session: Session) -> dict[str, int]:
    drain_queue(runtime.session_factory, runtime.settings)
    session.commit()
    assert unbalanced_transactions(session) == []
    assert ledger_balances(session)
    return {k: v[0] for k, v in balance_map(session).items() if v[0]}


def settled_sale(
    session: Session, make_invoice: MakeInvoice, price: int, method: PaymentMethod
) -> Invoice:
    invoice = make_invoice(price_tiyn=price, method=method)
    pay(session, invoice, invoice.amount_due_atomic)
    assert invoice.status is InvoiceStatus.SETTLED
    return invoice


def test_a_tenge_sale_returned_in_part_then_in_full_moves_it_from_payable_to_refunds_due(
    runtime: Runtime, session: Session, shop: Merchant, make_invoice: MakeInvoice
) -> None:
    price = 250_000
    invoice = settled_sale(session, make_invoice, price, PaymentMethod.KZTE)
    payable = f"merchant:{shop.id}:payable"
    assert balances(runtime, session)[payable] == price - fee(price)
    # Nothing was paid over: the owed-back refund has nothing to give, a return has the sale.
    assert refunds.available(session, runtime.settings, invoice) == (0, 0)
    assert refunds.returnable(session, runtime.settings, invoice) == price

    first = refunds.create_return(
        session, runtime.settings, invoice.id, amount_tiyn=100_000, merchant_id=shop.id
    )
    session.commit()
    assert (first.kind, first.amount_tiyn) == (RefundKind.SALE_RETURN, 100_000)
    assert first.amount_atomic == 100_000 * 10_000  # KZTE, 6 decimals: 1 tiyn = 10^4 units
    after = balances(runtime, session)
    assert after[payable] == price - fee(price) - 100_000
    assert after["zone:refunds_due"] == 100_000
    assert after["zone:fees"] == fee(price)  # the zone keeps its fee on a return
    assert refunds.returnable(session, runtime.settings, invoice) == price - 100_000

    with pytest.raises(refunds.RefundError, match=f"at most {money.format_kzt(150_000)} ₸"):
        refunds.create_return(session, runtime.settings, invoice.id, amount_tiyn=150_001)
    session.rollback()
    rest = refunds.create_return(session, runtime.settings, invoice.id)
    session.commit()
    assert rest.amount_tiyn == price - 100_000
    full = balances(runtime, session)
    assert full[payable] == -fee(price)  # the merchant gave the whole price back
    assert full["zone:refunds_due"] == price
    with pytest.raises(refunds.RefundError, match="returned in full"):
        refunds.create_return(session, runtime.settings, invoice.id)
    session.rollback()

    # Cancelling an unsent return gives the sale back to the merchant.
    refunds.cancel(session, rest.id, merchant_id=shop.id)
    session.commit()
    undone = balances(runtime, session)
    assert undone[payable] == price - fee(price) - 100_000
    assert undone["zone:refunds_due"] == 100_000
    assert refunds.returnable(session, runtime.settings, invoice) == price - 100_000
    # Booking again changes nothing.
    assert balances(runtime, session) == undone
    # The owner's dashboard counts the sale once and what was given back apart.
    today = local_date(utcnow())
    month = merchant_dashboard.sales(session, shop.id, DateRange(today.replace(day=1), today))
    assert (month.count, month.sales_tiyn, month.fees_tiyn) == (1, price, fee(price))
    assert month.returned_tiyn == 100_000
    assert month.net_tiyn == price - fee(price) - 100_000


def test_a_returned_btc_sale_gives_back_at_most_the_sats_of_that_part_and_posts_on_confirm(
    runtime: Runtime, session: Session, shop: Merchant, make_invoice: MakeInvoice
) -> None:
    price = 480_000
    invoice = settled_sale(session, make_invoice, price, PaymentMethod.BTC)
    balances(runtime, session)
    returned = refunds.create_return(session, runtime.settings, invoice.id, merchant_id=shop.id)
    session.commit()
    # The sale's sats are the due less the satoshi ceiling; the shopper gets back no more.
    assert 0 < returned.amount_atomic <= invoice.amount_due_atomic
    assert invoice.amount_due_atomic - returned.amount_atomic <= 1
    before = balances(runtime, session)
    assert before["zone:refunds_due"] == price
    refunds.claim(
        session, runtime.settings, returned.token, "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080"
    )
    refunds.record_sent(session, returned.id, "ab" * 32)
    refunds.confirm(session, returned)
    session.commit()
    after = balances(runtime, session)
    assert "zone:refunds_due" not in after
    assert after["zone:clearing:btc"] == before["zone:clearing:btc"] - price
    assert balance_map(session)["zone:clearing:btc"][1] == (
        invoice.amount_due_atomic - returned.amount_atomic
    )


def test_a_direct_merchant_returns_from_its_memorandum_sales_and_still_owes_the_fee(
    runtime: Runtime, session: Session, make_invoice: MakeInvoice
) -> None:
    merchant = accounts.create_merchant(
        session,
        runtime.settings,
        "Direct Books",
        solana_wallet=demo_solana_wallet("direct books"),
        settlement_mode=SettlementMode.DIRECT,
    )
    session.commit()
    invoice = settled_sale(
        session, make_invoice_for(make_invoice, merchant), 100_000, PaymentMethod.KZTE
    )
    balances(runtime, session)
    refunds.create_return(session, runtime.settings, invoice.id, merchant_id=merchant.id)
    session.commit()
    m = merchant.id
    after = balances(runtime, session)
    assert f"merchant:{m}:sales" not in after  # 100,000 sold, 100,000 returned
    assert after[f"merchant:{m}:refunds_owed"] == 100_000
    assert after[f"merchant:{m}:fees_due"] == fee(100_000)
    assert not any(k.endswith(":payable") for k in after)


def make_invoice_for(make_invoice: MakeInvoice, merchant: Merchant) -> MakeInvoice:
    def make(price_tiyn: int = 250_000, method: PaymentMethod = PaymentMethod.KZTE) -> Invoice:
        return make_invoice(price_tiyn=price_tiyn, method=method, merchant=merchant)

    return make


def test_only_the_merchants_own_settled_sale_can_be_returned(
    runtime: Runtime, session: Session, shop: Merchant, make_invoice: MakeInvoice
) -> None:
    other = accounts.create_merchant(
        session, runtime.settings, "Other", solana_wallet=demo_solana_wallet("other shop")
    )
    session.commit()
    sale = settled_sale(session, make_invoice, 100_000, PaymentMethod.KZTE)
    with pytest.raises(refunds.RefundError, match="there is no invoice"):
        refunds.create_return(session, runtime.settings, sale.id, merchant_id=other.id)
    session.rollback()
    open_invoice = make_invoice()
    with pytest.raises(refunds.RefundError, match="only a settled sale"):
        refunds.create_return(session, runtime.settings, open_invoice.id, merchant_id=shop.id)
    session.rollback()
    assert session.scalars(select(Refund)).all() == []


def test_a_payout_after_a_return_pays_the_sale_less_the_return(
    runtime: Runtime, session: Session, shop: Merchant, make_invoice: MakeInvoice
) -> None:
    price = 300_000
    invoice = settled_sale(session, make_invoice, price, PaymentMethod.KZTE)
    refunds.create_return(session, runtime.settings, invoice.id, amount_tiyn=50_000)
    session.commit()
    balances(runtime, session)
    today: date = local_date(utcnow())
    made = payouts.run_payouts(session, today, now=utcnow() + timedelta(hours=1))
    session.commit()
    assert [(p.merchant_id, p.amount_tiyn) for p in made] == [
        (shop.id, price - fee(price) - 50_000)
    ]
    assert session.get_one(Refund, 1).status is RefundStatus.CLAIMABLE
