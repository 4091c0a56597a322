"""Webhook dispatcher: the invoice events table is the outbox; this turns it into signed POSTs.

1. `scan_outbox` finds events of each active webhook's merchant that have no delivery row yet
   and adds one (unique per webhook and event, so a repeated scan adds nothing).
2. A `Dispatcher` (settlement.webhook_dispatch) POSTs due deliveries concurrently: at most
   `RECEIVER_CONCURRENCY` at a time per receiver (scheme, host and port), `WORKERS` in all,
   each within a wall-clock deadline (settlement.webhook_http: a receiver trickling bytes is
   cut there). A delivery is marked `delivered` only after a 2xx. A slow receiver fills only
   its own slots and queue; the other receivers' deliveries go on, and the duty's run returns
   without waiting for it. A worker killed between the POST and the mark sends it again after
   restart: at-least-once, and the event id lets receivers drop the repeat.
3. A failure is retried with exponential backoff and jitter for 25 hours, then `failed`; the
   owner can redeliver from the portal. A receiver whose host no longer resolves to a public
   address (pos.network_policy, checked before every POST) is such a failure too, with a
   generic reason: retried like the others, since a DNS mistake is often fixed within hours.

All run leader-only (one worker at a time) under the worker's lease.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import exists, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from pos.db import utcnow
from pos.integrations import (
    DELIVERY_RETRY_WINDOW,
    DeliveryStatus,
    Webhook,
    WebhookDelivery,
    purge_idempotency_keys,
)
from pos.models import Invoice, InvoiceEvent
from pos.runtime import Runtime
from settlement.webhook_dispatch import (
    DEADLINE_SECONDS,
    DELIVER_BATCH,
    Dispatcher,
    backoff,
    event_body,
    record_attempt,
)
from settlement.webhook_http import HttpResult, Sender, http_post, sender_for
from settlement.worker import Duty

__all__ = [
    "Dispatcher",
    "HttpResult",
    "Sender",
    "backoff",
    "deliver_due",
    "duty",
    "event_body",
    "http_post",
    "record_attempt",
    "scan_outbox",
    "sender_for",
]

log = logging.getLogger(__name__)

# Events are stamped before their transaction commits; look back this far for late commits.
COMMIT_GRACE = timedelta(minutes=5)
SCAN_BATCH = 500
RETRY_WINDOW = DELIVERY_RETRY_WINDOW


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


def deliver_due(
    factory: sessionmaker[Session],
    sender: Sender = http_post,
    now: datetime | None = None,
    batch: int = DELIVER_BATCH,
    deadline_seconds: float = DEADLINE_SECONDS,
) -> int:
    """POST up to `batch` due deliveries concurrently and wait until each is answered (or cut
    at its deadline) and recorded; return how many were tried. The default sender reaches
    public addresses only; `sender_for(settings)` honours WEBHOOK_ALLOW_PRIVATE_NETWORKS."""
    dispatcher = Dispatcher(factory, sender, deadline_seconds=deadline_seconds)
    try:
        return dispatcher.pump(now, budget_seconds=None, batch=batch)
    finally:
        dispatcher.close()


def _scan(rt: Runtime) -> int:
    return scan_outbox(rt.session_factory)


def _purge(rt: Runtime) -> int:
    with rt.session_factory() as session:
        purged = purge_idempotency_keys(session)
        session.commit()
    return purged


def duty() -> list[Duty]:
    """The worker duties of this module (register them in settlement.worker.all_duties).

    Optional for /healthz: a stale heartbeat is flagged but does not fail the check.
    """
    dispatchers: list[Dispatcher] = []
    wakers: list[Callable[[], None]] = []

    def deliver(rt: Runtime) -> int:
        if not dispatchers or dispatchers[0].factory is not rt.session_factory:
            close()
            dispatchers[:] = [Dispatcher(rt.session_factory, sender_for(rt.settings))]
            dispatchers[0].wake = wakers[0] if wakers else None
        return dispatchers[0].pump()

    def start(wake: Callable[[], None]) -> None:
        wakers[:] = [wake]
        for dispatcher in dispatchers:
            dispatcher.wake = wake

    def close() -> None:
        for dispatcher in dispatchers:
            dispatcher.close()
        dispatchers.clear()

    return [
        Duty("webhook-outbox", 1.0, _scan, leader_only=True, essential=False),
        Duty(
            "webhook-deliver",
            1.0,
            deliver,
            leader_only=True,
            close=close,
            start=start,
            essential=False,
        ),
        Duty("idempotency-purge", 3600.0, _purge, leader_only=True, essential=False),
    ]
