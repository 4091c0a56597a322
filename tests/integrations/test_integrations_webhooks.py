"""Webhooks against a real HTTP receiver on loopback: signature, retries, crash, filters."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import time
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from pos import integrations, invoices
from pos.db import utcnow
from pos.integrations import DeliveryStatus, WebhookDelivery, verify_signature
from pos.models import Invoice, InvoiceEvent
from pos.runtime import Runtime
from pos.states import InvoiceStatus, PaymentMethod
from settlement import webhooks
from settlement.webhooks import HttpResult, Sender, deliver_due, scan_outbox


def readme_verify(secret: str, signature_header: str, body: bytes, tolerance: int = 300) -> bool:
    """The receiver-side check exactly as the README shows it (stdlib only)."""
    fields = dict(item.split("=", 1) for item in signature_header.split(",") if "=" in item)
    timestamp, received = fields.get("t", ""), fields.get("v1", "")
    if not timestamp.isdigit() or abs(time.time() - int(timestamp)) > tolerance:
        return False  # stale or missing timestamp: maybe a replay
    signed = timestamp.encode() + b"." + body
    expected = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, received)


def _webhook(runtime: Runtime, merchant_id: int, url: str, types: tuple[str, ...] = ()) -> str:
    with runtime.session_factory.begin() as session:
        hook = integrations.create_webhook(
            session,
            runtime.settings,
            merchant_id,
            url,
            list(types or integrations.WEBHOOK_EVENT_TYPES),
        )
        return hook.secret


def _invoice(runtime: Runtime, merchant_id: int) -> str:
    with runtime.session_factory() as session:
        invoice = invoices.create_invoice(
            session,
            runtime.settings,
            runtime.rates,
            invoices.InvoiceRequest(merchant_id, 250_000, PaymentMethod.KZTE, order_id="o-1"),
        )
        session.commit()
        return invoice.id


def _deliveries(runtime: Runtime) -> list[WebhookDelivery]:
    with runtime.session_factory() as session:
        return list(session.scalars(select(WebhookDelivery).order_by(WebhookDelivery.id)))


def test_signed_event_verifies_at_the_receiver(
    runtime: Runtime, world: dict[str, int], receiver: Any, loopback_sender: Sender
) -> None:
    secret = _webhook(runtime, world["shop"], receiver.url)
    invoice_id = _invoice(runtime, world["shop"])
    assert scan_outbox(runtime.session_factory) == 1
    assert scan_outbox(runtime.session_factory) == 0  # the unique row makes rescans harmless
    assert deliver_due(runtime.session_factory, sender=loopback_sender) == 1

    [got] = receiver.requests
    header = got.headers["CryptoCity-Signature"]
    assert verify_signature(secret, header, got.body, now=int(time.time()))
    assert readme_verify(secret, header, got.body)
    assert not readme_verify(secret, header, got.body.replace(b"o-1", b"o-2"))
    assert not verify_signature(secret, header, got.body + b" ", now=int(time.time()))
    assert not verify_signature("whsec_wrong", header, got.body, now=int(time.time()))
    assert not verify_signature(secret, header, got.body, now=int(time.time()) + 3600)
    event = json.loads(got.body)
    assert event["type"] == "invoice.created" and got.headers["CryptoCity-Event-Id"] == event["id"]
    assert event["data"]["invoice"]["id"] == invoice_id
    assert event["data"]["invoice"]["order_id"] == "o-1"
    [delivery] = _deliveries(runtime)
    assert delivery.status is DeliveryStatus.DELIVERED and delivery.last_status_code == 200


def test_receiver_500_then_200_gets_the_same_event_twice(
    runtime: Runtime, world: dict[str, int], receiver: Any, loopback_sender: Sender
) -> None:
    _webhook(runtime, world["shop"], receiver.url)
    invoice_id = _invoice(runtime, world["shop"])
    with runtime.session_factory() as session:
        before = session.get(Invoice, invoice_id)
        assert before is not None
        version_before = before.version
    receiver.statuses = [500]
    scan_outbox(runtime.session_factory)
    deliver_due(runtime.session_factory, sender=loopback_sender)
    [delivery] = _deliveries(runtime)
    assert delivery.status is DeliveryStatus.PENDING and delivery.last_status_code == 500
    assert delivery.attempts == 1 and delivery.next_attempt_at > utcnow()
    assert (
        deliver_due(runtime.session_factory, sender=loopback_sender) == 0
    )  # backing off: not due yet
    deliver_due(
        runtime.session_factory,
        sender=loopback_sender,
        now=delivery.next_attempt_at + timedelta(seconds=1),
    )

    first, second = receiver.requests
    assert first.body == second.body
    assert first.headers["CryptoCity-Event-Id"] == second.headers["CryptoCity-Event-Id"]
    [delivery] = _deliveries(runtime)
    assert delivery.status is DeliveryStatus.DELIVERED and delivery.attempts == 2
    with runtime.session_factory() as session:
        after = session.get(Invoice, invoice_id)
        assert after is not None and after.version == version_before
        assert session.scalar(select(func.count()).select_from(InvoiceEvent)) == 1
        assert session.scalar(select(func.count()).select_from(WebhookDelivery)) == 1


class Killed(BaseException):
    """Stands in for SIGKILL between the POST and the commit that marks it delivered."""


def test_worker_killed_mid_delivery_redelivers_after_restart(
    runtime: Runtime, world: dict[str, int], receiver: Any, loopback_sender: Sender
) -> None:
    _webhook(runtime, world["shop"], receiver.url)
    _invoice(runtime, world["shop"])
    scan_outbox(runtime.session_factory)

    def send_then_die(
        url: str, body: bytes, headers: Mapping[str, str], timeout: float
    ) -> HttpResult:
        loopback_sender(url, body, headers, timeout)
        raise Killed

    with pytest.raises(Killed):
        deliver_due(runtime.session_factory, sender=send_then_die)
    [delivery] = _deliveries(runtime)
    assert delivery.status is DeliveryStatus.PENDING and delivery.attempts == 0
    assert len(receiver.requests) == 1

    assert deliver_due(runtime.session_factory, sender=loopback_sender) == 1  # the restarted worker
    first, second = receiver.requests
    assert first.headers["CryptoCity-Event-Id"] == second.headers["CryptoCity-Event-Id"]
    assert first.body == second.body
    assert _deliveries(runtime)[0].status is DeliveryStatus.DELIVERED


def test_event_filter_and_tenant_isolation(
    runtime: Runtime, world: dict[str, int], receiver: Any, loopback_sender: Sender
) -> None:
    _webhook(runtime, world["shop"], receiver.url, ("invoice.settled", "invoice.marked"))
    mine = _invoice(runtime, world["shop"])
    _invoice(runtime, world["other"])
    with runtime.session_factory() as session:
        invoice = invoices.get_invoice(session, mine)
        invoices.mark(session, invoice, InvoiceStatus.SETTLED, "cash", None)
        session.commit()
    assert scan_outbox(runtime.session_factory) == 2
    deliver_due(runtime.session_factory, sender=loopback_sender)
    types = sorted(json.loads(r.body)["type"] for r in receiver.requests)
    assert types == ["invoice.marked", "invoice.settled"]
    assert {json.loads(r.body)["data"]["invoice"]["id"] for r in receiver.requests} == {mine}


def test_events_before_the_webhook_and_while_off_are_not_sent(
    runtime: Runtime, world: dict[str, int], receiver: Any, loopback_sender: Sender
) -> None:
    _invoice(runtime, world["shop"])
    _webhook(runtime, world["shop"], receiver.url)
    assert scan_outbox(runtime.session_factory) == 0
    with runtime.session_factory.begin() as session:
        hook = session.scalars(select(integrations.Webhook)).one()
        integrations.update_webhook(
            session, runtime.settings, hook, receiver.url, ["invoice.created"], False
        )
    _invoice(runtime, world["shop"])
    assert scan_outbox(runtime.session_factory) == 0
    with runtime.session_factory.begin() as session:
        hook = session.scalars(select(integrations.Webhook)).one()
        integrations.update_webhook(
            session, runtime.settings, hook, receiver.url, ["invoice.created"], True
        )
    _invoice(runtime, world["shop"])
    assert scan_outbox(runtime.session_factory) == 1


def test_unreachable_receiver_backs_off_and_fails_after_the_window(
    runtime: Runtime, world: dict[str, int], loopback_sender: Sender
) -> None:
    with socket.socket() as bound:  # bound, never listening: connections are refused
        bound.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{bound.getsockname()[1]}/hook"
        _refused(runtime, world, url, loopback_sender)


def _refused(runtime: Runtime, world: dict[str, int], url: str, loopback_sender: Sender) -> None:
    _webhook(runtime, world["shop"], url)
    _invoice(runtime, world["shop"])
    scan_outbox(runtime.session_factory)
    now = utcnow()
    gaps = []
    for _ in range(6):
        deliver_due(runtime.session_factory, sender=loopback_sender, now=now)
        [delivery] = _deliveries(runtime)
        assert delivery.status is DeliveryStatus.PENDING and delivery.last_status_code is None
        assert delivery.last_error
        gaps.append(delivery.next_attempt_at - now)
        now = delivery.next_attempt_at
    assert gaps[-1] > gaps[0] * 4  # exponential
    deliver_due(
        runtime.session_factory,
        sender=loopback_sender,
        now=delivery.retry_until + timedelta(seconds=1),
    )
    [delivery] = _deliveries(runtime)
    assert delivery.status is DeliveryStatus.FAILED
    assert delivery.retry_until - delivery.created_at >= timedelta(hours=24)


def test_backoff_is_bounded_and_jittered() -> None:
    assert timedelta(seconds=15) <= webhooks.backoff(1) <= timedelta(seconds=30)
    assert webhooks.backoff(40) <= timedelta(hours=2)
    assert len({webhooks.backoff(5) for _ in range(20)}) > 1


def test_redirects_are_not_success(receiver: Any, loopback_sender: Sender) -> None:
    receiver.statuses = [302]
    result = loopback_sender(receiver.url, b"{}", {"Content-Type": "application/json"}, 2.0)
    assert result.status == 302 and not result.ok


def test_duty_list_is_leader_only() -> None:
    duties = webhooks.duty()
    assert {d.name for d in duties} == {"webhook-outbox", "webhook-deliver", "idempotency-purge"}
    assert all(d.leader_only for d in duties)


def test_events_committed_late_are_still_found(
    runtime: Runtime, world: dict[str, int], receiver: Any, loopback_sender: Sender
) -> None:
    """An event is stamped inside its transaction; a slow commit lands behind the scan cursor."""
    _webhook(runtime, world["shop"], receiver.url)
    scan_outbox(runtime.session_factory)
    with runtime.session_factory.begin() as session:
        hook = session.scalars(select(integrations.Webhook)).one()
        cursor = hook.scanned_until
        hook.deliver_from = cursor - timedelta(hours=1)
    late, too_late = _invoice(runtime, world["shop"]), _invoice(runtime, world["shop"])
    with runtime.session_factory.begin() as session:
        for invoice_id, age in ((late, timedelta(minutes=2)), (too_late, timedelta(minutes=30))):
            event = session.scalars(
                select(InvoiceEvent).where(InvoiceEvent.invoice_id == invoice_id)
            ).one()
            event.created_at = cursor - age
    assert scan_outbox(runtime.session_factory) == 1
    deliver_due(runtime.session_factory, sender=loopback_sender)
    assert [json.loads(r.body)["data"]["invoice"]["id"] for r in receiver.requests] == [late]


def test_worker_pass_runs_scan_then_delivery(
    runtime: Runtime, world: dict[str, int], receiver: Any, loopback_sender: Sender
) -> None:
    from settlement.worker import WorkerState, run_pass

    _webhook(runtime, world["shop"], receiver.url)
    _invoice(runtime, world["shop"])
    counts = run_pass(runtime, webhooks.duty(), WorkerState(), force=True)
    assert counts == {"webhook-outbox": 1, "webhook-deliver": 1, "idempotency-purge": 0}
    assert len(receiver.requests) == 1
