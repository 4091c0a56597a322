"""Server-Sent Events for live invoice pages, fed from the Redis event stream.

One reader per web process (`EventHub`) tails `cc:events`, reads the new live state of every
watched invoice an event batch touched in one pipelined round, and wakes only the connections
watching those invoices: ten thousand open checkout pages cost one XREAD and one pipeline per
batch, not ten thousand Redis calls. Each connection forwards the changes of one invoice, sends
a comment line as a heartbeat so proxies keep the connection open, and ends after a bounded
lifetime (the browser's EventSource reconnects by itself) or once the invoice is final. Missing
a message is harmless: every message carries the whole live state, and the page falls back to
polling status.json if the stream fails or is refused (`live_limits`: caps per client address
and per invoice).

The web server runs gevent workers (`merchant_portal.server`): the reader and every stream are
greenlets, and the `threading` primitives below are gevent's once gunicorn has monkey-patched
the worker, so a waiting stream holds no OS thread. The same code runs on real threads under
the Flask test client and werkzeug.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator

import redis
from redis.exceptions import RedisError
from sqlalchemy.orm import Session, sessionmaker

from pos import invoices
from pos.coordination import EVENT_STREAM, Coordinator, invoice_key
from pos.errors import CoordinationUnavailableError, NotFoundError
from pos.redis_guard import CircuitBreaker

log = logging.getLogger(__name__)

BLOCK_MS = 1_500  # below the 3 s socket timeout of the shared Redis client
HEARTBEAT_SECONDS = 15.0
READER_SLACK_SECONDS = 10.0
READ_FAILURES_BEFORE_PAUSE = 3  # consecutive failed reads before live pages fall back
RETRY_PAUSE_SECONDS = 0.2  # between them: a blip, not a tight loop
LIFETIME_SECONDS = 120.0
RETRY_MS = 2_000
FINAL_STATUSES = frozenset({"settled", "expired", "invalid"})


def live_payload(
    factory: sessionmaker[Session], coordinator: Coordinator, invoice_id: str
) -> dict[str, object]:
    """The live state of an invoice as the pages consume it (status.json and SSE alike)."""
    with factory() as session:
        live = invoices.live_view(session, coordinator, invoice_id)
    return _payload(invoice_id, live)


def _payload(invoice_id: str, live: dict[str, str]) -> dict[str, object]:
    return {
        "id": invoice_id,
        "status": live["status"],
        "flags": [f for f in live.get("flags", "").split(",") if f],
        "paid_atomic": int(live["paid"]),
        "due_atomic": int(live["due"]),
        "expires_at": int(live["exp"]),
        "version": int(live["version"]),
    }


def stream_tail(coordinator: Coordinator) -> str:
    """The id of the newest stream entry, so a new listener misses nothing after its snapshot."""
    try:
        newest = coordinator.client.xrevrange(EVENT_STREAM, count=1)
    except RedisError as exc:
        raise CoordinationUnavailableError(f"Redis is unavailable: {exc}") from exc
    return str(newest[0][0]) if newest else "0-0"


def _message(payload: dict[str, object], event: str = "status", event_id: str = "") -> str:
    head = f"id: {event_id}\n" if event_id else ""
    return f"{head}event: {event}\ndata: {json.dumps(payload, sort_keys=True)}\n\n"


class EventHub:
    """Tails the event stream once per process and wakes the waiters of each invoice."""

    def __init__(self, coordinator: Coordinator) -> None:
        self.coordinator = coordinator
        self._lock = threading.Lock()
        self._changed: dict[str, threading.Condition] = {}
        self._counts: dict[str, int] = {}  # events seen per watched invoice
        self._latest: dict[str, dict[str, object]] = {}  # its state read after the last one
        self._waiters: dict[str, int] = {}
        self._healthy = True
        self._thread: threading.Thread | None = None

    def _ensure_reader(self) -> None:
        # Started on first use, in the serving process (never at import, never before a fork);
        # called with the lock held, so at most one reader runs.
        if self._thread is None or not self._thread.is_alive():
            # Where the new reader starts is decided here, before the caller takes its
            # snapshot: a thread that looked up the tail itself, later, could start after an
            # event the snapshot already missed, and that page would wait for nothing.
            try:
                start = stream_tail(self.coordinator)
            except CoordinationUnavailableError:
                start = "$"  # Redis is down: the snapshot fails too, the page polls
            self._thread = threading.Thread(
                target=self._read, args=(start,), name="sse-hub", daemon=True
            )
            self._thread.start()

    def _read(self, start: str) -> None:
        # A connection of its own: the long XREADs never share a socket with request code.
        pool = self.coordinator.client.connection_pool
        # Its socket timeout sits well above the XREAD block: on a busy machine a blocked read
        # answers late, and a late answer is not an unavailable Redis.
        timeout = BLOCK_MS / 1000 + READER_SLACK_SECONDS
        # And a circuit breaker of its own: a web request's Redis timeout opens the shared
        # client's breaker, which must not fail this reader's next reads in microseconds.
        kwargs = {
            **pool.connection_kwargs,
            "socket_timeout": timeout,
            "cc_breaker": CircuitBreaker(),
        }
        client = redis.Redis(
            connection_pool=type(pool)(connection_class=pool.connection_class, **kwargs)
        )
        reader = Coordinator(client)
        try:
            self._read_with(reader, start)
        finally:
            client.close()
            pool_of_reader = client.connection_pool
            pool_of_reader.disconnect()

    def _read_with(self, reader: Coordinator, start: str) -> None:
        last_id = start
        failures = 0
        while True:
            with self._lock:
                if not self._changed:
                    self._thread = None
                    return  # nobody is watching: the next subscriber starts a new reader
            try:
                if last_id == "$":
                    last_id = stream_tail(reader)
                entries = reader.read_events(last_id, BLOCK_MS, count=1_000)
                self._healthy = True
            except CoordinationUnavailableError as exc:
                failures += 1
                if failures < READ_FAILURES_BEFORE_PAUSE:
                    # One dropped read (a closed or slow connection) is retried at once from
                    # the same id, so no event is missed and no page is sent to polling.
                    log.info("live event hub: read failed, retrying: %s", exc)
                    time.sleep(RETRY_PAUSE_SECONDS)
                    continue
                log.warning("live event hub paused: %s", exc)
                self._set_unhealthy()
                time.sleep(1.0)
                last_id = "$"  # resume at the tail: pages re-read their state on reconnect
                continue
            failures = 0
            if not entries:
                continue
            last_id = entries[-1][0]
            with self._lock:
                touched = {fields.get("invoice", "") for _entry_id, fields in entries}
                watched = [i for i in touched if i in self._changed]
            states = self._read_states(reader, watched)
            with self._lock:
                for invoice_id in watched:
                    condition = self._changed.get(invoice_id)
                    if condition is None:
                        continue  # its last page left while the states were read
                    self._counts[invoice_id] += 1
                    if invoice_id in states:
                        self._latest[invoice_id] = states[invoice_id]
                    else:
                        self._latest.pop(invoice_id, None)  # each page reads it itself
                    condition.notify_all()

    @staticmethod
    def _read_states(reader: Coordinator, invoice_ids: list[str]) -> dict[str, dict[str, object]]:
        """The live state of each invoice after its events, in one pipeline. Read after the
        stream entries, and Redis writes state and entry in one script: never older than the
        events. Missing ones (Redis lost them, or the read failed) are left to the pages."""
        if not invoice_ids:
            return {}
        pipe = reader.client.pipeline(transaction=False)
        for invoice_id in invoice_ids:
            pipe.hgetall(invoice_key(invoice_id))
        try:
            replies = pipe.execute()
        except RedisError as exc:
            log.info("live event hub: state read failed, pages read it: %s", exc)
            return {}
        states: dict[str, dict[str, object]] = {}
        for invoice_id, live in zip(invoice_ids, replies, strict=True):
            if live:
                states[invoice_id] = _payload(invoice_id, live)
        return states

    def _set_unhealthy(self) -> None:
        with self._lock:
            self._healthy = False
            for condition in self._changed.values():
                condition.notify_all()

    def subscribe(self, invoice_id: str) -> int:
        """Start watching an invoice; returns the event count to pass to `wait`."""
        with self._lock:
            if invoice_id not in self._changed:
                self._changed[invoice_id] = threading.Condition(self._lock)
                self._counts[invoice_id] = 0
            self._waiters[invoice_id] = self._waiters.get(invoice_id, 0) + 1
            self._ensure_reader()
            return self._counts[invoice_id]

    def unsubscribe(self, invoice_id: str) -> None:
        with self._lock:
            self._waiters[invoice_id] -= 1
            if self._waiters[invoice_id] == 0:
                del self._waiters[invoice_id], self._changed[invoice_id], self._counts[invoice_id]
                self._latest.pop(invoice_id, None)

    def latest(self, invoice_id: str) -> dict[str, object] | None:
        """The state the reader fetched after the invoice's last event (None: read it)."""
        with self._lock:
            return self._latest.get(invoice_id)

    def wait(self, invoice_id: str, seen: int, timeout: float) -> int:
        """Block until the invoice has an event after `seen` (or the timeout); the new count.

        Raises CoordinationUnavailableError while the hub cannot read Redis.
        """
        with self._lock:
            self._changed[invoice_id].wait_for(
                lambda: self._counts[invoice_id] != seen or not self._healthy, timeout
            )
            if not self._healthy:
                raise CoordinationUnavailableError("live updates paused")
            return self._counts[invoice_id]


_HUBS: dict[int, EventHub] = {}
_HUBS_LOCK = threading.Lock()


def hub_for(coordinator: Coordinator) -> EventHub:
    """The process's hub for this Redis connection."""
    with _HUBS_LOCK:
        hub = _HUBS.get(id(coordinator))
        if hub is None or hub.coordinator is not coordinator:
            hub = _HUBS[id(coordinator)] = EventHub(coordinator)
        return hub


def invoice_events(
    factory: sessionmaker[Session],
    coordinator: Coordinator,
    invoice_id: str,
    lifetime_seconds: float = LIFETIME_SECONDS,
    heartbeat_seconds: float = HEARTBEAT_SECONDS,
) -> Iterator[str]:
    """Yield SSE messages for one invoice: its state now, then on every event, until done."""
    deadline = time.monotonic() + lifetime_seconds
    yield f"retry: {RETRY_MS}\n\n"
    hub = hub_for(coordinator)
    seen = hub.subscribe(invoice_id)  # before the snapshot, so no event falls in between
    try:
        try:
            payload = live_payload(factory, coordinator, invoice_id)
        except (CoordinationUnavailableError, NotFoundError) as exc:
            yield _message({"reason": str(exc)}, "fallback")
            return
        yield _message(payload)
        while payload["status"] not in FINAL_STATUSES and time.monotonic() < deadline:
            wait = min(heartbeat_seconds, max(deadline - time.monotonic(), 0.0))
            try:
                count = hub.wait(invoice_id, seen, wait)
            except CoordinationUnavailableError as exc:
                log.warning("live stream for %s ends: %s", invoice_id, exc)
                yield _message({"reason": "live updates paused"}, "fallback")
                return
            if count != seen:
                seen = count
                sent = payload
                payload = hub.latest(invoice_id) or live_payload(factory, coordinator, invoice_id)
                # One change is often several stream entries (the payment, then the status),
                # read in one batch or in two: the page hears each state once.
                if payload != sent:
                    yield _message(payload, event_id=str(payload["version"]))
            else:
                yield ": heartbeat\n\n"
        yield _message({"reason": "reconnect"}, "bye")
    finally:
        hub.unsubscribe(invoice_id)
