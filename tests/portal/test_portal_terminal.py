"""The terminal: amounts, tips, cart mode, "shopper chooses" offers and the QR screen."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from merchant_portal import choice
from pos import catalog
from pos.models import Invoice, Merchant, MerchantStatus, PaymentStatus
from pos.runtime import Runtime
from settlement.ledger.models import Refund
from settlement.payments import Observation, observe_payment, reevaluate

import factories
from portal_helpers import csrf_from, login


@pytest.fixture
def cashier(as_user: Callable[[str | None], FlaskClient]) -> FlaskClient:
    return as_user("cashier")


def _post(client: FlaskClient, data: dict[str, str]) -> tuple[int, str, str]:
    token = csrf_from(client, "/terminal/")
    response = client.post("/terminal/invoices", data={"csrf_token": token, **data})
    return response.status_code, response.headers.get("Location", ""), response.get_data(True)


def _invoice(runtime: Runtime, location: str) -> Invoice:
    with runtime.session_factory() as session:
        invoice = session.get(Invoice, location.rsplit("/", 1)[1])
        assert invoice is not None
        session.expunge(invoice)
        return invoice


def test_terminal_page_has_a_keypad_that_needs_no_inline_script(cashier: FlaskClient) -> None:
    page = cashier.get("/terminal/").get_data(as_text=True)
    assert 'id="keypad" hidden' in page and 'data-key="00"' in page
    assert "/static/terminal.js" in page
    assert 'name="amount"' in page  # the plain input is the no-JavaScript path
    assert 'value="choose"' in page  # the shopper may pick the currency


def test_tip_is_added_to_the_price(cashier: FlaskClient, runtime: Runtime) -> None:
    sale = {"amount": "2500", "tip": "10", "method": "kzte", "description": "lunch"}
    # Without JavaScript the first press shows the total with the tip; nothing is charged yet.
    status, location, page = _post(cashier, sale)
    assert status == 200 and not location
    assert (
        'id="review-prompt"' in page
        and 'name="shown_total" id="shown-total" value="275000"' in page
    )
    assert "2,500.00 ₸ + tip 10 % 250.00 ₸ = 2,750.00 ₸" in page
    assert 'id="sale-total-rounding" hidden' in page  # 250.00 is exact: no rounding to show
    # A total the cashier was shown for another amount is not this one: review again.
    status, _, page = _post(cashier, {**sale, "amount": "2600", "shown_total": "275000"})
    assert status == 200 and 'value="286000"' in page
    status, location, _ = _post(cashier, {**sale, "shown_total": "275000"})
    assert status == 302
    invoice = _invoice(runtime, location)
    assert invoice.price_tiyn == 275_000
    assert invoice.description == "lunch · tip 10%: 250.00 ₸"


def test_tip_rounding_is_half_up_and_shown(cashier: FlaskClient, runtime: Runtime) -> None:
    # 10 % of 2 345.55 ₸ is 234.555 ₸: half a tiyn, which goes up.
    status, _, page = _post(cashier, {"amount": "2 345,55", "tip": "10", "method": "kzte"})
    assert status == 200 and 'value="258011"' in page
    assert "10 % of 2,345.55 ₸ is 234.555 ₸, rounded half up to 234.56 ₸." in page
    answer = cashier.get("/terminal/quote?amount=2345.55&tip=10")
    assert answer.status_code == 200
    assert answer.json is not None and answer.json["total_tiyn"] == "258011"
    assert answer.json["total"] == "2,580.11"
    assert "rounded half up to 234.56" in answer.json["rounding"]
    cart = cashier.get("/terminal/quote?tiyn=100001&tip=5").json  # the cart's running total
    assert cart is not None and cart["total_tiyn"] == str(100_001 + 5_000)  # 5000.05 -> 5000
    status, location, _ = _post(
        cashier, {"amount": "2 345,55", "tip": "10", "method": "kzte", "shown_total": "258011"}
    )
    assert status == 302 and _invoice(runtime, location).price_tiyn == 258_011


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("amount=2,50&tip=10", "amount"),
        ("amount=1234567890&tip=10", "amount"),
        ("amount=2500&tip=33", "tip"),
        ("amount=2500&tip=²", "tip"),
        ("tiyn=-5&tip=5", "amount"),
    ],
)
def test_quote_refuses_what_a_sale_would(cashier: FlaskClient, query: str, field: str) -> None:
    answer = cashier.get(f"/terminal/quote?{query}")
    assert answer.status_code == 400 and answer.json is not None
    assert answer.json["field"] == field


def test_terminal_accepts_grouped_amounts_and_nine_digits(
    cashier: FlaskClient, runtime: Runtime
) -> None:
    for typed in ("2,500", "2\u00a0500", "2500"):
        status, location, _ = _post(cashier, {"amount": typed, "method": "kzte"})
        assert status == 302 and _invoice(runtime, location).price_tiyn == 250_000
    status, _, page = _post(cashier, {"amount": "1 000 000 000", "method": "kzte"})
    assert status == 400 and 'id="amount-error"' in page and "At most 9 digits" in page
    status, _, page = _post(cashier, {"amount": "2,50", "method": "kzte"})
    assert status == 400 and "ambiguous" in page


def test_unknown_tip_is_a_field_error(cashier: FlaskClient) -> None:
    status, _, page = _post(cashier, {"amount": "2500", "tip": "33", "method": "kzte"})
    assert status == 400 and 'id="tip-error"' in page and "tip buttons" in page


def test_cart_mode_prices_from_the_catalog(
    cashier: FlaskClient, runtime: Runtime, world: dict[str, int]
) -> None:
    with runtime.session_factory.begin() as session:
        coffee = catalog.add_item(session, world["shop"], "Coffee", 90_000).id
        bun = catalog.add_item(session, world["shop"], "Bun", 45_050).id
        foreign = catalog.add_item(session, world["other"], "Tea", 50_000).id
    page = cashier.get("/terminal/cart").get_data(as_text=True)
    assert "Coffee" in page and "Tea" not in page
    status, location, _ = _post(
        cashier, {"mode": "cart", f"qty-{coffee}": "2", f"qty-{bun}": "1", "method": "kzte"}
    )
    assert status == 302
    invoice = _invoice(runtime, location)
    assert invoice.price_tiyn == 225_050
    assert invoice.description == "2 x Coffee, 1 x Bun"
    for data, message in [
        ({f"qty-{coffee}": "0"}, "cart is empty"),
        ({f"qty-{coffee}": "-1"}, "whole numbers"),
        ({f"qty-{coffee}": "1000"}, "quantities go from 0"),
        ({f"qty-{foreign}": "1"}, "no longer sold"),
    ]:
        status, _, page = _post(cashier, {"mode": "cart", "method": "kzte", **data})
        assert status == 400 and 'id="cart-error"' in page and message in page


def test_qr_screen_shows_both_amounts_and_the_live_hooks(
    cashier: FlaskClient, runtime: Runtime
) -> None:
    status, location, _ = _post(cashier, {"amount": "2 500", "method": "kzte"})
    assert status == 302 and re.fullmatch(r"/terminal/invoices/[a-z0-9]{20}", location)
    page = cashier.get(location).get_data(as_text=True)
    assert "2,500.00 ₸" in page
    assert re.search(r"<span id=\"amount-crypto\">2500</span> KZTE", page)
    assert "solana:" in page and 'id="paid-screen"' in page and "hidden" in page
    invoice_id = location.rsplit("/", 1)[1]
    assert f'data-events-url="/i/{invoice_id}/events"' in page
    assert 'http-equiv="refresh"' in page  # the no-JavaScript fallback refreshes the page


def test_recent_and_today_totals(
    cashier: FlaskClient,
    as_user: Callable[[str | None], FlaskClient],
    make_invoice: Callable[..., str],
    world: dict[str, int],
) -> None:
    _, location, _ = _post(cashier, {"amount": "2500", "method": "kzte"})
    mine = location.rsplit("/", 1)[1]
    # Someone else's sale at our shop and another shop's sale count in neither list.
    api_sale = make_invoice(world["shop"])
    theirs = make_invoice(world["other"])
    owners_sale = _post(as_user("owner"), {"amount": "900", "method": "kzte"})[1]
    page = cashier.get("/terminal/").get_data(as_text=True)
    recent = page[page.index('id="recent-sales"') :]
    assert f'href="/terminal/invoices/{mine}"' in recent and f"/i/{mine}/receipt" in recent
    assert "waiting for payment" in recent
    for other in (api_sale, theirs, owners_sale.rsplit("/", 1)[1]):
        assert other[:8] not in recent
    assert "0 paid of 3" in page  # the shop's day: ours, the API's and the owner's
    ru = cashier.get("/terminal/", headers={"Accept-Language": "ru"}).get_data(as_text=True)
    assert "ожидает оплаты" in ru[ru.index('id="recent-sales"') :]


def test_recent_sales_are_todays_only(
    cashier: FlaskClient, runtime: Runtime, world: dict[str, int]
) -> None:
    _, location, _ = _post(cashier, {"amount": "2500", "method": "kzte"})
    with runtime.session_factory.begin() as session:
        invoice = session.get(Invoice, location.rsplit("/", 1)[1])
        assert invoice is not None
        invoice.created_at = invoice.created_at - timedelta(days=1)
    page = cashier.get("/terminal/").get_data(as_text=True)
    assert "No sales of yours today yet." in page


def test_shopper_chooses_flow(
    cashier: FlaskClient,
    as_user: Callable[[str | None], FlaskClient],
    runtime: Runtime,
    world: dict[str, int],
) -> None:
    status, location, _ = _post(
        cashier, {"amount": "3000", "method": "choose", "tip": "5", "shown_total": "315000"}
    )
    assert status == 302 and location.startswith("/terminal/choice?t=")
    token = location.split("t=", 1)[1]
    wait = cashier.get(location).get_data(as_text=True)
    assert "3,150.00 ₸" in wait and f"/c/{token}" in wait
    assert cashier.get(f"/terminal/choice/qr.svg?t={token}").mimetype == "image/svg+xml"
    assert cashier.get(f"/terminal/choice/status.json?t={token}").json == {
        "invoice": None,
        "terminal_url": None,
    }
    # Another merchant's cashier cannot watch this offer.
    assert as_user("other_cashier").get(location).status_code == 404

    shopper = as_user(None)
    page = shopper.get(f"/c/{token}").get_data(as_text=True)
    assert "3,150.00 ₸" in page and 'value="btc"' in page and 'value="kzte"' in page
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
    bad = shopper.post(f"/c/{token}", data={"method": "doge", "csrf_token": csrf})
    assert bad.status_code == 400 and 'id="method-error"' in bad.get_data(as_text=True)
    picked = shopper.post(f"/c/{token}", data={"method": "btc", "csrf_token": csrf})
    assert picked.status_code == 302 and picked.headers["Location"].startswith("/i/")
    invoice_id = picked.headers["Location"].rsplit("/", 1)[1]
    with runtime.session_factory() as session:
        invoice = session.get(Invoice, invoice_id)
        assert invoice is not None
        assert invoice.price_tiyn == 315_000 and invoice.method.value == "btc"
        assert invoice.created_by_user_id == world["cashier"]
    # The offer makes one invoice only; a second pick lands on the same one.
    again = shopper.post(f"/c/{token}", data={"method": "kzte", "csrf_token": csrf})
    assert again.headers["Location"] == f"/i/{invoice_id}"
    assert cashier.get(location).headers["Location"] == f"/terminal/invoices/{invoice_id}"
    assert cashier.get(f"/terminal/choice/status.json?t={token}").json["invoice"] == invoice_id


def test_forged_and_expired_offers_are_refused(
    cashier: FlaskClient,
    as_user: Callable[[str | None], FlaskClient],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _, location, _ = _post(cashier, {"amount": "3000", "method": "choose"})
    token = location.split("t=", 1)[1]
    shopper = as_user(None)
    forged = shopper.get(f"/c/{token[:-3]}abc")
    assert forged.status_code == 400 and "not valid" in forged.get_data(as_text=True)
    monkeypatch.setattr(choice, "MAX_AGE_SECONDS", -1)
    expired = shopper.get(f"/c/{token}")
    assert expired.status_code == 400 and "expired" in expired.get_data(as_text=True)


def test_shopper_chooses_still_checks_the_amount_and_the_merchant(
    cashier: FlaskClient,
    as_user: Callable[[str | None], FlaskClient],
    runtime: Runtime,
    world: dict[str, int],
) -> None:
    for amount, message in [("0", "more than zero"), ("50", "smallest invoice")]:
        status, _, page = _post(cashier, {"amount": amount, "method": "choose"})
        assert status == 400 and 'id="amount-error"' in page and message in page
    owner = as_user("owner")
    with runtime.session_factory.begin() as session:
        merchant = session.get(Merchant, world["shop"])
        assert merchant is not None
        merchant.status = MerchantStatus.SUSPENDED
    status, _, page = _post(owner, {"amount": "3000", "method": "choose"})
    assert status == 400 and "suspended" in page
    # A suspended merchant's cashier is signed out at the next request.
    assert cashier.get("/terminal/").status_code == 302


def test_a_suspended_shops_cashier_is_told_so_at_sign_in(
    app: Flask, runtime: Runtime, world: dict[str, int]
) -> None:
    with runtime.session_factory.begin() as session:
        merchant = session.get(Merchant, world["shop"])
        assert merchant is not None
        merchant.status = MerchantStatus.SUSPENDED
    client = app.test_client()
    token = csrf_from(client, "/login")
    form = {"email": "cashier@a.test", "csrf_token": token}
    right = client.post("/login", data={**form, "password": factories.PASSWORD})
    assert right.status_code == 403 and "This shop is suspended" in right.get_data(as_text=True)
    assert client.get("/terminal/").status_code == 302  # not signed in
    # A wrong password still says only that, so the suspension is no oracle for guessers.
    wrong = client.post("/login", data={**form, "password": "not the password at all"})
    assert wrong.status_code == 401 and "suspended" not in wrong.get_data(as_text=True)
    # The owner may still sign in.
    owner = app.test_client()
    login(owner, "owner@a.test", factories.PASSWORD)
    assert owner.get("/merchant/").status_code == 200


def _pay_final(runtime: Runtime, invoice_id: str, amount_atomic: int, txid: str) -> None:
    """A final KZTE transfer seen by the watcher, through the real payment services."""
    with runtime.session_factory() as session:
        invoice = session.get(Invoice, invoice_id)
        assert invoice is not None
        observe_payment(
            session, invoice, Observation("solana", txid, 0, amount_atomic, PaymentStatus.FINAL)
        )
        reevaluate(session, invoice)
        session.commit()


def test_refund_button_on_an_overpaid_settled_sale_is_the_owners(
    cashier: FlaskClient, as_user: Callable[[str | None], FlaskClient], runtime: Runtime
) -> None:
    owner = as_user("owner")
    _, location, _ = _post(owner, {"amount": "2500", "method": "kzte"})
    owners_sale = location.rsplit("/", 1)[1]
    _, location, _ = _post(cashier, {"amount": "2500", "method": "kzte"})
    cashiers_sale = location.rsplit("/", 1)[1]
    for sale in (owners_sale, cashiers_sale):
        _pay_final(runtime, sale, 3_000_000_000, f"sig-over-{sale}")  # 3000 of 2500 KZTE
    page = owner.get("/terminal/").get_data(as_text=True)
    recent = page[page.index('id="recent-sales"') :]
    assert "Refund 500.00 ₸" in recent and 'action="/refunds/"' in recent
    assert f'name="invoice_id" value="{owners_sale}"' in recent
    screen = owner.get(f"/terminal/invoices/{owners_sale}").get_data(as_text=True)
    assert 'id="refund-form"' in screen and "the extra is owed back" in screen
    # Refunds are the owner's to start (as on the refunds page): a cashier gets no button.
    for path in ("/terminal/", f"/terminal/invoices/{cashiers_sale}"):
        page = cashier.get(path).get_data(as_text=True)
        assert 'action="/refunds/"' not in page
        assert "Owes 500.00 ₸ back: the owner starts the refund." in page
    # The button starts the existing flow: a claim link for the whole extra.
    token = csrf_from(owner, "/terminal/")
    answer = owner.post("/refunds/", data={"csrf_token": token, "invoice_id": owners_sale})
    assert answer.status_code == 303 and answer.headers["Location"] == "/refunds/"
    with runtime.session_factory() as session:
        refund = session.scalar(select(Refund).where(Refund.invoice_id == owners_sale))
        assert refund is not None and refund.amount_atomic == 500_000_000
    # Nothing more is owed back once the claim link covers it: the button goes away.
    assert "Refund 500.00 ₸" not in owner.get("/terminal/").get_data(as_text=True)


def test_an_exactly_paid_sale_owes_nothing_back_and_its_owner_can_return_it(
    cashier: FlaskClient, as_user: Callable[[str | None], FlaskClient], runtime: Runtime
) -> None:
    owner = as_user("owner")
    _, location, _ = _post(owner, {"amount": "2500", "method": "kzte"})
    sale = location.rsplit("/", 1)[1]
    _pay_final(runtime, sale, 2_500_000_000, "sig-exact")
    page = owner.get("/terminal/").get_data(as_text=True)
    assert "paid" in page and 'action="/refunds/"' not in page  # nothing owed back
    # The goods come back: the owner returns the sale (the refund flow, for the sale's value).
    assert 'action="/refunds/return"' in page and "Return sale (2,500.00 ₸)" in page
    screen = owner.get(f"/terminal/invoices/{sale}").get_data(as_text=True)
    assert 'id="return-form"' in screen
    for path in ("/terminal/", f"/terminal/invoices/{sale}"):
        assert "/refunds/return" not in cashier.get(path).get_data(as_text=True)
    assert cashier.post("/refunds/return", data={"invoice_id": sale}).status_code in (400, 403)
    token = csrf_from(owner, "/terminal/")
    too_much = owner.post(
        "/refunds/return", data={"csrf_token": token, "invoice_id": sale, "amount": "2 500.01"}
    )
    assert too_much.status_code == 303
    flashed = owner.get("/refunds/").get_data(as_text=True)
    assert "of this sale can be returned" in flashed
    part = owner.post(
        "/refunds/return", data={"csrf_token": token, "invoice_id": sale, "amount": "1 000"}
    )
    assert part.status_code == 303 and part.headers["Location"] == "/refunds/"
    listing = owner.get("/refunds/").get_data(as_text=True)
    assert "Sale returned: refund #" in listing and "sale returned" in listing
    with runtime.session_factory() as session:
        refund = session.scalar(select(Refund).where(Refund.invoice_id == sale))
        assert refund is not None
        assert (refund.kind.value, refund.amount_tiyn) == ("sale_return", 100_000)
        assert refund.amount_atomic == 1_000_000_000
    # What is left of the sale is what the button offers now.
    assert "Return sale (1,500.00 ₸)" in owner.get("/terminal/").get_data(as_text=True)
