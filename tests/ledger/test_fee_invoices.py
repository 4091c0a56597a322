"""Issue #14: a `direct` merchant's fees accrue on fees_due and are billed monthly; paying the
bill posts Dr zone:bank / Cr fees_due; a `tenge` merchant never gets one."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from flask import Flask
from ledger_support import MakeInvoice, book_all, pay
from sqlalchemy.orm import Session

from pos import business_day
from pos.models import Merchant, Role, SettlementMode
from pos.runtime import Runtime
from settlement.ledger import fee_invoices
from settlement.ledger.balances import balance_map

import factories
from portal_helpers import csrf_from, login

pytestmark = pytest.mark.db


def _next_month_start() -> tuple[str, datetime]:
    today = business_day.today()
    month = today.strftime("%Y-%m")
    _first, following = fee_invoices.parse_month(month)
    return month, business_day.day_start(following) + timedelta(minutes=1)


def test_a_month_of_direct_fees_is_billed_once_and_paid_into_the_bank(
    runtime: Runtime, session: Session, make_invoice: MakeInvoice, shop: Merchant
) -> None:
    direct = factories.merchant(
        session, runtime.settings, "Direct Fees", "direct-fees", mode=SettlementMode.DIRECT
    )
    session.commit()
    for price in (100_000, 250_000):
        invoice = make_invoice(price, merchant=direct)
        pay(session, invoice, invoice.amount_due_atomic)
    tenge = make_invoice(100_000)  # the `shop` fixture is tenge: its fee is netted instead
    pay(session, tenge, tenge.amount_due_atomic)
    book_all(session, runtime.settings)
    assert balance_map(session)[f"merchant:{direct.id}:fees_due"] == (3_500, None)

    month, after = _next_month_start()
    with pytest.raises(fee_invoices.FeeInvoiceError, match="has not ended"):
        fee_invoices.issue_month(session, month)
    [bill] = fee_invoices.issue_month(session, month, now=after)
    session.commit()
    assert (bill.merchant_id, bill.amount_tiyn) == (direct.id, 3_500)
    assert fee_invoices.issue_month(session, month, now=after) == []

    fee_invoices.mark_paid(session, bill.id, "KZ-FEE-1")
    session.commit()
    balances = balance_map(session)
    assert balances[f"merchant:{direct.id}:fees_due"] == (0, None)
    assert balances["zone:bank"] == (3_500, None)
    with pytest.raises(fee_invoices.FeeInvoiceError, match="already paid"):
        fee_invoices.mark_paid(session, bill.id, "again")
    with pytest.raises(fee_invoices.FeeInvoiceError, match="no fee invoice"):
        fee_invoices.mark_paid(session, bill.id, "x", merchant_id=shop.id)  # not theirs
    assert [r.merchant_id for r in fee_invoices.list_fee_invoices(session)] == [direct.id]


def test_a_month_is_a_month(session: Session) -> None:
    assert fee_invoices.parse_month("2026-12")[1].isoformat() == "2027-01-01"
    for bad in ("2026-13", "26-01", "2026/01", ""):
        with pytest.raises(fee_invoices.FeeInvoiceError):
            fee_invoices.parse_month(bad)


def test_fee_invoice_pages_operator_issues_and_marks_paid_owners_see_their_own(
    app: Flask, runtime: Runtime, session: Session, make_invoice: MakeInvoice
) -> None:
    mine = factories.merchant(session, runtime.settings, "Mine", "fees-mine", SettlementMode.DIRECT)
    theirs = factories.merchant(
        session, runtime.settings, "Theirs", "fees-theirs", SettlementMode.DIRECT
    )
    factories.user(session, "owner@mine.test", Role.OWNER, mine.id)
    factories.user(session, "cashier@mine.test", Role.CASHIER, mine.id)
    factories.user(session, "ops@fees.test", Role.OPERATOR)
    session.commit()
    for merchant in (mine, theirs):
        invoice = make_invoice(100_000, merchant=merchant)
        pay(session, invoice, invoice.amount_due_atomic)
    book_all(session, runtime.settings)
    month, after = _next_month_start()
    fee_invoices.issue_month(session, month, now=after)
    session.commit()

    ops = app.test_client()
    login(ops, "ops@fees.test", factories.PASSWORD)
    page = ops.get("/fees/").get_data(as_text=True)
    assert "Mine" in page and "Theirs" in page
    token = csrf_from(ops, "/fees/")
    early = ops.post(
        "/fees/issue", data={"month": business_day.today().strftime("%Y-%m"), "csrf_token": token}
    )
    assert early.status_code == 303
    assert "has not ended" in ops.get("/fees/").get_data(as_text=True)
    [bill] = [r for r in fee_invoices.list_fee_invoices(session) if r.merchant_id == mine.id]
    paid = ops.post(
        f"/fees/{bill.id}/mark-paid",
        data={"bank_reference": "KZ-FEE-9", "csrf_token": token},
        follow_redirects=True,
    )
    assert "marked paid" in paid.get_data(as_text=True)
    session.expire_all()
    assert balance_map(session)[f"merchant:{mine.id}:fees_due"] == (0, None)

    owner = app.test_client()
    login(owner, "owner@mine.test", factories.PASSWORD)
    seen = owner.get("/fees/").get_data(as_text=True)
    assert "Mine" in seen and "Theirs" not in seen and "Issue fee invoices" not in seen
    forged = owner.post(
        f"/fees/{bill.id}/mark-paid",
        data={"bank_reference": "x", "csrf_token": csrf_from(owner, "/fees/")},
    )
    assert forged.status_code == 403
    cashier = app.test_client()
    login(cashier, "cashier@mine.test", factories.PASSWORD)
    assert cashier.get("/fees/").status_code == 403


def test_a_direct_merchants_statement_is_its_fees_due_and_says_so(
    runtime: Runtime, session: Session, make_invoice: MakeInvoice
) -> None:
    from settlement.ledger import reports, statements

    direct = factories.merchant(
        session, runtime.settings, "Direct S", "direct-s", SettlementMode.DIRECT
    )
    session.commit()
    invoice = make_invoice(250_000, merchant=direct)
    pay(session, invoice, invoice.amount_due_atomic)
    book_all(session, runtime.settings)
    day = business_day.today()
    statement = statements.merchant_statement(session, direct.id, reports.DateRange(day, day))
    data = statement.as_dict()
    assert (data["settlement_mode"], data["account"]) == (
        "direct",
        f"merchant:{direct.id}:fees_due",
    )
    assert data["closing_tiyn"] == 2_500 and "fees owed to the zone" in data["meaning"]
    board = reports.zone_dashboard(session, reports.DateRange(day, day))
    [row] = [m for m in board.merchants if m.merchant_id == direct.id]
    assert (row.settlement_mode, row.volume_tiyn, row.fees_tiyn, row.net_tiyn) == (
        "direct",
        250_000,
        2_500,
        0,
    )
