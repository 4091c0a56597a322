"""The terminal: amounts, tips, cart mode, "shopper chooses" offers and the QR screen."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from flask import Flask
from flask.testing import FlaskClient

from merchant_portal import choice
from pos import catalog
from pos.models import Invoice, Merchant, MerchantStatus
from pos.runtime import Runtime

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
    status, location, _ = _post(
        cashier, {"amount": "2500", "tip": "10", "method": "kzte", "description": "lunch"}
    )
    assert status == 302
    invoice = _invoice(runtime, location)
    assert invoice.price_tiyn == 275_000
    assert invoice.description == "lunch · tip 10%: 250.00 ₸"


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
    cashier: FlaskClient, make_invoice: Callable[..., str], world: dict[str, int]
) -> None:
    invoice_id = make_invoice(world["shop"])
    theirs = make_invoice(world["other"])
    page = cashier.get("/terminal/").get_data(as_text=True)
    assert invoice_id[:8] in page and theirs[:8] not in page
    assert "0 paid of 1" in page


def test_shopper_chooses_flow(
    cashier: FlaskClient,
    as_user: Callable[[str | None], FlaskClient],
    runtime: Runtime,
    world: dict[str, int],
) -> None:
    status, location, _ = _post(cashier, {"amount": "3000", "method": "choose", "tip": "5"})
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
