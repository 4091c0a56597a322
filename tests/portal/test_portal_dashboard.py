"""The owner's dashboard: sales, fees and net per Almaty period, pending payout, refunds due,
the chart and its table, sales per cashier and per product, CSV; one merchant's numbers only.

Sales are made at the terminal (cart and keypad) through the Flask client, paid through the
real payment service and booked by the real ledger booking, on the test database and Redis.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable
from datetime import UTC, date, datetime

import pytest
from csv_support import runnable_cells
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

import settlement.ledger.models  # noqa: F401 - the ledger tables, for the per-test cleanup
from pos import catalog
from pos.invoice_lines import InvoiceLine
from pos.models import Invoice, LedgerQueue, Merchant, PaymentStatus, SettlementMode
from pos.runtime import Runtime
from pos.settings import Settings
from settlement.ledger import merchant_dashboard
from settlement.ledger.booking import book_invoice
from settlement.ledger.posting import fee_tiyn
from settlement.payments import Observation, observe_payment, reevaluate

from portal_helpers import csrf_from

COFFEE, CAKE = 90_000, 150_000  # 900 ₸ and 1 500 ₸


def _fee(price: int, runtime: Runtime) -> int:
    return fee_tiyn(price, runtime.settings.default_fee_bp)


def _sell(client: FlaskClient, data: dict[str, str]) -> str:
    token = csrf_from(client, "/terminal/")
    response = client.post(
        "/terminal/invoices", data={"csrf_token": token, "method": "kzte", **data}
    )
    assert response.status_code == 302, response.get_data(as_text=True)
    return response.headers["Location"].rsplit("/", 1)[1]


def _pay(runtime: Runtime, invoice_id: str, extra_atomic: int = 0) -> None:
    """The KZTE watcher's observation of a final payment, applied and committed."""
    with runtime.session_factory() as session:
        invoice = session.get(Invoice, invoice_id)
        assert invoice is not None
        amount = invoice.amount_due_atomic + extra_atomic
        seen = Observation("solana", f"sig-{invoice_id}", 0, amount, PaymentStatus.FINAL)
        observe_payment(session, invoice, seen)
        reevaluate(session, invoice)
        session.commit()


def book_all(session: Session, settings: Settings) -> None:
    """What the worker's ledger duty does: book every queued invoice, then commit."""
    for queued in session.scalars(select(LedgerQueue)).all():
        invoice = session.get(Invoice, queued.invoice_id)
        if invoice is not None:
            book_invoice(session, settings, invoice)
        session.delete(queued)
    session.commit()


@pytest.fixture
def products(runtime: Runtime, world: dict[str, int]) -> dict[str, int]:
    with runtime.session_factory.begin() as session:
        coffee = catalog.add_item(session, world["shop"], "Coffee", COFFEE)
        cake = catalog.add_item(session, world["shop"], "=Cake", CAKE)  # a hostile name
        theirs = catalog.add_item(session, world["other"], "Their tea", 55_500)
        return {"coffee": coffee.id, "cake": cake.id, "theirs": theirs.id}


@pytest.fixture
def sales(
    runtime: Runtime,
    world: dict[str, int],
    products: dict[str, int],
    as_user: Callable[[str | None], FlaskClient],
) -> dict[str, str]:
    """Shop A: a cart sale by the cashier (2 coffees, 1 cake), a keypad sale by the owner;
    shop B: a cart sale of its own. All paid in full and booked."""
    cart = _sell(
        as_user("cashier"),
        {"mode": "cart", f"qty-{products['coffee']}": "2", f"qty-{products['cake']}": "1"},
    )
    keypad = _sell(as_user("owner"), {"amount": "1000"})
    theirs = _sell(as_user("other_cashier"), {"mode": "cart", f"qty-{products['theirs']}": "3"})
    for invoice_id in (cart, keypad, theirs):
        _pay(runtime, invoice_id)
    with runtime.session_factory() as session:
        book_all(session, runtime.settings)
    return {"cart": cart, "keypad": keypad, "theirs": theirs}


def _csv(client: FlaskClient, path: str) -> list[dict[str, str]]:
    response = client.get(path)
    assert response.status_code == 200 and response.mimetype == "text/csv"
    assert response.headers["Cache-Control"] == "no-store"
    text = response.get_data(as_text=True)
    assert runnable_cells(text) == []
    return list(csv.DictReader(io.StringIO(text)))


def test_the_cart_lines_are_stored_with_the_invoice(
    runtime: Runtime, sales: dict[str, str]
) -> None:
    with runtime.session_factory() as session:
        lines = session.scalars(
            select(InvoiceLine).where(InvoiceLine.invoice_id == sales["cart"])
        ).all()
        assert sorted((ln.name, ln.quantity, ln.unit_price_tiyn) for ln in lines) == [
            ("=Cake", 1, CAKE),
            ("Coffee", 2, COFFEE),
        ]
        assert not session.scalars(
            select(InvoiceLine).where(InvoiceLine.invoice_id == sales["keypad"])
        ).all()


def test_the_dashboard_shows_today_week_and_month(
    as_user: Callable[[str | None], FlaskClient], runtime: Runtime, sales: dict[str, str]
) -> None:
    sold = 2 * COFFEE + CAKE + 100_000
    fees = _fee(2 * COFFEE + CAKE, runtime) + _fee(100_000, runtime)
    page = as_user("owner").get("/merchant/").get_data(as_text=True)
    for period in ("today", "week", "month"):
        row = page.split(f'id="total-{period}"')[1].split("</tr>")[0]
        cells = re.findall(r'<td class="num">([^<]*)</td>', row)
        assert cells == ["2", "4,300.00", _kzt(fees), "0.00", _kzt(sold - fees)]
    pending = page.split('id="pending-payout"')[1].split("</div>")[0]
    assert _kzt(sold - fees) + " ₸" in pending  # nothing paid out yet
    refunds = page.split('id="refunds-due"')[1].split("</div>")[0]
    assert "0.00 ₸" in refunds
    # Per cashier and per product (this month by default).
    cashiers = page.split('id="cashier-table"')[1].split("</table>")[0]
    assert "cashier@a.test" in cashiers and "owner@a.test" in cashiers
    assert "3,300.00" in cashiers and "1,000.00" in cashiers
    products = page.split('id="product-table"')[1].split("</table>")[0]
    assert re.search(r"Coffee</td><td class=\"num\">2</td><td class=\"num\">1,800.00", products)
    assert "=Cake" in products
    # Another shop's sales and names never show.
    assert "Their tea" not in page and "cashier@b.test" not in page and "1,665.00" not in page


def _kzt(tiyn: int) -> str:
    """Tenge as the English page shows them: 430000 -> '4,300.00'."""
    whole, frac = divmod(abs(tiyn), 100)
    return f"{'-' if tiyn < 0 else ''}{whole:,}.{frac:02d}"


def test_the_chart_is_inline_svg_with_a_title_a_description_and_a_table(
    as_user: Callable[[str | None], FlaskClient], sales: dict[str, str]
) -> None:
    page = as_user("owner").get("/merchant/").get_data(as_text=True)
    svg = page.split('<svg class="chart"')[1].split("</svg>")[0]
    assert 'role="img"' in svg and 'aria-labelledby="chart-svg-title chart-svg-desc"' in svg
    assert '<title id="chart-svg-title">' in svg and '<desc id="chart-svg-desc">' in svg
    assert 'class="bar bar-kzte"' in svg  # today's KZTE sales draw a bar
    assert "<script" not in page.split('id="sales-chart"')[1].split("</section>")[0]
    table = page.split('id="chart-table"')[1].split("</table>")[0]
    assert "4,300.00" in table  # today's row carries the day's total


def test_the_csv_exports_carry_exact_tenge_and_only_our_merchant(
    as_user: Callable[[str | None], FlaskClient], runtime: Runtime, sales: dict[str, str]
) -> None:
    owner = as_user("owner")
    summary = {r["period"]: r for r in _csv(owner, "/merchant/dashboard/summary.csv")}
    assert set(summary) == {"today", "week", "month"}
    assert summary["today"]["sales_tiyn"] == "430000"
    assert summary["today"]["sales_kzt"] == "4300.00"
    fees = _fee(2 * COFFEE + CAKE, runtime) + _fee(100_000, runtime)
    assert summary["month"]["fees_tiyn"] == str(fees)
    assert summary["month"]["returned_tiyn"] == "0"
    assert summary["month"]["net_kzt"] == _kzt(430_000 - fees).replace(",", "")
    cashiers = _csv(owner, "/merchant/dashboard/cashiers.csv?period=today")
    assert {r["cashier"]: r["sales_kzt"] for r in cashiers} == {
        "cashier@a.test": "3300.00",
        "owner@a.test": "1000.00",
    }
    products = _csv(owner, "/merchant/dashboard/products.csv")
    assert {r["product"]: (r["quantity"], r["amount_kzt"]) for r in products} == {
        "Coffee": ("2", "1800.00"),
        "'=Cake": ("1", "1500.00"),  # neutralised: a spreadsheet keeps it as text
    }
    days = _csv(owner, "/merchant/dashboard/days.csv")
    assert sum(int(r["total_tiyn"]) for r in days) == 430_000
    # Shop B's owner sees shop B's numbers, never shop A's.
    other = as_user("other_owner")
    [theirs] = _csv(other, "/merchant/dashboard/products.csv")
    assert theirs["product"] == "Their tea" and theirs["quantity"] == "3"
    their_summary = {r["period"]: r for r in _csv(other, "/merchant/dashboard/summary.csv")}
    assert their_summary["today"]["sales_tiyn"] == "166500"
    their_cashiers = _csv(other, "/merchant/dashboard/cashiers.csv")
    assert [r["cashier"] for r in their_cashiers] == ["cashier@b.test"]
    assert owner.get("/merchant/dashboard/nope.csv").status_code == 404


def test_a_shopper_choice_sale_keeps_its_cart_lines(
    as_user: Callable[[str | None], FlaskClient],
    runtime: Runtime,
    products: dict[str, int],
) -> None:
    cashier = as_user("cashier")
    token = csrf_from(cashier, "/terminal/")
    response = cashier.post(
        "/terminal/invoices",
        data={
            "csrf_token": token,
            "method": "choose",
            "mode": "cart",
            f"qty-{products['coffee']}": "3",
        },
    )
    assert response.status_code == 302
    offer_token = response.headers["Location"].split("t=", 1)[1]
    shopper = as_user(None)  # the shopper's phone opens the signed offer
    pick_token = csrf_from(shopper, f"/c/{offer_token}")
    picked = shopper.post(f"/c/{offer_token}", data={"csrf_token": pick_token, "method": "kzte"})
    assert picked.status_code == 302
    invoice_id = picked.headers["Location"].rsplit("/", 1)[1]
    with runtime.session_factory() as session:
        lines = session.scalars(select(InvoiceLine).where(InvoiceLine.invoice_id == invoice_id))
        assert [(ln.name, ln.quantity, ln.unit_price_tiyn) for ln in lines] == [
            ("Coffee", 3, COFFEE)
        ]


def test_refunds_due_shows_what_an_overpayment_left(
    as_user: Callable[[str | None], FlaskClient], runtime: Runtime, world: dict[str, int]
) -> None:
    owner = as_user("owner")
    invoice_id = _sell(owner, {"amount": "1000"})
    _pay(runtime, invoice_id, extra_atomic=2_500_000)  # 2.5 KZTE too much: 2.50 ₸ owed back
    with runtime.session_factory() as session:
        book_all(session, runtime.settings)
    page = owner.get("/merchant/").get_data(as_text=True)
    assert "2.50 ₸" in page.split('id="refunds-due"')[1].split("</div>")[0]
    other = as_user("other_owner").get("/merchant/").get_data(as_text=True)
    assert "0.00 ₸" in other.split('id="refunds-due"')[1].split("</div>")[0]


def test_periods_are_almaty_days_and_the_week_starts_on_monday() -> None:
    wednesday = date(2026, 3, 4)
    ranges = merchant_dashboard.periods(wednesday)
    assert (ranges["today"].start, ranges["today"].end) == (wednesday, wednesday)
    assert ranges["week"].start == date(2026, 3, 2)  # Monday
    assert ranges["month"].start == date(2026, 3, 1)
    monday = merchant_dashboard.periods(date(2026, 3, 2))
    assert monday["week"].start == date(2026, 3, 2)
    # 19:00 UTC is local midnight.
    assert ranges["today"].start_at == datetime(2026, 3, 3, 19, 0, tzinfo=UTC)


def test_sales_fall_on_the_almaty_day_they_were_booked(
    as_user: Callable[[str | None], FlaskClient], runtime: Runtime, world: dict[str, int]
) -> None:
    """Booked at chosen moments; the dashboard asked as of Wednesday 4 March 2026."""
    owner = as_user("owner")
    moments = {
        "today": datetime(2026, 3, 3, 19, 30, tzinfo=UTC),  # 4 March 00:30 in Almaty
        "yesterday": datetime(2026, 3, 3, 18, 30, tzinfo=UTC),  # 3 March 23:30
        "sunday": datetime(2026, 3, 1, 18, 30, tzinfo=UTC),  # 1 March 23:30, last week
        "last_month": datetime(2026, 2, 28, 18, 30, tzinfo=UTC),  # 28 February 23:30
    }
    prices = {"today": 10_000, "yesterday": 20_000, "sunday": 40_000, "last_month": 80_000}
    for name, at in moments.items():
        invoice_id = _sell(owner, {"amount": str(prices[name] // 100)})
        _pay(runtime, invoice_id)
        with runtime.session_factory() as session:
            invoice = session.get(Invoice, invoice_id)
            assert invoice is not None
            book_invoice(session, runtime.settings, invoice, now=at)
            queued = session.get(LedgerQueue, invoice_id)
            if queued is not None:
                session.delete(queued)
            session.commit()
    with runtime.session_factory() as session:
        board = merchant_dashboard.dashboard(
            session, world["shop"], SettlementMode.TENGE, date(2026, 3, 4)
        )
        other = merchant_dashboard.dashboard(
            session, world["other"], SettlementMode.TENGE, date(2026, 3, 4)
        )
    assert board.totals["today"].sales_tiyn == 10_000
    assert board.totals["week"].sales_tiyn == 30_000
    assert board.totals["month"].sales_tiyn == 70_000
    assert board.totals["month"].count == 3
    assert dict(board.by_day)[date(2026, 3, 1)]["kzte"] == 40_000
    assert other.totals["month"].sales_tiyn == 0


def test_a_direct_merchant_sees_fees_due_instead_of_a_payout(
    as_user: Callable[[str | None], FlaskClient], runtime: Runtime, world: dict[str, int]
) -> None:
    with runtime.session_factory.begin() as session:
        merchant = session.get(Merchant, world["shop"])
        assert merchant is not None
        merchant.settlement_mode = SettlementMode.DIRECT
    owner = as_user("owner")
    invoice_id = _sell(owner, {"amount": "2000"})
    _pay(runtime, invoice_id)
    with runtime.session_factory() as session:
        book_all(session, runtime.settings)
    page = owner.get("/merchant/").get_data(as_text=True)
    fee = _fee(200_000, runtime)
    assert 'id="pending-payout"' not in page
    assert _kzt(fee) + " ₸" in page.split('id="fees-due"')[1].split("</div>")[0]
    row = page.split('id="total-today"')[1].split("</tr>")[0]
    assert re.findall(r'<td class="num">([^<]*)</td>', row) == [
        "1",
        "2,000.00",
        _kzt(fee),
        "0.00",
        _kzt(200_000 - fee),
    ]


def test_the_favicon_is_linked_and_served(client: FlaskClient) -> None:
    page = client.get("/login").get_data(as_text=True)
    assert '<link rel="icon" type="image/svg+xml" href="/static/favicon.svg">' in page
    with client.get("/static/favicon.svg") as icon:  # a file response: closed after reading
        assert icon.status_code == 200 and icon.mimetype == "image/svg+xml"
        assert b"<svg" in icon.get_data()
