"""The operator's console: register, approve, suspend (with reason), the zone overview."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from pos.models import AuditLog, Merchant, MerchantStatus, User
from pos.runtime import Runtime

import factories
from portal_helpers import change_password, csrf_from, login


@pytest.fixture
def operator(as_user: Callable[[str | None], FlaskClient]) -> FlaskClient:
    return as_user("operator")


def _submit(client: FlaskClient, path: str, data: dict[str, str]) -> tuple[int, str]:
    token = csrf_from(client, "/operator/")
    response = client.post(path, data={"csrf_token": token, **data})
    return response.status_code, response.headers.get("Location") or response.get_data(True)


def _status(runtime: Runtime, merchant_id: int) -> MerchantStatus:
    with runtime.session_factory() as session:
        merchant = session.get(Merchant, merchant_id)
        assert merchant is not None
        return merchant.status


def test_register_rejects_bad_input_per_field(operator: FlaskClient) -> None:
    status, page = _submit(operator, "/operator/merchants", {"name": "x", "owner_email": "a@b.kz"})
    assert status == 400 and 'id="name-error"' in page and "2 to 120 characters" in page
    status, page = _submit(
        operator, "/operator/merchants", {"name": "Bakery", "owner_email": "nope"}
    )
    assert status == 400 and 'id="owner_email-error"' in page and "valid e-mail" in page
    status, page = _submit(
        operator, "/operator/merchants", {"name": "Bakery", "owner_email": "owner@a.test"}
    )
    assert status == 400 and 'id="owner_email-error"' in page and "already exists" in page


def test_register_approve_and_the_owner_signs_in(
    operator: FlaskClient, app: Flask, runtime: Runtime
) -> None:
    token = csrf_from(operator, "/operator/merchants")
    response = operator.post(
        "/operator/merchants",
        data={"csrf_token": token, "name": "Bakery", "owner_email": "baker@zone.kz"},
    )
    assert response.status_code == 200 and response.headers["Cache-Control"] == "no-store"
    password = re.search(r'id="new-password">([^<]+)<', response.get_data(as_text=True))
    assert password is not None
    with runtime.session_factory() as session:
        owner = session.scalar(select(User).where(User.email == "baker@zone.kz"))
        assert owner is not None and owner.merchant_id is not None
        merchant_id = owner.merchant_id
    assert _status(runtime, merchant_id) is MerchantStatus.PENDING
    baker = app.test_client()
    login(baker, "baker@zone.kz", password.group(1))
    assert baker.get("/merchant/").headers["Location"] == "/account/password"
    change_password(baker, password.group(1), "the baker's own sourdough phrase")
    assert "waits for the zone operator" in baker.get("/merchant/").get_data(as_text=True)
    assert _submit(operator, f"/operator/merchants/{merchant_id}/approve", {})[0] == 302
    assert _status(runtime, merchant_id) is MerchantStatus.ACTIVE
    status, page = _submit(operator, f"/operator/merchants/{merchant_id}/approve", {})
    assert status == 400 and "cannot be approved" in page


def test_suspend_needs_a_reason_and_stops_new_invoices(
    operator: FlaskClient,
    as_user: Callable[[str | None], FlaskClient],
    runtime: Runtime,
    world: dict[str, int],
) -> None:
    owner = as_user("owner")
    cashier = as_user("cashier")
    shop = world["shop"]
    status, page = _submit(operator, f"/operator/merchants/{shop}/suspend", {"reason": " "})
    assert status == 400 and f'id="reason-error-{shop}"' in page and "give a reason" in page
    status, _ = _submit(operator, f"/operator/merchants/{shop}/suspend", {"reason": "unpaid fees"})
    assert status == 302 and _status(runtime, shop) is MerchantStatus.SUSPENDED
    with runtime.session_factory() as session:
        row = session.scalar(select(AuditLog).where(AuditLog.action == "merchant.suspended"))
        assert row is not None and row.actor_user_id == world["operator"]
        assert row.detail == {"from": "active", "reason": "unpaid fees"}
    # The owner can still sign in but the terminal refuses; the cashier is signed out.
    token = csrf_from(owner, "/terminal/")
    refused = owner.post(
        "/terminal/invoices", data={"csrf_token": token, "amount": "2500", "method": "kzte"}
    )
    assert refused.status_code == 400 and "suspended" in refused.get_data(as_text=True)
    assert cashier.get("/terminal/").status_code == 302
    status, _ = _submit(operator, f"/operator/merchants/{shop}/reactivate", {"reason": "paid"})
    assert status == 302 and _status(runtime, shop) is MerchantStatus.ACTIVE


def test_unknown_merchant_or_action_is_404(operator: FlaskClient) -> None:
    assert _submit(operator, "/operator/merchants/999/suspend", {"reason": "x"})[0] == 404
    assert _submit(operator, "/operator/merchants/1/delete", {})[0] == 404


def test_zone_overview(operator: FlaskClient, world: dict[str, int]) -> None:
    page = operator.get("/operator/").get_data(as_text=True)
    assert "Zone overview" in page and 'id="zone-reports"' in page
    assert "ops@zone.test signed in" in page  # the audit log shows the sign-in, as a sentence
    assert "Payouts to merchants" in page and ">payouts<" not in page  # link texts, not paths
    registry = operator.get("/operator/merchants").get_data(as_text=True)
    assert "Shop A" in registry and "Shop B" in registry
    assert factories.PASSWORD not in registry
