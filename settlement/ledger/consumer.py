"""The posting consumer: invoice events from the Redis Stream into the ledger, exactly once.

Stream path: consumer group `ledger` on `cc:events` (created with MKSTREAM). Each run first
reclaims (XAUTOCLAIM) entries another consumer read but never acknowledged for longer than
`reclaim_idle_ms` (it crashed), then reads new ones (XREADGROUP). An entry is acknowledged
only after the database commit of its posting; a crash in between means the entry is
delivered again, and the idempotency key (plus the handled-events row committed with the
posting) makes the second pass post nothing.

Database path: Redis may be flushed, or trim the stream, losing entries; `replay_from_database`
walks `invoice_events` from a checkpoint and posts every ledger event no consumer handled yet.
Both paths go through `posting.post_invoice_event`, so nothing ever posts twice.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from redis.exceptions import RedisError, ResponseError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from pos.coordination import EVENT_STREAM, Coordinator
from pos.db import utcnow
from pos.errors import CoordinationUnavailableError
from pos.models import InvoiceEvent
from pos.runtime import Runtime
from pos.settings import Settings
from settlement.ledger.models import HandledEvent, LedgerCheckpoint
from settlement.ledger.posting import LEDGER_EVENTS, post_invoice_event
from settlement.worker import Duty

log = logging.getLogger(__name__)

GROUP = "ledger"
RECLAIM_IDLE_MS = 60_000  # an unacknowledged entry this old belongs to a dead consumer
BATCH = 200
REPLAY_CHECKPOINT = "replay"
# Events can commit a little after their created_at; the replay re-reads this much history.
REPLAY_SAFETY = timedelta(minutes=10)
_BEGINNING = datetime(2000, 1, 1, tzinfo=UTC)
_LEDGER_TYPES = [e.value for e in LEDGER_EVENTS]

Message = tuple[str, dict[str, str] | None]


def consumer_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def process_event(
    factory: sessionmaker[Session], settings: Settings, event_id: str, attempts: int = 3
) -> bool:
    """Post one invoice event and commit; False when the database has no such event.

    A concurrent poster of the same invoice makes our flush fail on a unique key; we roll
    back and look again, and then find its work done.
    """
    for attempt in range(attempts):
        with factory() as session:
            event = session.get(InvoiceEvent, event_id)
            if event is None:
                return False
            try:
                post_invoice_event(session, settings, event)
                session.commit()
                return True
            except IntegrityError:
                session.rollback()
                if attempt == attempts - 1:
                    raise
                log.info("event %s was posted concurrently; checking again", event_id)
    return True  # unreachable: the loop returns or raises


@dataclass
class LedgerConsumer:
    """One member of the `ledger` consumer group."""

    factory: sessionmaker[Session]
    coordinator: Coordinator
    settings: Settings
    name: str = field(default_factory=consumer_name)
    reclaim_idle_ms: int = RECLAIM_IDLE_MS
    batch: int = BATCH
    _group_ready: bool = False

    def ensure_group(self) -> bool:
        """Create the group (and the stream) if missing; True when it was created now."""
        try:
            # From "0": a new group reads what the stream still holds; the replay does the rest.
            self.coordinator.client.xgroup_create(EVENT_STREAM, GROUP, id="0", mkstream=True)
            created = True
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise CoordinationUnavailableError(f"Redis refused the group: {exc}") from exc
            created = False
        except RedisError as exc:
            raise CoordinationUnavailableError(f"Redis is unavailable: {exc}") from exc
        self._group_ready = True
        return created

    def run_once(self) -> int:
        """Reclaim stale entries, then read new ones; returns how many entries were handled.

        A missing group means Redis lost the stream (flushed): recreate it and replay the
        database, since the entries that were in it are gone.
        """
        if not self._group_ready and self.ensure_group():
            replay_from_database(self.factory, self.settings)
        try:
            handled = self.handle(self._reclaim())
            handled += self.handle(self._read_new())
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise CoordinationUnavailableError(f"Redis refused the read: {exc}") from exc
            log.warning("the ledger group is gone (Redis flushed?): recreating and replaying")
            self._group_ready = False
            self.ensure_group()
            return replay_from_database(self.factory, self.settings)
        except RedisError as exc:
            raise CoordinationUnavailableError(f"Redis is unavailable: {exc}") from exc
        return handled

    def _reclaim(self) -> list[Message]:
        messages: list[Message] = []
        start = "0-0"
        while True:
            reply: Sequence[Any] = self.coordinator.client.xautoclaim(
                EVENT_STREAM, GROUP, self.name, self.reclaim_idle_ms, start, count=self.batch
            )
            start, claimed = str(reply[0]), reply[1]
            messages.extend(_messages(claimed))
            if start == "0-0" or len(messages) >= self.batch:
                return messages

    def _read_new(self) -> list[Message]:
        reply: Any = self.coordinator.client.xreadgroup(
            GROUP, self.name, {EVENT_STREAM: ">"}, count=self.batch
        )
        messages: list[Message] = []
        for _stream, items in reply or []:
            messages.extend(_messages(items))
        return messages

    def handle(self, messages: list[Message]) -> int:
        """Post each entry's event, commit, then acknowledge it (never before the commit)."""
        for message_id, fields in messages:
            event_id = (fields or {}).get("id", "")
            relevant = (fields or {}).get("type") in _LEDGER_TYPES and event_id
            if relevant and not process_event(self.factory, self.settings, event_id):
                # Events are published only after commit: this is a foreign or hand-made entry.
                log.warning("stream entry %s names an unknown event; skipped", message_id)
            self.ack(message_id)
        return len(messages)

    def ack(self, message_id: str) -> None:
        self.coordinator.client.xack(EVENT_STREAM, GROUP, message_id)


def _messages(items: Any) -> list[Message]:
    """Normalize redis-py's entries; an entry trimmed from the stream has no fields."""
    out: list[Message] = []
    for item in items or []:
        message_id, fields = item if item is not None else (None, None)
        if message_id is None:
            continue  # Redis 6.2's XAUTOCLAIM answers nil for entries trimmed meanwhile
        out.append((str(message_id), dict(fields) if fields else None))
    return out


def replay_from_database(
    factory: sessionmaker[Session], settings: Settings, batch: int = 500
) -> int:
    """Post every ledger event since the checkpoint that nothing handled yet; returns how many.

    Events are handled oldest first; each commit covers one event, so a crash loses nothing
    and a second replay finds nothing left to do.
    """
    started = utcnow()
    with factory() as session:
        checkpoint = session.get(LedgerCheckpoint, REPLAY_CHECKPOINT)
        since = _BEGINNING if checkpoint is None else checkpoint.position
    done = 0
    while True:
        with factory() as session:
            pending = session.scalars(
                select(InvoiceEvent.id)
                .outerjoin(HandledEvent, HandledEvent.event_id == InvoiceEvent.id)
                .where(
                    HandledEvent.event_id.is_(None),
                    InvoiceEvent.type.in_(_LEDGER_TYPES),
                    InvoiceEvent.created_at >= since,
                )
                .order_by(InvoiceEvent.created_at, InvoiceEvent.invoice_version)
                .limit(batch)
            ).all()
        if not pending:
            break
        for event_id in pending:
            process_event(factory, settings, event_id)
        done += len(pending)
    _advance_checkpoint(factory, started - REPLAY_SAFETY)
    if done:
        log.info("ledger replay posted %d events the stream had not delivered", done)
    return done


def _advance_checkpoint(factory: sessionmaker[Session], position: datetime) -> None:
    with factory() as session:
        checkpoint = session.get(LedgerCheckpoint, REPLAY_CHECKPOINT)
        if checkpoint is None:
            session.add(LedgerCheckpoint(name=REPLAY_CHECKPOINT, position=position))
        elif position > checkpoint.position:
            checkpoint.position, checkpoint.updated_at = position, utcnow()
        try:
            session.commit()
        except IntegrityError:
            session.rollback()  # another worker created it first; its position is as good


_consumers: dict[int, LedgerConsumer] = {}


def _consumer_for(rt: Runtime) -> LedgerConsumer:
    # One consumer per runtime, so the group check is done once per process.
    consumer = _consumers.get(id(rt))
    if consumer is None:
        consumer = LedgerConsumer(rt.session_factory, rt.coordinator, rt.settings)
        _consumers[id(rt)] = consumer
    return consumer


def consume(rt: Runtime) -> int:
    """Worker duty: one round of the stream consumer."""
    return _consumer_for(rt).run_once()


def replay(rt: Runtime) -> int:
    """Worker duty: the database replay (cheap when nothing was lost)."""
    return replay_from_database(rt.session_factory, rt.settings)


def duty() -> list[Duty]:
    """The ledger's duties for `settlement.worker.all_duties`."""
    return [
        Duty("ledger-consume", 0.5, consume),
        Duty("ledger-replay", 60.0, replay, leader_only=True),
    ]
