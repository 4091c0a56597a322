"""Invoices with lines through /api/v1: stored as the terminal's cart stores them, priced by
their total, the merchant's own products only, and counted in the owner's sales per product."""

from __future__ import annotations

import re
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select

from pos import catalog
from pos.invoice_lines import InvoiceLine
from pos.models import Invoice, PaymentStatus
from pos.runtime import Runtime
from settlement.payments import Observation, observe_payment, reevaluate

from factories import PASSWORD
from portal_helpers import login

TEA, CAKE = 60_000, 150_000  # 600 ₸ and 1 500 ₸


@pytest.fixture
def products(runtime: Runtime, world: dict[str, int]) -> dict[str, int]:
    with runtime.session_factory.begin() as session:
        tea = catalog.add_item(session, world["shop"], "Green tea", TEA)
        cake = catalog.add_item(session, world["shop"], "Cake", CAKE)
        gone = catalog.add_item(session, world["shop"], "Old bun", 30_000)
        gone.active = False
        theirs = catalog.add_item(session, world["other"], "Their secret", 55_500)
        return {"tea": tea.id, "cake": cake.id, "gone": gone.id, "theirs": theirs.id}


def _post(client: FlaskClient, auth: dict[str, str], body: dict[str, Any]) -> Any:
    return client.post("/api/v1/invoices", json={"method": "kzte", **body}, headers=auth)


def _error(response: Any) -> dict[str, Any]:
    assert response.status_code == 400, response.get_data(as_text=True)
    error: dict[str, Any] = response.get_json()["error"]
    return error


def _invoices(runtime: Runtime) -> int:
    with runtime.session_factory() as session:
        return session.scalar(select(func.count()).select_from(Invoice)) or 0


def test_lines_are_stored_and_the_price_is_their_total(
    client: FlaskClient, auth: dict[str, str], runtime: Runtime, products: dict[str, int]
) -> None:
    lines = [
        {"product_id": products["tea"], "quantity": 2},
        {"name": "Gift wrap", "unit_price_tiyn": 20_000, "quantity": 1},
    ]
    response = _post(client, auth, {"lines": lines})
    assert response.status_code == 201, response.get_json()
    created = response.get_json()
    assert created["price_tiyn"] == 2 * TEA + 20_000
    assert created["description"] == "2 x Green tea, 1 x Gift wrap"  # as the cart writes it
    assert created["lines"] == [
        {
            "product_id": products["tea"],
            "name": "Green tea",
            "quantity": 2,
            "unit_price_tiyn": TEA,
            "total_tiyn": 2 * TEA,
        },
        {
            "product_id": None,
            "name": "Gift wrap",
            "quantity": 1,
            "unit_price_tiyn": 20_000,
            "total_tiyn": 20_000,
        },
    ]
    with runtime.session_factory() as session:
        stored = session.scalars(
            select(InvoiceLine).where(InvoiceLine.invoice_id == created["id"])
        ).all()
        assert sorted((ln.catalog_item_id or 0, ln.name, ln.quantity) for ln in stored) == [
            (0, "Gift wrap", 1),
            (products["tea"], "Green tea", 2),
        ]
    got = client.get(f"/api/v1/invoices/{created['id']}", headers=auth).get_json()
    assert got["lines"] == created["lines"]
    page = client.get("/api/v1/invoices", headers=auth).get_json()["data"]
    assert [i["lines"] for i in page] == [created["lines"]]

    # A price given as well must be the total; without lines nothing changes.
    same = _post(
        client,
        auth,
        {"price_tiyn": CAKE, "lines": [{"product_id": products["cake"], "quantity": 1}]},
    )
    assert same.status_code == 201 and same.get_json()["price_tiyn"] == CAKE
    plain = _post(client, auth, {"price_tiyn": 150_000})
    assert plain.status_code == 201 and plain.get_json()["lines"] == []


def test_a_price_that_is_not_the_lines_total_is_refused(
    client: FlaskClient, auth: dict[str, str], runtime: Runtime, products: dict[str, int]
) -> None:
    body = {"price_tiyn": CAKE + 1, "lines": [{"product_id": products["cake"], "quantity": 1}]}
    error = _error(_post(client, auth, body))
    assert error["code"] == "validation_error" and error["field"] == "price_tiyn"
    assert "1\u202f500.01 ₸" in error["message"] and "1\u202f500.00 ₸" in error["message"]
    assert _invoices(runtime) == 0


def test_only_the_merchants_own_products_for_sale(
    client: FlaskClient, auth: dict[str, str], runtime: Runtime, products: dict[str, int]
) -> None:
    unknown = max(products.values()) + 1000
    answers = {}
    for name, product_id in [
        ("theirs", products["theirs"]),
        ("gone", products["gone"]),
        ("unknown", unknown),
    ]:
        wanted = [{"product_id": products["cake"], "quantity": 1}]
        wanted.append({"product_id": product_id, "quantity": 1})
        error = _error(_post(client, auth, {"lines": wanted}))
        assert error["field"] == "lines[1].product_id"
        answers[name] = (error["code"], error["message"].replace(str(product_id), "N"))
    # Another shop's product answers exactly as an id that does not exist: nothing leaks.
    assert answers["theirs"] == answers["unknown"] == answers["gone"]
    assert "Their secret" not in str(answers) and "55" not in answers["theirs"][1]
    assert _invoices(runtime) == 0


@pytest.mark.parametrize(
    ("lines", "code", "field"),
    [
        ([], "invalid_value", "lines"),
        ("tea", "invalid_type", "lines"),
        ([1], "invalid_type", "lines[0]"),
        ([{"product_id": 1}], "missing_field", "lines[0].quantity"),
        ([{"product_id": 1, "quantity": 0}], "invalid_value", "lines[0].quantity"),
        ([{"product_id": 1, "quantity": 1000}], "invalid_value", "lines[0].quantity"),
        ([{"product_id": 1, "quantity": True}], "invalid_type", "lines[0].quantity"),
        ([{"product_id": "1", "quantity": 1}], "invalid_type", "lines[0].product_id"),
        ([{"product_id": 2**64, "quantity": 1}], "invalid_value", "lines[0].product_id"),
        ([{"quantity": 1}], "missing_field", "lines[0].product_id"),
        ([{"name": "Wrap", "quantity": 1}], "missing_field", "lines[0].unit_price_tiyn"),
        ([{"unit_price_tiyn": 5, "quantity": 1}], "missing_field", "lines[0].name"),
        (
            [{"product_id": 1, "name": "Wrap", "quantity": 1}],
            "invalid_value",
            "lines[0].name",
        ),
        ([{"name": "", "unit_price_tiyn": 5, "quantity": 1}], "invalid_value", "lines[0].name"),
        (
            [{"name": "   ", "unit_price_tiyn": 20_000, "quantity": 1}],
            "validation_error",
            "lines[0]",
        ),
        (
            [{"name": "Wrap", "unit_price_tiyn": 0, "quantity": 1}],
            "invalid_value",
            "lines[0].unit_price_tiyn",
        ),
        ([{"product_id": 1, "quantity": 1, "tip": 5}], "unknown_field", "lines[0].tip"),
        (
            [{"name": "Wrap", "unit_price_tiyn": 5, "quantity": 1}],
            "validation_error",
            "amount",  # 0.05 ₸: below the smallest invoice, as a price would be
        ),
        (None, "missing_field", "price_tiyn"),  # neither a price nor lines
    ],
)
def test_malformed_lines_are_400_with_the_field(
    client: FlaskClient,
    auth: dict[str, str],
    runtime: Runtime,
    lines: Any,
    code: str,
    field: str,
) -> None:
    error = _error(_post(client, auth, {} if lines is None else {"lines": lines}))
    assert (error["code"], error.get("field")) == (code, field), error
    assert _invoices(runtime) == 0


def test_an_api_sale_shows_in_the_owners_sales_per_product(
    client: FlaskClient, auth: dict[str, str], runtime: Runtime, products: dict[str, int]
) -> None:
    lines = [{"product_id": products["cake"], "quantity": 3}]
    created = _post(client, auth, {"lines": lines}).get_json()
    with runtime.session_factory() as session:  # the KZTE watcher sees it paid in full
        invoice = session.get(Invoice, created["id"])
        assert invoice is not None
        seen = Observation(
            "solana", f"sig-{invoice.id}", 0, invoice.amount_due_atomic, PaymentStatus.FINAL
        )
        observe_payment(session, invoice, seen)
        reevaluate(session, invoice)
        session.commit()
    login(client, "owner@a.test", PASSWORD)
    page = client.get("/merchant/").get_data(as_text=True)
    table = page.split('id="product-table"')[1].split("</table>")[0]
    assert re.search(r"Cake</td><td class=\"num\">3</td><td class=\"num\">4,500.00", table)
