"""The report pages through Flask's test client: roles, tenant isolation, CSV, mark-paid."""

import csv
import io
import re

import pytest
from bank_support import give_bank_details
from flask import Flask
from flask.testing import FlaskClient
from ledger_support import MakeInvoice, book_all, pay
from sqlalchemy import select
from sqlalchemy.orm import Session

from pos import business_day
from pos.models import AuditLog, Merchant, PaymentStatus, Role
from pos.runtime import Runtime
from settlement.ledger import payouts
from settlement.ledger.models import Payout, PayoutStatus

import factories
from portal_helpers import csrf_from, login


@pytest.fixture
def reports_app(app: Flask) -> Flask:
    from merchant_portal import reports

    if "reports" not in app.blueprints:  # until create_app registers it
        app.register_blueprint(reports.bp)
    return app


@pytest.fixture
def web(reports_app: Flask) -> FlaskClient:
    return reports_app.test_client()


@pytest.fixture
def world(runtime: Runtime, session: Session, make_invoice: MakeInvoice) -> dict[str, int]:
    shop = factories.merchant(session, runtime.settings, "Shop A", "a")
    other = factories.merchant(session, runtime.settings, "Shop B", "b")
    shop.payout_hold_hours = other.payout_hold_hours = 0  # paid out at once in these tests
    give_bank_details(session, shop)
    give_bank_details(session, other)
    factories.user(session, "owner@a.test", Role.OWNER, shop.id)
    factories.user(session, "cashier@a.test", Role.CASHIER, shop.id)
    factories.user(session, "owner@b.test", Role.OWNER, other.id)
    factories.user(session, "ops@zone.test", Role.OPERATOR)
    session.commit()
    for merchant, price in ((shop, 100_000), (other, 250_000)):
        invoice = make_invoice(price, merchant=merchant)
        pay(session, invoice, invoice.amount_due_atomic)
    book_all(session, runtime.settings)
    return {"shop": shop.id, "other": other.id}


OPERATOR_PAGES = [
    "/reports/zone",
    "/reports/payouts",
    "/reports/reconcile",
    "/reports/zone/volume.csv",
]


@pytest.mark.parametrize("path", OPERATOR_PAGES)
def test_operator_pages_are_for_operators_only(
    web: FlaskClient, world: dict[str, int], path: str
) -> None:
    assert web.get(path).status_code == 302  # anonymous: to the login page
    login(web, "owner@a.test", factories.PASSWORD)
    assert web.get(path).status_code == 403
    operator = web.application.test_client()
    login(operator, "ops@zone.test", factories.PASSWORD)
    assert operator.get(path).status_code == 200


def test_zone_dashboard_shows_the_numbers_and_a_chart(
    web: FlaskClient, world: dict[str, int]
) -> None:
    login(web, "ops@zone.test", factories.PASSWORD)
    page = web.get("/reports/zone")
    html = page.get_data(as_text=True)
    assert "3,500.00 ₸" in html  # KZTE volume 1 000 + 2 500 KZT
    assert "35.00 ₸" in html  # fees at 1 %
    assert '<rect class="bar bar-kzte"' in html
    assert "style=" not in html and "<script" not in html  # CSP: no inline style or script
    assert "style-src 'self'" in page.headers["Content-Security-Policy"]
    rows = list(
        csv.reader(io.StringIO(web.get("/reports/zone/merchants.csv").get_data(as_text=True)))
    )
    assert rows[0][:4] == ["merchant_id", "name", "settlement_mode", "settlements"]
    assert {(r[1], r[2]) for r in rows[1:]} == {("Shop A", "tenge"), ("Shop B", "tenge")}
    assert web.get("/reports/zone/nope.csv").status_code == 404
    assert web.get("/reports/zone?from=2026-13-01").status_code == 400


def test_owner_sees_only_their_own_statement(web: FlaskClient, world: dict[str, int]) -> None:
    login(web, "owner@a.test", factories.PASSWORD)
    own = web.get("/reports/statement", follow_redirects=True)
    assert own.status_code == 200 and "Shop A" in own.get_data(as_text=True)
    assert "990.00" in own.get_data(as_text=True)  # 1 000 KZT less the 1 % fee
    theirs = f"/reports/merchants/{world['other']}/statement"
    assert web.get(theirs).status_code == 404
    assert web.get(theirs + ".csv").status_code == 404
    body = web.get(f"/reports/merchants/{world['shop']}/statement.csv").get_data(as_text=True)
    rows = list(csv.reader(io.StringIO(body)))
    assert rows[0][0] == "at" and rows[1][2] == "opening" and rows[-1][2] == "closing"
    assert rows[-1][-1] == "99000"


def test_cashier_has_no_statement(web: FlaskClient, world: dict[str, int]) -> None:
    login(web, "cashier@a.test", factories.PASSWORD)
    assert web.get(f"/reports/merchants/{world['shop']}/statement").status_code == 403


def test_operator_sees_any_statement(web: FlaskClient, world: dict[str, int]) -> None:
    login(web, "ops@zone.test", factories.PASSWORD)
    assert "Shop B" in web.get("/reports/statement").get_data(as_text=True)
    page = web.get(f"/reports/merchants/{world['other']}/statement")
    assert page.status_code == 200 and "2,475.00" in page.get_data(as_text=True)
    assert web.get("/reports/merchants/999999/statement").status_code == 404


def test_payouts_run_export_and_mark_paid_with_csrf(
    web: FlaskClient, session: Session, world: dict[str, int]
) -> None:
    login(web, "ops@zone.test", factories.PASSWORD)
    token = csrf_from(web, "/reports/payouts")
    today = re.search(
        r'name="date" value="([0-9-]+)" required',
        web.get("/reports/payouts").get_data(as_text=True),
    )
    assert today is not None
    assert web.post("/reports/payouts/run", data={"date": today.group(1)}).status_code == 400
    response = web.post("/reports/payouts/run", data={"date": today.group(1), "csrf_token": token})
    assert response.status_code == 302
    exported = web.get("/reports/payouts.csv?status=pending").get_data(as_text=True)
    assert {r["amount_tiyn"] for r in csv.DictReader(io.StringIO(exported))} == {"99000", "247500"}

    payout = session.scalars(select(Payout).where(Payout.merchant_id == world["shop"])).one()
    url = f"/reports/payouts/{payout.id}/mark-paid"
    assert web.post(url, data={"bank_reference": "X"}).status_code == 400  # no CSRF token
    response = web.post(url, data={"bank_reference": "KZ-BANK-42", "csrf_token": token})
    assert response.status_code == 303
    session.expire_all()
    assert payout.status is PayoutStatus.PAID and payout.bank_reference == "KZ-BANK-42"
    assert session.scalars(select(AuditLog).where(AuditLog.action == "payout.marked_paid")).one()
    again = web.post(
        url, data={"bank_reference": "again", "csrf_token": token}, follow_redirects=True
    )
    assert "already paid" in again.get_data(as_text=True)
    assert payouts.list_payouts(session, PayoutStatus.PAID)[0].bank_reference == "KZ-BANK-42"


def test_reconciliation_page_and_csv(web: FlaskClient, world: dict[str, int]) -> None:
    login(web, "ops@zone.test", factories.PASSWORD)
    html = web.get("/reports/reconcile").get_data(as_text=True)
    assert "Every final payment is booked, and nothing else is." in html
    assert "Clearing accounts against the zone" in html
    chain = web.get("/reports/reconcile/chain.csv").get_data(as_text=True)
    assert chain.splitlines()[0] == "invoice_id,chain,txid,output_index,amount_atomic,result"
    # The test payments carry made-up signatures: the Solana verifier calls them contradicted.
    assert chain.count("contradicted") == 2


def test_the_statement_says_its_lines_in_the_readers_language(
    web: FlaskClient,
    session: Session,
    runtime: Runtime,
    world: dict[str, int],
    make_invoice: MakeInvoice,
) -> None:
    """A sale, its payout, and a later sale double spent (so reversed): in Russian on the page,
    the stored English kept in the CSV."""
    [payout] = [
        p
        for p in payouts.run_payouts(session, business_day.today())
        if p.merchant_id == world["shop"]
    ]
    payouts.mark_paid(session, payout.id, "KZ-BANK-7")
    session.commit()
    shop = session.get(Merchant, world["shop"])
    spent = make_invoice(200_000, merchant=shop)
    pay(session, spent, spent.amount_due_atomic)
    book_all(session, runtime.settings)
    pay(session, spent, spent.amount_due_atomic, PaymentStatus.REPLACED)  # double spent
    book_all(session, runtime.settings)

    login(web, "owner@a.test", factories.PASSWORD)
    web.get("/lang/ru?next=/")
    path = f"/reports/merchants/{world['shop']}/statement"
    page = web.get(path).get_data(as_text=True)
    rows = page.split("<tbody>")[1].split("</tbody>")[0]
    assert f"счёт {spent.id}: продажа" in rows and f"счёт {spent.id}: сторно продажи" in rows
    assert f"выплата {payout.id} за {payout.business_date.isoformat()}" in rows
    assert "банковский референс KZ-BANK-7" in rows
    for english in ("allocation", "reversed", "receipt", "payout ", "bank ref"):
        assert english not in rows, english
    # The CSV keeps the stored English, for the merchant's own bookkeeping to match on.
    exported = web.get(path + ".csv").get_data(as_text=True)
    described = [r["description"] for r in csv.DictReader(io.StringIO(exported))]
    assert f"invoice {spent.id}: allocation reversed" in described
    assert f"payout {payout.id} for {payout.business_date}, bank ref KZ-BANK-7" in described
