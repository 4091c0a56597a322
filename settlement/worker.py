"""`cryptocity worker`: the settlement worker's main loop.

Each pass: notice a flushed Redis and rebuild it, relay events Redis missed, expire unpaid
invoices, refresh the BTC/KZT rate cache. The chain watchers and the ledger consumer join this
loop as their issues land. Every step is idempotent, so any number of workers may run.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from types import FrameType

from sqlalchemy.exc import OperationalError

from pos import invoices
from pos.db import utcnow
from pos.errors import CoordinationUnavailableError, RateUnavailableError
from pos.runtime import Runtime, open_runtime
from pos.settings import Settings

log = logging.getLogger(__name__)

PASS_INTERVAL_SECONDS = 1.0
RATE_REFRESH_SECONDS = 30.0


@dataclass
class WorkerState:
    holder: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}")
    last_rate_refresh: float = 0.0
    stop: threading.Event = field(default_factory=threading.Event)


def run_pass(rt: Runtime, state: WorkerState) -> dict[str, int]:
    """One round of every periodic duty; returns counts for logs and tests."""
    counts = {"rebuilt": 0, "relayed": 0, "expired": 0}
    if rt.coordinator.epoch() is None:
        log.warning("Redis has no live state (new or flushed): rebuilding from the database")
        counts["rebuilt"] = invoices.rebuild_live_state(
            rt.session_factory,
            rt.coordinator,
            rt.settings,
            progress=lambda done, total: log.info("rebuild: %d/%d invoices", done, total),
        )
    counts["relayed"] = invoices.relay_unpublished(rt.session_factory, rt.coordinator)
    with rt.session_factory() as session:
        expired = invoices.expire_due(session, utcnow())
        session.commit()
        invoices.publish_after_commit(rt.session_factory, rt.coordinator, session)
    counts["expired"] = len(expired)
    now = time.monotonic()
    if rt.settings.btc_rate_sources and now - state.last_rate_refresh >= RATE_REFRESH_SECONDS:
        state.last_rate_refresh = now
        try:
            quote = rt.rates.refresh(utcnow())
            rt.coordinator.cache_rate(quote, rt.settings.rate_max_age_seconds)
        except RateUnavailableError as exc:
            log.warning("%s", exc)
    return counts


def run_worker(settings: Settings, once: bool = False) -> int:
    rt = open_runtime(settings)
    state = WorkerState()

    def _stop(signum: int, _frame: FrameType | None) -> None:
        log.info("signal %d: finishing the current pass", signum)
        state.stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    log.info("worker %s started", state.holder)
    backoff = PASS_INTERVAL_SECONDS
    try:
        while not state.stop.is_set():
            try:
                counts = run_pass(rt, state)
                if any(counts.values()):
                    log.info("pass: %s", counts)
                backoff = PASS_INTERVAL_SECONDS
            except CoordinationUnavailableError as exc:
                # The database keeps everything; Redis is rebuilt when it is back.
                log.warning("Redis unavailable, retrying: %s", exc)
                backoff = min(backoff * 2, 30.0)
            except OperationalError as exc:
                log.warning("database unavailable, retrying: %s", exc.orig)
                backoff = min(backoff * 2, 30.0)
            if once:
                break
            state.stop.wait(backoff)
    finally:
        rt.close()
        log.info("worker stopped")
    sys.stdout.flush()
    return 0
