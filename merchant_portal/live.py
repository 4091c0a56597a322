"""Server-Sent Events for live invoice pages, fed from the Redis event stream.

Each connection tails `cc:events` (XREAD, short blocks that stay under the Redis client's
socket timeout), forwards the changes of one invoice, sends a comment line as a heartbeat so
proxies keep the connection open, and ends after a bounded lifetime (the browser's EventSource
reconnects by itself) or once the invoice is final. Missing a message is harmless: every
message carries the whole live state, and the page falls back to polling if the stream fails.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator

from redis.exceptions import RedisError
from sqlalchemy.orm import Session, sessionmaker

from pos import invoices
from pos.coordination import EVENT_STREAM, Coordinator
from pos.errors import CoordinationUnavailableError, NotFoundError

log = logging.getLogger(__name__)

BLOCK_MS = 1_500  # below the 3 s socket timeout of the shared Redis client
HEARTBEAT_SECONDS = 15.0
LIFETIME_SECONDS = 120.0
RETRY_MS = 2_000
FINAL_STATUSES = frozenset({"settled", "expired", "invalid"})


def live_payload(
    factory: sessionmaker[Session], coordinator: Coordinator, invoice_id: str
) -> dict[str, object]:
    """The live state of an invoice as the pages consume it (status.json and SSE alike)."""
    with factory() as session:
        live = invoices.live_view(session, coordinator, invoice_id)
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
    try:
        last_id = stream_tail(coordinator)
        payload = live_payload(factory, coordinator, invoice_id)
    except (CoordinationUnavailableError, NotFoundError) as exc:
        yield _message({"reason": str(exc)}, "fallback")
        return
    yield _message(payload)
    last_sent = time.monotonic()
    while payload["status"] not in FINAL_STATUSES and time.monotonic() < deadline:
        try:
            entries = coordinator.read_events(last_id, BLOCK_MS)
        except CoordinationUnavailableError as exc:
            log.warning("live stream for %s ends: %s", invoice_id, exc)
            yield _message({"reason": "live updates paused"}, "fallback")
            return
        changed = False
        for entry_id, fields in entries:
            last_id = entry_id
            changed = changed or fields.get("invoice") == invoice_id
        if changed:
            payload = live_payload(factory, coordinator, invoice_id)
            yield _message(payload, event_id=last_id)
            last_sent = time.monotonic()
        elif time.monotonic() - last_sent >= heartbeat_seconds:
            yield ": heartbeat\n\n"
            last_sent = time.monotonic()
    yield _message({"reason": "reconnect"}, "bye")
