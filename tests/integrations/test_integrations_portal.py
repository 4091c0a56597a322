"""The owner's integration pages: keys shown once, revoke, webhooks, delivery log, redeliver."""

from __future__ import annotations

import re
from typing import Any

from flask.testing import FlaskClient
from sqlalchemy import select

from pos import invoices
from pos.integrations import ApiKey, DeliveryStatus, Webhook, WebhookDelivery
from pos.models import AuditLog
from pos.runtime import Runtime
from pos.states import PaymentMethod
from settlement.webhooks import Sender, deliver_due, scan_outbox

from factories import PASSWORD
from portal_helpers import csrf_from, login

PAGE = "/merchant/integrations/"


def _owner(client: FlaskClient, email: str = "owner@a.test") -> str:
    login(client, email, PASSWORD)
    return csrf_from(client, PAGE)


def test_owner_creates_a_key_shown_once_and_revokes_it(
    client: FlaskClient, world: dict[str, int], runtime: Runtime
) -> None:
    token = _owner(client)
    response = client.post(
        f"{PAGE}keys",
        data={
            "name": "Till 1",
            "scopes": ["invoices:read", "invoices:write"],
            "rate_limit_per_minute": "60",
            "csrf_token": token,
        },
    )
    assert response.status_code == 201
    match = re.search(r'id="new-token">(cck_[^<]+)<', response.get_data(as_text=True))
    assert match
    api_token = match.group(1)
    assert api_token not in client.get(PAGE).get_data(as_text=True)  # never shown again
    auth = {"Authorization": f"Bearer {api_token}"}
    assert client.get("/api/v1/merchant", headers=auth).status_code == 200

    with runtime.session_factory() as session:
        key = session.scalars(select(ApiKey)).one()
        assert key.scopes == "invoices:read invoices:write" and key.rate_limit_per_minute == 60
    revoked = client.post(f"{PAGE}keys/{key.id}/revoke", data={"csrf_token": token})
    assert revoked.status_code == 302
    assert client.get("/api/v1/merchant", headers=auth).status_code == 401
    with runtime.session_factory() as session:
        actions = set(session.scalars(select(AuditLog.action)))
        assert {"api_key.created", "api_key.revoked"} <= actions


def test_key_form_errors_are_400_not_500(client: FlaskClient, world: dict[str, int]) -> None:
    token = _owner(client)
    for data in (
        {"name": "", "scopes": ["invoices:read"], "rate_limit_per_minute": "60"},
        {"name": "x", "scopes": ["root"], "rate_limit_per_minute": "60"},
        {"name": "x", "rate_limit_per_minute": "60"},
        {"name": "x", "scopes": ["invoices:read"], "rate_limit_per_minute": "lots"},
        {"name": "x", "scopes": ["invoices:read"], "rate_limit_per_minute": "0"},
    ):
        assert client.post(f"{PAGE}keys", data={**data, "csrf_token": token}).status_code == 400


def test_webhook_create_edit_log_redeliver_delete(
    client: FlaskClient,
    world: dict[str, int],
    runtime: Runtime,
    receiver: Any,
    loopback_sender: Sender,
) -> None:
    token = _owner(client)
    bad = client.post(f"{PAGE}webhooks", data={"url": "ftp://x", "csrf_token": token})
    assert bad.status_code == 400
    created = client.post(
        f"{PAGE}webhooks",
        data={"url": receiver.url, "event_types": ["invoice.created"], "csrf_token": token},
    )
    assert created.status_code == 302
    with runtime.session_factory() as session:
        hook = session.scalars(select(Webhook)).one()
    page = client.get(f"{PAGE}webhooks/{hook.id}").get_data(as_text=True)
    assert hook.secret in page

    with runtime.session_factory() as session:
        invoices.create_invoice(
            session,
            runtime.settings,
            runtime.rates,
            invoices.InvoiceRequest(world["shop"], 250_000, PaymentMethod.KZTE),
        )
        session.commit()
    receiver.statuses = [503]
    scan_outbox(runtime.session_factory)
    deliver_due(runtime.session_factory, sender=loopback_sender)
    page = client.get(f"{PAGE}webhooks/{hook.id}").get_data(as_text=True)
    assert "503" in page and "invoice.created" in page and "Redeliver" in page

    with runtime.session_factory() as session:
        delivery = session.scalars(select(WebhookDelivery)).one()
    again = client.post(f"{PAGE}deliveries/{delivery.id}/redeliver", data={"csrf_token": token})
    assert again.status_code == 302
    assert deliver_due(runtime.session_factory, sender=loopback_sender) == 1
    with runtime.session_factory() as session:
        delivery = session.scalars(select(WebhookDelivery)).one()
        assert delivery.status is DeliveryStatus.DELIVERED and delivery.attempts == 2
    assert len(receiver.requests) == 2

    edited = client.post(
        f"{PAGE}webhooks/{hook.id}",
        data={"url": receiver.url + "2", "event_types": ["invoice.settled"], "csrf_token": token},
    )
    assert edited.status_code == 302
    with runtime.session_factory() as session:
        saved = session.get(Webhook, hook.id)
        assert saved is not None and saved.url.endswith("/hook2") and not saved.active
        assert saved.event_types == "invoice.settled"
    gone = client.post(f"{PAGE}webhooks/{hook.id}/delete", data={"csrf_token": token})
    assert gone.status_code == 302
    with runtime.session_factory() as session:
        assert session.scalars(select(Webhook)).all() == []
        assert session.scalars(select(WebhookDelivery)).all() == []


def test_other_owners_and_cashiers_are_kept_out(
    client: FlaskClient,
    app: Any,
    world: dict[str, int],
    runtime: Runtime,
    receiver: Any,
    loopback_sender: Sender,
) -> None:
    token = _owner(client)
    client.post(
        f"{PAGE}webhooks",
        data={"url": receiver.url, "event_types": ["invoice.created"], "csrf_token": token},
    )
    client.post(
        f"{PAGE}keys",
        data={
            "name": "k",
            "scopes": ["invoices:read"],
            "rate_limit_per_minute": "5",
            "csrf_token": token,
        },
    )
    with runtime.session_factory() as session:
        hook = session.scalars(select(Webhook)).one()
        key = session.scalars(select(ApiKey)).one()

    other = app.test_client()
    other_token = _owner(other, "owner@b.test")
    assert other.get(f"{PAGE}webhooks/{hook.id}").status_code == 404
    assert (
        other.post(f"{PAGE}keys/{key.id}/revoke", data={"csrf_token": other_token}).status_code
        == 404
    )
    assert (
        other.post(f"{PAGE}webhooks/{hook.id}/delete", data={"csrf_token": other_token}).status_code
        == 404
    )
    assert receiver.url not in other.get(PAGE).get_data(as_text=True)

    cashier = app.test_client()
    login(cashier, "cashier@a.test", PASSWORD)
    assert cashier.get(PAGE).status_code == 403


def test_forms_need_csrf(client: FlaskClient, app: Any, world: dict[str, int]) -> None:
    app.config["WTF_CSRF_ENABLED"] = True
    _owner(client)
    response = client.post(
        f"{PAGE}keys", data={"name": "k", "scopes": ["invoices:read"], "rate_limit_per_minute": "5"}
    )
    assert response.status_code == 400
