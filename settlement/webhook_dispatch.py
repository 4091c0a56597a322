"""The webhook dispatcher's engine: concurrent POSTs, limited per receiver, each under a
wall-clock deadline; attempts recorded only after the receiver answered (settlement.webhooks
explains the whole flow)."""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Collection, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar
from urllib.parse import urlsplit

from sqlalchemy import func, select
from sqlalchemy.orm import InstrumentedAttribute, Session, sessionmaker

from pos.db import utcnow
from pos.integrations import (
    ApiInvoiceExtra,
    DeliveryStatus,
    Webhook,
    WebhookDelivery,
    sign_payload,
)
from pos.models import Invoice, InvoiceEvent
from settlement.webhook_http import HttpResult, Sender, http_post

log = logging.getLogger(__name__)

DELIVER_BATCH = 1000  # due deliveries looked at per run of the duty
DEADLINE_SECONDS = 4.0  # per delivery, wall clock: connect, send, status line and headers
RECEIVER_CONCURRENCY = 4  # POSTs in flight at once to one receiver
WORKERS = 64  # POSTs in flight at once in all (so 16 hung receivers before others wait)
RECEIVER_QUEUE = 200  # deliveries queued per receiver; more wait in the database
RUN_BUDGET_SECONDS = 1.0  # a run of the duty waits this long at most for its deliveries
BACKOFF_BASE_SECONDS = 30.0
BACKOFF_CAP_SECONDS = 2 * 3600.0
USER_AGENT = "CryptoCity-Webhooks/1"
_IN_CHUNK = 500  # ids per IN (...) list: below every backend's parameter limit

T = TypeVar("T")


def backoff(attempts: int, rng: random.Random | None = None) -> timedelta:
    """Exponential from 30 s, capped at 2 h, with jitter so retries of many events spread."""
    ceiling = min(BACKOFF_BASE_SECONDS * 2 ** max(attempts - 1, 0), BACKOFF_CAP_SECONDS)
    return timedelta(seconds=ceiling * (rng or random).uniform(0.5, 1.0))


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


def receiver_of(url: str) -> str:
    """Who answers a URL, for the concurrency limit: scheme, host and port."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    return f"{parts.scheme}://{(parts.hostname or '').lower()}:{port or ''}"


@dataclass(frozen=True)
class _Job:
    """One POST, prepared from the database; signed only when it is sent."""

    delivery_id: int
    receiver: str
    url: str
    body: bytes
    secret: str
    event_id: str
    event_type: str
    now: datetime | None  # a fixed clock (tests, `deliver_due(now=…)`), else the real one

    def headers(self, at: datetime) -> dict[str, str]:
        return {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "CryptoCity-Event-Id": self.event_id,
            "CryptoCity-Event-Type": self.event_type,
            "CryptoCity-Signature": sign_payload(self.secret, int(at.timestamp()), self.body),
        }


@dataclass
class _Lane:
    """One receiver's queue and the POSTs to it in flight (at most the concurrency limit)."""

    queue: deque[_Job] = field(default_factory=deque)
    in_flight: int = 0


def _chunks(ids: Collection[T]) -> Iterable[list[T]]:
    items = list(ids)
    for start in range(0, len(items), _IN_CHUNK):
        yield items[start : start + _IN_CHUNK]


def _by_id(
    session: Session, model: type[Any], column: InstrumentedAttribute[Any], ids: Collection[Any]
) -> dict[Any, Any]:
    found: dict[Any, Any] = {}
    for chunk in _chunks(ids):
        for row in session.scalars(select(model).where(column.in_(chunk))):
            found[getattr(row, column.key)] = row
    return found


class Dispatcher:
    """Concurrent, per-receiver-limited delivery of due webhooks (see the module docstring).

    `pump()` is one run of the worker's duty: it records what finished since the last run,
    queues newly due deliveries and waits a little for them. Results are written to the
    database in batches, always after the receiver answered.
    """

    def __init__(
        self,
        factory: sessionmaker[Session],
        sender: Sender = http_post,
        *,
        deadline_seconds: float = DEADLINE_SECONDS,
        per_receiver: int = RECEIVER_CONCURRENCY,
        workers: int = WORKERS,
    ) -> None:
        self.factory = factory
        self.sender = sender
        self.deadline_seconds = deadline_seconds
        self.per_receiver = max(1, per_receiver)
        self.workers = max(1, workers)
        self.wake: Callable[[], None] | None = None  # the duty's waker: run again soon
        self._changed = threading.Condition()
        self._lanes: dict[str, _Lane] = {}
        self._known: set[int] = set()  # queued, in flight, or answered and not yet recorded
        self._results: list[tuple[_Job, HttpResult, datetime]] = []
        self._failure: BaseException | None = None
        self._recorded = 0
        self._closing = False
        self._executor: ThreadPoolExecutor | None = None

    # --- one run of the duty --------------------------------------------------------------
    def pump(
        self,
        now: datetime | None = None,
        budget_seconds: float | None = RUN_BUDGET_SECONDS,
        batch: int = DELIVER_BATCH,
    ) -> int:
        """Queue the due deliveries and wait for them (at most `budget_seconds`; None: until
        every one is answered); returns how many attempts were recorded since the last run.

        An exception from the sender or the database is raised here (the duty backs off);
        the deliveries it hit stay pending and are sent again.
        """
        self._raise_failure()
        self._record(self._take_results())
        due_at = now or utcnow()
        with self.factory() as session:
            ids = self._due(session, due_at, batch)
            jobs = self._jobs(session, ids, now)
        fresh = self._enqueue(jobs)
        if self._wait(budget_seconds, fresh) and self.wake is not None:
            self.wake()  # a receiver answered all while others are slow: more may be due
        with self._changed:
            recorded, self._recorded = self._recorded, 0
        self._raise_failure()
        return recorded

    def _due(self, session: Session, now: datetime, batch: int) -> list[int]:
        """Due deliveries, oldest first, at most a queue's worth per webhook, so one webhook's
        backlog never hides another's."""
        with self._changed:
            known = set(self._known)
        rank = (
            func.row_number()
            .over(
                partition_by=WebhookDelivery.webhook_id,
                order_by=(WebhookDelivery.next_attempt_at, WebhookDelivery.id),
            )
            .label("rank")
        )
        ranked = (
            select(WebhookDelivery.id, WebhookDelivery.next_attempt_at, rank)
            .join(Webhook, Webhook.id == WebhookDelivery.webhook_id)
            .where(
                WebhookDelivery.status == DeliveryStatus.PENDING,
                WebhookDelivery.next_attempt_at <= now,
                Webhook.active,
            )
            .subquery()
        )
        rows = session.execute(
            select(ranked.c.id)
            .where(ranked.c.rank <= RECEIVER_QUEUE + len(known))
            .order_by(ranked.c.next_attempt_at, ranked.c.id)
            .limit(batch + len(known))
        ).scalars()
        return [i for i in rows if i not in known][:batch]

    def _jobs(self, session: Session, ids: list[int], now: datetime | None) -> list[_Job]:
        """Everything the POSTs need, read in a few queries; no transaction stays open."""
        deliveries = _by_id(session, WebhookDelivery, WebhookDelivery.id, ids)
        hooks = _by_id(session, Webhook, Webhook.id, {d.webhook_id for d in deliveries.values()})
        events = _by_id(
            session, InvoiceEvent, InvoiceEvent.id, {d.event_id for d in deliveries.values()}
        )
        invoice_ids = {e.invoice_id for e in events.values()}
        invoices = _by_id(session, Invoice, Invoice.id, invoice_ids)
        extras = _by_id(session, ApiInvoiceExtra, ApiInvoiceExtra.invoice_id, invoice_ids)
        jobs: list[_Job] = []
        for delivery_id in ids:
            delivery = deliveries.get(delivery_id)
            if delivery is None or delivery.status is not DeliveryStatus.PENDING:
                continue
            hook, event = hooks.get(delivery.webhook_id), events.get(delivery.event_id)
            invoice = invoices.get(event.invoice_id) if event is not None else None
            if hook is None or event is None or invoice is None:
                continue
            body = event_body(event, invoice, extras.get(invoice.id))
            jobs.append(
                _Job(
                    delivery_id,
                    receiver_of(hook.url),
                    hook.url,
                    body,
                    hook.secret,
                    event.id,
                    event.type,
                    now,
                )
            )
        session.rollback()  # hold no transaction open across the network calls
        return jobs

    # --- lanes ------------------------------------------------------------------------------
    def _enqueue(self, jobs: list[_Job]) -> set[str]:
        """Queue the jobs on their receivers' lanes; returns the receivers that got some."""
        fresh: set[str] = set()
        with self._changed:
            for job in jobs:
                lane = self._lanes.setdefault(job.receiver, _Lane())
                if len(lane.queue) + lane.in_flight >= RECEIVER_QUEUE:
                    continue  # the rest waits in the database for a later run
                lane.queue.append(job)
                self._known.add(job.delivery_id)
                fresh.add(job.receiver)
            for receiver, lane in self._lanes.items():
                self._start(receiver, lane)
            for receiver in [r for r, lane in self._lanes.items() if _idle(lane)]:
                del self._lanes[receiver]
        return fresh

    def _start(self, receiver: str, lane: _Lane) -> None:
        """Put the lane's next deliveries in flight, up to its limit (lock held).

        Each task sends one delivery and then starts the lane's next one, so the shared
        threads serve every lane in turn and a slow lane never keeps one for long.
        """
        while not self._closing and lane.queue and lane.in_flight < self.per_receiver:
            job = lane.queue.popleft()
            lane.in_flight += 1
            if self._executor is None:
                self._executor = ThreadPoolExecutor(self.workers, thread_name_prefix="webhook")
            self._executor.submit(self._send, receiver, lane, job)

    def _send(self, receiver: str, lane: _Lane, job: _Job) -> None:
        try:
            at = job.now or utcnow()
            result = self.sender(job.url, job.body, job.headers(at), self.deadline_seconds)
        except BaseException as exc:  # reported by the next pump; the delivery stays pending
            with self._changed:
                self._failure = self._failure or exc
                self._known.discard(job.delivery_id)
                lane.in_flight -= 1
                self._changed.notify_all()
            return
        with self._changed:
            self._results.append((job, result, job.now or utcnow()))
            lane.in_flight -= 1
            if self._failure is None:
                self._start(receiver, lane)
            self._changed.notify_all()
        if self.wake is not None:
            self.wake()  # record it soon even when no run is waiting

    def _wait(self, budget_seconds: float | None, fresh: set[str]) -> bool:
        """Record results as they come until every lane is idle or the budget is spent.

        With a budget, return early (True) once a receiver that got work in this run has
        answered all of it while others are still busy: a slow receiver must not hold back
        the next run (and the fast receiver's next deliveries).
        """
        deadline = None if budget_seconds is None else time.monotonic() + budget_seconds
        while True:
            self._record(self._take_results())
            with self._changed:
                if self._results:
                    continue
                if self._failure is not None or all(map(_idle, self._lanes.values())):
                    return False
                answered = any(_idle(self._lanes.get(r) or _Lane()) for r in fresh)
                if deadline is not None and answered:
                    return True
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._changed.wait(left)

    # --- results ----------------------------------------------------------------------------
    def _take_results(self) -> list[tuple[_Job, HttpResult, datetime]]:
        with self._changed:
            taken, self._results = self._results, []
        return taken

    def _record(self, results: list[tuple[_Job, HttpResult, datetime]]) -> None:
        """Write the attempts in one transaction; only now, after each answer, is it marked."""
        if not results:
            return
        ids = [job.delivery_id for job, _r, _at in results]
        try:
            with self.factory() as session:
                deliveries = _by_id(session, WebhookDelivery, WebhookDelivery.id, ids)
                for job, result, at in results:
                    delivery = deliveries.get(job.delivery_id)
                    if delivery is not None:  # None: the webhook was deleted meanwhile
                        record_attempt(session, delivery, result, at)
                session.commit()
        finally:
            with self._changed:  # recorded, or (the commit failed) to be sent again
                self._known.difference_update(ids)
        with self._changed:
            self._recorded += len(results)

    def _raise_failure(self) -> None:
        with self._changed:
            failure, self._failure = self._failure, None
        if failure is not None:
            raise failure

    # --- stop -------------------------------------------------------------------------------
    def close(self, timeout: float | None = None) -> None:
        """Stop starting POSTs, let those in flight finish (bounded by their deadline) and
        record them; queued ones stay pending in the database for the next leader."""
        limit = time.monotonic() + (self.deadline_seconds + 1.0 if timeout is None else timeout)
        with self._changed:
            self._closing = True
            for lane in self._lanes.values():
                self._known.difference_update(job.delivery_id for job in lane.queue)
                lane.queue.clear()
            while any(lane.in_flight for lane in self._lanes.values()):
                left = limit - time.monotonic()
                if left <= 0:
                    break
                self._changed.wait(left)
        try:
            self._record(self._take_results())
        except Exception:  # they stay pending: sent again, at-least-once
            log.exception("could not record the last webhook attempts")
        if self._executor is not None:
            self._executor.shutdown(wait=False)


def _idle(lane: _Lane) -> bool:
    return not lane.queue and not lane.in_flight
