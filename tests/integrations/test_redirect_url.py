"""`redirect_url` leads only to the merchant's shop domains (issue #19 item 15): refused at
creation through the API (422), set on the Integrations page, and shown on the checkout as
"Return to the shop" once paid, only while the domain is still the merchant's."""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from pos import invoices
from pos.models import AuditLog, Merchant
from pos.runtime import Runtime
from pos.shop_domains import parse_domains, redirect_problem
from pos.states import InvoiceStatus

import factories
from portal_helpers import csrf_from, login

KZTE = {"price_tiyn": 150_000, "method": "kzte"}


def _owner(client: FlaskClient) -> FlaskClient:
    login(client, "owner@a.test", factories.PASSWORD)
    return client


def _save_domains(client: FlaskClient, text: str) -> tuple[int, str]:
    token = csrf_from(client, "/merchant/integrations/")
    response = client.post(
        "/merchant/integrations/domains", data={"csrf_token": token, "shop_domains": text}
    )
    return response.status_code, response.get_data(as_text=True)


def _create(client: FlaskClient, auth: dict[str, str], url: str) -> Any:
    return client.post("/api/v1/invoices", json={**KZTE, "redirect_url": url}, headers=auth)


def test_without_domains_no_redirect_url_is_accepted(
    client: FlaskClient, auth: dict[str, str]
) -> None:
    response = _create(client, auth, "https://shop.example.kz/thanks")
    assert response.status_code == 422
    error = response.get_json()["error"]
    assert error["code"] == "redirect_url_not_allowed" and error["field"] == "redirect_url"
    assert "no shop domain" in error["message"]
    # Without a redirect_url nothing changes.
    assert client.post("/api/v1/invoices", json=KZTE, headers=auth).status_code == 201


@pytest.mark.parametrize(
    ("url", "status"),
    [
        ("https://evil.example/phish", 422),
        ("https://shop.example.kz.evil.example/", 422),
        ("https://evilshop.example.kz/", 422),
        ("http://shop.example.kz/thanks", 422),
        ("https://shop.example.kz@evil.example/", 422),
        ("https://user:pw@shop.example.kz/", 422),
        ("https://shop.example.kz:8443/", 422),
        ("https://evil.example\\@shop.example.kz/", 422),
        ("javascript:alert(1)//shop.example.kz", 400),
        ("https://shop.example.kz/thanks?order=1", 201),
        ("https://pay.shop.example.kz/done", 201),
        ("https://SHOP.example.kz./x", 201),
    ],
)
def test_redirect_url_must_be_https_on_a_shop_domain(
    client: FlaskClient, auth: dict[str, str], url: str, status: int
) -> None:
    owner = _owner(client.application.test_client())
    assert _save_domains(owner, "shop.example.kz")[0] == 302
    response = _create(client, auth, url)
    assert response.status_code == status, response.get_json()


def test_the_owner_sets_domains_with_clear_errors(
    client: FlaskClient, runtime: Runtime, world: dict[str, int]
) -> None:
    owner = _owner(client)
    for bad in ("https://shop.kz/path", "localhost", "10.0.0.1", "shop..kz"):
        status, page = _save_domains(owner, bad)
        assert status == 400 and 'id="shop_domains-error"' in page, bad
    status, _page = _save_domains(owner, "Shop.Example.kz\nshop.example.kz, pay.kz")
    assert status == 302
    with runtime.session_factory() as session:
        merchant = session.get(Merchant, world["shop"])
        assert merchant is not None and merchant.shop_domains == "shop.example.kz\npay.kz"
        actions = session.scalars(select(AuditLog.action)).all()
        assert "merchant.shop_domains_set" in actions
    assert "shop.example.kz" in owner.get("/merchant/integrations/").get_data(as_text=True)
    # A cashier may not change them.
    cashier = client.application.test_client()
    login(cashier, "cashier@a.test", factories.PASSWORD)
    token = csrf_from(cashier, "/terminal/")
    refused = cashier.post(
        "/merchant/integrations/domains", data={"csrf_token": token, "shop_domains": "evil.kz"}
    )
    assert refused.status_code == 403


def test_checkout_offers_the_return_link_once_paid_and_while_allowed(
    client: FlaskClient, auth: dict[str, str], runtime: Runtime
) -> None:
    owner = _owner(client.application.test_client())
    assert _save_domains(owner, "shop.example.kz")[0] == 302
    created = _create(client, auth, "https://shop.example.kz/thanks?o=1&x=<b>")
    assert created.status_code == 201
    invoice_id = created.get_json()["id"]
    page = client.get(f"/i/{invoice_id}").get_data(as_text=True)
    # Rendered inside the paid block, which stays hidden (and checkout.js keeps it so) until
    # the invoice is paid.
    assert 'id="paid-block" class="paid-block" hidden' in page
    with runtime.session_factory() as session:
        invoice = invoices.get_invoice(session, invoice_id)
        invoices.change_status(session, invoice, InvoiceStatus.PROCESSING)
        session.commit()
    page = client.get(f"/i/{invoice_id}").get_data(as_text=True)
    assert 'class="paid-block" hidden' not in page
    assert 'id="return-link" href="https://shop.example.kz/thanks?o=1&amp;x=&lt;b&gt;"' in page
    assert "Return to the shop" in page
    # The owner drops the domain: the link goes at once, though the invoice still holds it.
    assert _save_domains(owner, "other.example.kz")[0] == 302
    assert 'id="return-link"' not in client.get(f"/i/{invoice_id}").get_data(as_text=True)


def test_redirect_problem_unit() -> None:
    domains = parse_domains("shop.kz")
    assert redirect_problem("https://a.shop.kz/", domains) is None
    assert redirect_problem("https://ashop.kz/", domains) is not None
    assert redirect_problem("https://shop.kz\t.evil/", domains) is not None
    assert redirect_problem("//shop.kz/", domains) is not None
