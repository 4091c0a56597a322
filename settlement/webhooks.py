"""Webhook dispatcher: the invoice events table is the outbox; this turns it into signed POSTs.

1. `scan_outbox` finds events of each active webhook's merchant that have no delivery row yet
   and adds one (unique per webhook and event, so a repeated scan adds nothing).
2. `deliver_due` POSTs due deliveries, one short request each, within a time budget, and marks a
   delivery `delivered` only after a 2xx. A worker killed between the POST and the mark sends
   it again after restart: at-least-once, and the event id lets receivers drop the repeat.
3. A failure is retried with exponential backoff and jitter for 25 hours, then `failed`; the
   owner can redeliver from the portal.

Both run leader-only (one worker at a time) under the worker's lease.
"""

from __future__ import annotations

import http.client
import json
import logging
import random
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import exists, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from pos.db import utcnow
from pos.integrations import (
    DELIVERY_RETRY_WINDOW,
    ApiInvoiceExtra,
    DeliveryStatus,
    Webhook,
    WebhookDelivery,
    purge_idempotency_keys,
    sign_payload,
)
from pos.models import Invoice, InvoiceEvent
from pos.runtime import Runtime
from settlement.worker import Duty

log = logging.getLogger(__name__)

# Events are stamped before their transaction commits; look back this far for late commits.
COMMIT_GRACE = timedelta(minutes=5)
SCAN_BATCH = 500
DELIVER_BATCH = 20
DELIVER_BUDGET_SECONDS = 4.0  # stop starting new POSTs after this; the worker has other duties
TIMEOUT_SECONDS = 4.0
RETRY_WINDOW = DELIVERY_RETRY_WINDOW
BACKOFF_BASE_SECONDS = 30.0
BACKOFF_CAP_SECONDS = 2 * 3600.0
USER_AGENT = "CryptoCity-Webhooks/1"


@dataclass(frozen=True)
class HttpResult:
    """What came back: a status code, or an error when no answer arrived (timeout, refused)."""

    status: int | None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


Sender = Callable[[str, bytes, Mapping[str, str], float], HttpResult]


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect is an answer, not a success: the receiver must answer 2xx at its own URL."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


def http_post(url: str, body: bytes, headers: Mapping[str, str], timeout: float) -> HttpResult:
    """POST once; never raises for anything the network or the receiver can do."""
    request = urllib.request.Request(url, data=body, headers=dict(headers), method="POST")
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            response.read(1024)  # drain a little so keep-alive servers are happy
            return HttpResult(int(response.status))
    except urllib.error.HTTPError as exc:
        exc.close()
        return HttpResult(exc.code, f"HTTP {exc.code}")
    except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError) as exc:
        return HttpResult(None, f"{type(exc).__name__}: {exc}"[:500])


def backoff(attempts: int, rng: random.Random | None = None) -> timedelta:
    """Exponential from 30 s, capped at 2 h, with jitter so retries of many events spread."""
    ceiling = min(BACKOFF_BASE_SECONDS * 2 ** max(attempts - 1, 0), BACKOFF_CAP_SECONDS)
    return timedelta(seconds=ceiling * (rng or random).uniform(0.5, 1.0))


def scan_outbox(
    factory: sessionmaker[Session], now: datetime | None = None, batch: int = SCAN_BATCH
) -> int:
    """Add a pending delivery for every new event a webhook subscribes to; return how many."""
    now = now or utcnow()
    created = 0
    with factory() as session:
        for hook in session.scalars(select(Webhook).where(Webhook.active)).all():
            since = max(hook.deliver_from, hook.scanned_until - COMMIT_GRACE)
            delivered = exists().where(
                WebhookDelivery.webhook_id == hook.id, WebhookDelivery.event_id == InvoiceEvent.id
            )
            events = session.execute(
                select(InvoiceEvent.id, InvoiceEvent.created_at)
                .join(Invoice, Invoice.id == InvoiceEvent.invoice_id)
                .where(
                    Invoice.merchant_id == hook.merchant_id,
                    InvoiceEvent.type.in_(hook.event_type_list),
                    InvoiceEvent.created_at >= since,
                    ~delivered,
                )
                .order_by(InvoiceEvent.created_at, InvoiceEvent.id)
                .limit(batch)
            ).all()
            for event_id, _created_at in events:
                session.add(
                    WebhookDelivery(
                        webhook_id=hook.id,
                        event_id=event_id,
                        status=DeliveryStatus.PENDING,
                        attempts=0,
                        next_attempt_at=now,
                        retry_until=now + RETRY_WINDOW,
                        created_at=now,
                    )
                )
            full = len(events) == batch
            hook.scanned_until = max(hook.scanned_until, events[-1][1]) if full else now
            created += len(events)
        try:
            session.commit()
        except IntegrityError:
            # Another scanner (a lease handover) added the same rows first; next pass goes on.
            session.rollback()
            log.warning("webhook outbox scan raced another worker; retrying next pass")
            return 0
    return created


def event_body(event: InvoiceEvent, invoice: Invoice, extra: ApiInvoiceExtra | None) -> bytes:
    """The JSON body for an event: built only from what never changes, so every retry of an
    event sends the same bytes."""
    payload = {
        "id": event.id,
        "type": event.type,
        "created_at": event.created_at.isoformat(),
        "merchant_id": invoice.merchant_id,
        "data": {
            "invoice": {
                "id": invoice.id,
                "status": event.to_status,
                "previous_status": event.from_status,
                "version": event.invoice_version,
                "method": invoice.method.value,
                "price_tiyn": invoice.price_tiyn,
                "amount_due_atomic": invoice.amount_due_atomic,
                "order_id": invoice.order_id,
                "metadata": dict(extra.meta) if extra else {},
            },
            "details": event.data,
        },
    }
    return json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()


@dataclass(frozen=True)
class _Prepared:
    url: str
    body: bytes
    headers: dict[str, str]


def _prepare(session: Session, delivery: WebhookDelivery, now: datetime) -> _Prepared | None:
    hook = session.get(Webhook, delivery.webhook_id)
    event = session.get(InvoiceEvent, delivery.event_id)
    if hook is None or event is None:
        return None
    invoice = session.get(Invoice, event.invoice_id)
    if invoice is None:
        return None
    body = event_body(event, invoice, session.get(ApiInvoiceExtra, invoice.id))
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "CryptoCity-Event-Id": event.id,
        "CryptoCity-Event-Type": event.type,
        "CryptoCity-Signature": sign_payload(hook.secret, int(now.timestamp()), body),
    }
    return _Prepared(hook.url, body, headers)


def record_attempt(
    session: Session, delivery: WebhookDelivery, result: HttpResult, now: datetime
) -> None:
    """Delivered on a 2xx; otherwise schedule the next try, or give up after the window."""
    delivery.attempts += 1
    delivery.last_attempt_at = now
    delivery.last_status_code = result.status
    if result.ok:
        delivery.status = DeliveryStatus.DELIVERED
        delivery.delivered_at = now
        delivery.last_error = None
        return
    delivery.last_error = (result.error or f"HTTP {result.status}")[:500]
    if now >= delivery.retry_until:
        delivery.status = DeliveryStatus.FAILED
    else:
        delivery.next_attempt_at = now + backoff(delivery.attempts)


def deliver_due(
    factory: sessionmaker[Session],
    sender: Sender = http_post,
    now: datetime | None = None,
    batch: int = DELIVER_BATCH,
    budget_seconds: float = DELIVER_BUDGET_SECONDS,
) -> int:
    """POST up to `batch` due deliveries within the time budget; return how many were tried."""
    started = time.monotonic()
    now = now or utcnow()
    with factory() as session:
        due = session.scalars(
            select(WebhookDelivery.id)
            .join(Webhook, Webhook.id == WebhookDelivery.webhook_id)
            .where(
                WebhookDelivery.status == DeliveryStatus.PENDING,
                WebhookDelivery.next_attempt_at <= now,
                Webhook.active,
            )
            .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id)
            .limit(batch)
        ).all()
    tried = 0
    for delivery_id in due:
        if time.monotonic() - started > budget_seconds:
            break
        with factory() as session:
            delivery = session.get(WebhookDelivery, delivery_id)
            if delivery is None or delivery.status is not DeliveryStatus.PENDING:
                continue
            prepared = _prepare(session, delivery, now)
            session.rollback()  # hold no transaction open across the network call
            if prepared is None:
                continue
            result = sender(prepared.url, prepared.body, prepared.headers, TIMEOUT_SECONDS)
            # Only now, after the receiver answered, is the attempt recorded.
            delivery = session.get(WebhookDelivery, delivery_id)
            if delivery is None:
                continue  # the webhook was deleted meanwhile
            record_attempt(session, delivery, result, now)
            session.commit()
            tried += 1
    return tried


def _scan(rt: Runtime) -> int:
    return scan_outbox(rt.session_factory)


def _deliver(rt: Runtime) -> int:
    return deliver_due(rt.session_factory)


def _purge(rt: Runtime) -> int:
    with rt.session_factory() as session:
        purged = purge_idempotency_keys(session)
        session.commit()
    return purged


def duty() -> list[Duty]:
    """The worker duties of this module (register them in settlement.worker.all_duties)."""
    return [
        Duty("webhook-outbox", 1.0, _scan, leader_only=True),
        Duty("webhook-deliver", 1.0, _deliver, leader_only=True),
        Duty("idempotency-purge", 3600.0, _purge, leader_only=True),
    ]
