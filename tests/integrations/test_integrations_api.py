"""The /api/v1 JSON API through Flask's test client: invoices, errors, keys, scopes, limits."""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select, update

from pos.integrations import ApiKey, IdempotencyKey
from pos.models import AuditLog, Invoice, InvoiceEvent, Merchant
from pos.runtime import Runtime

KZTE = {"price_tiyn": 150_000, "method": "kzte", "order_id": "A-1", "description": "Coffee"}


def _create(client: FlaskClient, auth: dict[str, str], **body: Any) -> dict[str, Any]:
    response = client.post("/api/v1/invoices", json={**KZTE, **body}, headers=auth)
    assert response.status_code == 201, response.get_json()
    assert response.headers["Location"] == f"/api/v1/invoices/{response.get_json()['id']}"
    data: dict[str, Any] = response.get_json()
    return data


def _error(response: Any, status: int) -> str:
    assert response.status_code == status, response.get_data(as_text=True)
    body = response.get_json()
    assert set(body) == {"error"} and body["error"]["message"]
    code: str = body["error"]["code"]
    return code


def test_create_get_and_mark(
    client: FlaskClient, auth: dict[str, str], runtime: Runtime, world: dict[str, int]
) -> None:
    with runtime.session_factory.begin() as session:  # where the return link may lead
        session.execute(
            update(Merchant).where(Merchant.id == world["shop"]).values(shop_domains="shop.example")
        )
    created = _create(
        client,
        auth,
        metadata={"till": "3", "cashier": "Aida"},
        redirect_url="https://shop.example/thanks",
    )
    assert created["status"] == "new" and created["method"] == "kzte"
    assert created["price_tiyn"] == 150_000 and created["order_id"] == "A-1"
    assert created["metadata"] == {"till": "3", "cashier": "Aida"}
    assert created["redirect_url"] == "https://shop.example/thanks"
    assert created["payment_uri"].startswith("solana:")
    assert created["checkout_url"].endswith(f"/i/{created['id']}")

    location = f"/api/v1/invoices/{created['id']}"
    got = client.get(location, headers=auth).get_json()
    assert got["id"] == created["id"] and got["metadata"] == created["metadata"]
    assert [e["type"] for e in got["events"]] == ["invoice.created"]

    marked = client.post(
        f"/api/v1/invoices/{created['id']}/mark",
        json={"status": "settled", "reason": "paid in cash"},
        headers=auth,
    )
    assert marked.status_code == 200
    assert marked.get_json()["status"] == "settled" and "marked" in marked.get_json()["flags"]
    with runtime.session_factory() as session:
        actions = session.scalars(select(AuditLog.action)).all()
        assert "invoice.marked" in actions
    again = client.post(
        f"/api/v1/invoices/{created['id']}/mark",
        json={"status": "settled", "reason": "twice"},
        headers=auth,
    )
    assert _error(again, 409) == "illegal_transition"


def test_btc_invoice_and_merchant_profile(client: FlaskClient, auth: dict[str, str]) -> None:
    created = _create(client, auth, method="btc")
    assert created["payment_uri"].startswith("bitcoin:") and created["amount_due_atomic"] > 0
    profile = client.get("/api/v1/merchant", headers=auth).get_json()
    assert profile["name"] == "Shop A" and profile["methods"] == ["btc", "kzte"]
    assert "btc_xpub" not in profile


def test_list_filters_and_cursor_pagination(client: FlaskClient, auth: dict[str, str]) -> None:
    ids = [_create(client, auth, order_id=f"o-{n}")["id"] for n in range(5)]
    btc = _create(client, auth, method="btc")["id"]
    seen: list[str] = []
    cursor = None
    while True:
        query: dict[str, Any] = {"limit": 2, "method": "kzte"}
        if cursor:
            query["cursor"] = cursor
        page = client.get("/api/v1/invoices", query_string=query, headers=auth).get_json()
        assert len(page["data"]) <= 2
        seen += [i["id"] for i in page["data"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(ids) and len(set(seen)) == 5
    assert btc not in seen
    by_order = client.get("/api/v1/invoices?order_id=o-3", headers=auth).get_json()["data"]
    assert [i["id"] for i in by_order] == [ids[3]]
    future = client.get(
        "/api/v1/invoices", query_string={"created_from": "2999-01-01T00:00:00Z"}, headers=auth
    ).get_json()
    assert future == {"data": [], "next_cursor": None}
    settled = client.get("/api/v1/invoices?status=settled", headers=auth).get_json()
    assert settled["data"] == []


@pytest.mark.parametrize(
    ("body", "code", "field"),
    [
        (b"{not json", "malformed_json", None),
        (b"", "malformed_json", None),
        (b"[1, 2]", "invalid_body", None),
        (b"\xff\xfe", "malformed_json", None),
        (b"[" * 100_000 + b"]" * 100_000, "malformed_json", None),
        (b'{"price_tiyn": "1500", "method": "kzte"}', "invalid_type", "price_tiyn"),
        (b'{"price_tiyn": 1500.5, "method": "kzte"}', "invalid_type", "price_tiyn"),
        (b'{"price_tiyn": true, "method": "kzte"}', "invalid_type", "price_tiyn"),
        (b'{"price_tiyn": 0, "method": "kzte"}', "invalid_value", "price_tiyn"),
        (b'{"price_tiyn": 5, "method": "kzte"}', "validation_error", "amount"),
        (
            b'{"price_tiyn": 99999999999999999999999, "method": "kzte"}',
            "validation_error",
            "amount",
        ),
        (b'{"price_tiyn": 150000}', "missing_field", "method"),
        (b'{"price_tiyn": 150000, "method": "eth"}', "invalid_value", "method"),
        (b'{"price_tiyn": 150000, "method": "kzte", "tip": 1}', "unknown_field", "tip"),
        (
            b'{"price_tiyn": 150000, "method": "kzte", "order_id": "a\\u0000"}',
            "invalid_value",
            "order_id",
        ),
        (
            b'{"price_tiyn": 150000, "method": "kzte", "order_id": "\\ud800"}',
            "invalid_value",
            "order_id",
        ),
        (
            b'{"price_tiyn": 150000, "method": "kzte", "metadata": {"a": 1}}',
            "invalid_type",
            "metadata",
        ),
        (
            b'{"price_tiyn": 150000, "method": "kzte", "redirect_url": "ftp://x"}',
            "invalid_value",
            "redirect_url",
        ),
        (
            b'{"price_tiyn": 150000, "method": "kzte", "redirect_url": "http://[::1"}',
            "invalid_value",
            "redirect_url",
        ),
    ],
)
def test_client_mistakes_are_400_with_a_code(
    client: FlaskClient, auth: dict[str, str], body: bytes, code: str, field: str | None
) -> None:
    response = client.post(
        "/api/v1/invoices", data=body, headers={**auth, "Content-Type": "application/json"}
    )
    assert _error(response, 400) == code
    assert response.get_json()["error"].get("field") == field


def test_query_mistakes(client: FlaskClient, auth: dict[str, str]) -> None:
    cases = {
        "/api/v1/invoices?limit=0": "invalid_value",
        "/api/v1/invoices?limit=ten": "invalid_type",
        "/api/v1/invoices?status=paid": "invalid_value",
        "/api/v1/invoices?created_from=yesterday": "invalid_value",
        "/api/v1/invoices?created_from=2026-01-01T00:00:00": "invalid_value",
        "/api/v1/invoices?created_to=0001-01-01T00:00:00%2B05:00": "invalid_value",
        "/api/v1/invoices?cursor=bm9wZQ": "invalid_cursor",
        "/api/v1/invoices?cursor=%C3%A9": "invalid_cursor",
        "/api/v1/invoices?page=2": "unknown_parameter",
    }
    for path, code in cases.items():
        assert _error(client.get(path, headers=auth), 400) == code, path
    assert _error(client.get("/api/v1/invoices/..%00", headers=auth), 400) == "bad_request"
    too_big = client.post("/api/v1/invoices", data=b"x" * (2 * 1024 * 1024), headers=auth)
    assert _error(too_big, 413) == "payload_too_large"


def test_keys_missing_invalid_revoked(
    client: FlaskClient, runtime: Runtime, token: str, auth: dict[str, str]
) -> None:
    assert _error(client.get("/api/v1/invoices"), 401) == "missing_api_key"
    response = client.get("/api/v1/invoices", headers={"Authorization": "Basic abc"})
    assert _error(response, 401) == "invalid_api_key"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    response = client.get("/api/v1/invoices", headers={"Authorization": f"Bearer {forged}"})
    assert _error(response, 401) == "invalid_api_key"
    assert client.get("/api/v1/invoices", headers=auth).status_code == 200
    with runtime.session_factory.begin() as session:
        from pos import integrations

        key = session.scalars(select(ApiKey)).one()
        assert token not in (key.secret_sha256, key.prefix)  # only a hash is stored
        integrations.revoke_api_key(session, key, None)
    assert _error(client.get("/api/v1/invoices", headers=auth), 401) == "api_key_revoked"


def test_scopes_are_enforced(client: FlaskClient, make_key: Any, world: dict[str, int]) -> None:
    read_only = {"Authorization": f"Bearer {make_key(world['shop'], ('invoices:read',))}"}
    reports = {"Authorization": f"Bearer {make_key(world['shop'], ('reports:read',))}"}
    assert _error(client.post("/api/v1/invoices", json=KZTE, headers=read_only), 403) == (
        "insufficient_scope"
    )
    assert client.get("/api/v1/invoices", headers=read_only).status_code == 200
    assert _error(client.get("/api/v1/invoices", headers=reports), 403) == "insufficient_scope"
    assert client.get("/api/v1/merchant", headers=reports).status_code == 200


def test_rate_limit_answers_429_with_retry_after(
    client: FlaskClient, make_key: Any, world: dict[str, int]
) -> None:
    limited = {"Authorization": f"Bearer {make_key(world['shop'], rate_limit_per_minute=3)}"}
    for _ in range(3):
        assert client.get("/api/v1/merchant", headers=limited).status_code == 200
    response = client.get("/api/v1/merchant", headers=limited)
    assert _error(response, 429) == "rate_limited"
    assert 1 <= int(response.headers["Retry-After"]) <= 60
    other = {"Authorization": f"Bearer {make_key(world['shop'])}"}
    assert client.get("/api/v1/merchant", headers=other).status_code == 200  # per key


def test_a_key_never_reads_another_merchants_data(
    client: FlaskClient, make_key: Any, world: dict[str, int], auth: dict[str, str]
) -> None:
    other = {"Authorization": f"Bearer {make_key(world['other'])}"}
    theirs = _create(client, other, order_id="B-secret")
    mine = _create(client, auth)
    assert _error(client.get(f"/api/v1/invoices/{theirs['id']}", headers=auth), 404) == (
        "not_found"
    )
    mark = client.post(
        f"/api/v1/invoices/{theirs['id']}/mark",
        json={"status": "invalid", "reason": "x"},
        headers=auth,
    )
    assert _error(mark, 404) == "not_found"
    listed = client.get("/api/v1/invoices", headers=auth).get_json()["data"]
    assert [i["id"] for i in listed] == [mine["id"]]
    assert client.get("/api/v1/invoices?order_id=B-secret", headers=auth).get_json()["data"] == []
    assert client.get("/api/v1/merchant", headers=auth).get_json()["id"] == world["shop"]


def test_idempotency_key_replays_and_conflicts(
    client: FlaskClient, auth: dict[str, str], runtime: Runtime
) -> None:
    headers = {**auth, "Idempotency-Key": "order-42-attempt"}
    first = client.post("/api/v1/invoices", json=KZTE, headers=headers)
    second = client.post("/api/v1/invoices", json=dict(reversed(KZTE.items())), headers=headers)
    assert first.status_code == second.status_code == 201
    assert first.get_json() == second.get_json()
    assert second.headers["Idempotent-Replayed"] == "true"
    conflict = client.post(
        "/api/v1/invoices", json={**KZTE, "price_tiyn": 200_000}, headers=headers
    )
    assert _error(conflict, 409) == "idempotency_conflict"
    other_key = client.post(
        "/api/v1/invoices", json=KZTE, headers={**auth, "Idempotency-Key": "k2"}
    )
    assert other_key.get_json()["id"] != first.get_json()["id"]
    bad = client.post("/api/v1/invoices", json=KZTE, headers={**auth, "Idempotency-Key": "a b"})
    assert _error(bad, 400) == "invalid_value"
    with runtime.session_factory() as session:
        assert session.scalar(select(func.count()).select_from(Invoice)) == 2
        assert session.scalar(select(func.count()).select_from(IdempotencyKey)) == 2
        assert session.scalar(select(func.count()).select_from(InvoiceEvent)) == 2


def test_openapi_document_is_generated_from_the_routes(client: FlaskClient) -> None:
    doc = client.get("/api/v1/openapi.json").get_json()
    assert doc["openapi"].startswith("3.")
    assert set(doc["paths"]) == {
        "/invoices",
        "/invoices/{invoice_id}",
        "/invoices/{invoice_id}/mark",
        "/merchant",
        "/statement",
        "/openapi.json",
        "/docs",
    }
    assert set(doc["paths"]["/invoices"]) == {"get", "post"}
    create = doc["paths"]["/invoices"]["post"]
    assert create["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/InvoiceCreate"
    }
    body = doc["components"]["schemas"]["InvoiceCreate"]
    assert body["required"] == ["method"] and body["additionalProperties"] is False
    assert body["properties"]["lines"]["items"]["required"] == ["quantity"]
    assert "invoices:write" in create["description"]
    assert doc["paths"]["/openapi.json"]["get"]["security"] == []


def test_docs_page_renders_without_inline_script(client: FlaskClient) -> None:
    response = client.get("/api/v1/docs")
    page = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "POST /api/v1/invoices" in page and "idempotency_conflict" in page
    assert "<script" not in page and "style=" not in page
    assert "script-src 'self'" in response.headers["Content-Security-Policy"]


def test_portal_forms_still_need_csrf(app: Any, world: dict[str, int]) -> None:
    app.config["WTF_CSRF_ENABLED"] = True
    client = app.test_client()
    response = client.post("/login", data={"email": "owner@a.test", "password": "x"})
    assert response.status_code == 400  # only the API blueprint is exempt
