"""`cryptocity worker`: the settlement worker's main loop.

The worker runs a list of duties, each on its own interval: notice a flushed Redis and rebuild
it, relay events Redis missed, expire unpaid invoices, refresh the BTC/KZT rate cache, and — as
their modules register — the chain watchers, the ledger consumer and the webhook dispatcher.
Every duty is idempotent, so any number of workers may run; a duty marked `leader_only` runs in
one worker at a time under a Redis lease.

Resilience: a duty that raises (a bug, a lost race, a locked or unreachable database) is
logged — its traceback once per streak — and backed off; the other duties go on. Redis being
unreachable pauses the whole pass instead (every duty needs it); in demo mode the worker then
restarts the embedded Redis. On SIGTERM / SIGINT it finishes the pass, releases every lease it
holds, and exits, so another worker takes over at once. Each successful run of a duty is noted
in `cc:heartbeat` (see pos.coordination).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import FrameType

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from pos import invoices
from pos.db import utcnow
from pos.errors import CoordinationUnavailableError, RateUnavailableError
from pos.runtime import Runtime, open_runtime
from pos.settings import Settings
from pos.states import PaymentMethod
from settlement.chain_state import ChainCursor

log = logging.getLogger(__name__)

TICK_SECONDS = 0.25
LEASE_MS = 15_000
MAX_DUTY_BACKOFF_SECONDS = 30.0


@dataclass
class Duty:
    """One periodic job of the worker; `run` returns how much work it did (for the logs)."""

    name: str
    interval_seconds: float
    run: Callable[[Runtime], int]
    leader_only: bool = False
    close: Callable[[], None] | None = None  # release connections when the worker stops
    # Called once at start with a function that makes this duty run at the next tick
    # (push signals such as bitcoind's ZMQ; the interval stays the floor).
    start: Callable[[Callable[[], None]], None] | None = None
    woken: threading.Event = field(default_factory=threading.Event)
    next_due: float = 0.0
    failures: int = 0  # consecutive runs that raised; sets the back-off
    failure: str | None = None  # the current streak's error, so its traceback is logged once


@dataclass
class WorkerState:
    holder: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}")
    stop: threading.Event = field(default_factory=threading.Event)
    tick: threading.Event = field(default_factory=threading.Event)  # wakes the main loop


def rebuild_if_flushed(rt: Runtime) -> int:
    if rt.coordinator.epoch() is not None:
        return 0
    log.warning("Redis has no live state (new or flushed): rebuilding from the database")
    return invoices.rebuild_live_state(
        rt.session_factory,
        rt.coordinator,
        rt.settings,
        progress=lambda done, total: log.info("rebuild: %d/%d invoices", done, total),
    )


def relay_events(rt: Runtime) -> int:
    return invoices.relay_unpublished(rt.session_factory, rt.coordinator)


def make_expire_duty(watched: frozenset[PaymentMethod] = frozenset()) -> Duty:
    """Expire unpaid invoices; for methods in `watched` only up to their watcher's watermark."""

    def expire_invoices(rt: Runtime) -> int:
        cutoffs = {method: rt.coordinator.watermark(method.value) for method in watched}
        with rt.session_factory() as session:
            expired = invoices.expire_due(session, utcnow(), cutoffs=cutoffs)
            session.commit()
            invoices.publish_after_commit(rt.session_factory, rt.coordinator, session)
        return len(expired)

    return Duty("expire-invoices", 1.0, expire_invoices)


def refresh_rates(rt: Runtime) -> int:
    if not rt.settings.btc_rate_sources:
        return 0
    try:
        quote = rt.rates.refresh(utcnow())
    except RateUnavailableError as exc:
        log.warning("%s", exc)
        return 0
    rt.coordinator.cache_rate(quote, rt.settings.rate_max_age_seconds)
    return 1


def core_duties(watched: frozenset[PaymentMethod] = frozenset()) -> list[Duty]:
    return [
        Duty("rebuild-if-flushed", 1.0, rebuild_if_flushed),
        Duty("relay-events", 1.0, relay_events),
        make_expire_duty(watched),
        Duty("refresh-rates", 30.0, refresh_rates),
    ]


def all_duties(settings: Settings) -> list[Duty]:
    """Every duty this worker runs, in order (the order matters only within one tick).

    Rebuild and relay come first so the watch index is complete before any watcher scans.
    """
    # Imported here: these modules import Duty from this one.
    from settlement import btc_watcher, kzte_watcher, webhooks
    from settlement.ledger import consumer as ledger_consumer

    return [
        *core_duties(watched=frozenset({PaymentMethod.BTC, PaymentMethod.KZTE})),
        btc_watcher.duty(settings.bitcoin_zmq_url),
        kzte_watcher.duty(),
        *webhooks.duty(),
        *ledger_consumer.duty(),
    ]


def recorded_fence(rt: Runtime, chain: str) -> int:
    """The highest fencing token the database holds for a chain watcher's checkpoint.

    Pass it as `floor` to `Coordinator.acquire_lease`, so a flushed Redis cannot hand out a
    token below the one in `chain_cursors` (the checkpoint would refuse every write).
    """
    with rt.session_factory() as session:
        fence = session.scalar(select(ChainCursor.fence).where(ChainCursor.chain == chain))
    return fence or 0


def run_pass(
    rt: Runtime, duties: list[Duty], state: WorkerState, force: bool = False
) -> dict[str, int]:
    """Run every duty that is due (or all of them with `force`); returns work counts.

    A duty that raises is logged and backed off; the others still run. Redis being
    unreachable ends the pass (CoordinationUnavailableError): every duty needs it.
    """
    counts: dict[str, int] = {}
    now = time.monotonic()
    for duty in duties:
        if not force and now < duty.next_due and not duty.woken.is_set():
            continue
        duty.woken.clear()
        duty.next_due = now + duty.interval_seconds
        if (
            duty.leader_only
            and rt.coordinator.acquire_lease(duty.name, state.holder, LEASE_MS) is None
        ):
            continue  # another worker leads this duty
        try:
            counts[duty.name] = duty.run(rt)
        except CoordinationUnavailableError:
            raise  # every duty needs Redis: the worker backs off (and revives it) as a whole
        except (RedisConnectionError, RedisTimeoutError) as exc:  # a duty's own Redis call
            raise CoordinationUnavailableError(f"Redis is unavailable: {exc}") from exc
        except Exception as exc:  # one duty's bug (or a locked database) must not stop the others
            _duty_failed(duty, exc, now)
            continue
        if duty.failures:
            log.info("duty %s works again after %d failed runs", duty.name, duty.failures)
            duty.failures, duty.failure = 0, None
    rt.coordinator.record_heartbeats(utcnow(), counts)
    return counts


def _duty_failed(duty: Duty, exc: Exception, now: float) -> None:
    """Log (the traceback once per streak of the same error) and back the duty off."""
    duty.failures += 1
    signature = f"{type(exc).__name__}: {exc}"
    delay = min(
        max(duty.interval_seconds, 1.0) * 2 ** min(duty.failures - 1, 8), MAX_DUTY_BACKOFF_SECONDS
    )
    if signature == duty.failure:
        log.warning("duty %s failed again (%d in a row): %s", duty.name, duty.failures, signature)
    elif isinstance(exc, OperationalError):  # the database is away or locked: no bug to trace
        log.warning(
            "duty %s: database unavailable, retrying in %.0f s: %s", duty.name, delay, exc.orig
        )
    else:
        log.exception("duty %s failed; retrying it in %.0f s", duty.name, delay)
    duty.failure = signature
    duty.next_due = now + delay


def _waker(duty: Duty, state: WorkerState) -> Callable[[], None]:
    def wake() -> None:
        duty.woken.set()
        state.tick.set()

    return wake


def run_worker(settings: Settings, once: bool = False) -> int:
    duties = all_duties(settings)
    rt = open_runtime(settings)
    state = WorkerState()

    def _stop(signum: int, _frame: FrameType | None) -> None:
        log.info("signal %d: finishing the current pass", signum)
        state.stop.set()
        state.tick.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    for duty in duties:
        if duty.start is not None:
            duty.start(_waker(duty, state))
    log.info("worker %s started: %s", state.holder, ", ".join(d.name for d in duties))
    backoff = TICK_SECONDS
    try:
        while not state.stop.is_set():
            try:
                counts = run_pass(rt, duties, state, force=once)
                if any(counts.values()):
                    log.info("pass: %s", {k: v for k, v in counts.items() if v})
                backoff = TICK_SECONDS
            except CoordinationUnavailableError as exc:
                # The database keeps everything; Redis is rebuilt when it is back. In demo
                # mode the embedded Redis is ours to bring back.
                log.warning("Redis unavailable, retrying: %s", exc)
                backoff = TICK_SECONDS if rt.revive_redis() else min(backoff * 2, 30.0)
            except OperationalError as exc:
                log.warning("database unavailable, retrying: %s", exc.orig)
                backoff = min(backoff * 2, 30.0)
            if once:
                break
            state.tick.wait(backoff)
            state.tick.clear()
    finally:
        _release_leases(rt)
        for duty in duties:
            if duty.close is not None:
                duty.close()
        rt.close()
        log.info("worker stopped")
    return 0


def _release_leases(rt: Runtime) -> None:
    """Hand every lease back (only those still ours), so the next worker leads at once."""
    try:
        released = rt.coordinator.release_leases()
    except CoordinationUnavailableError as exc:  # they expire by their TTL anyway
        log.warning("could not release the leases: %s", exc)
        return
    if released:
        log.info("released %d lease(s)", released)
