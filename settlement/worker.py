"""`cryptocity worker`: the settlement worker.

The worker runs a list of duties, each on its own interval: notice a flushed Redis and rebuild
it, relay events Redis missed, expire unpaid invoices, refresh the BTC/KZT rate cache, and — as
their modules register — the chain watchers, the ledger booking and the webhook dispatcher.
Every duty is idempotent, so any number of workers may run; a duty marked `leader_only` runs in
one worker at a time under a Redis lease, renewed before each of its runs.

Isolation: `run_worker` gives each duty its own thread (settlement.duty_runner) with its own
schedule, wake-ups, back-off and heartbeat, so a hung node or a slow webhook receiver delays only
its own duty; a thread that dies is restarted. `run_pass` runs the due duties one after another
in the caller's thread: the synchronous form that tests and `--once` use.

Resilience: a duty that raises (a bug, a lost race, a locked or unreachable database) is
logged — its traceback once per streak — and backed off; the other duties go on. Redis being
unreachable backs the duty off too, and in demo mode the worker restarts the embedded Redis.
On SIGTERM / SIGINT each duty finishes its run, the worker releases every lease it holds and
exits, so another worker takes over at once. Each successful run of a duty is noted in
`cc:heartbeat` (see pos.coordination); /healthz reads it (settlement.duty_health).
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
from pos.errors import CoordinationUnavailableError
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
    # Its stale heartbeat fails /healthz. False for duties that wait on the outside world
    # (nodes, receivers, rate sources): flagged when stale, never failing the web tier's check.
    essential: bool = True
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


def refresh_rates_duty() -> Duty:
    """Rate feeds, each with its own interval and backoff, and the rate alarms (issue #21)."""
    from settlement.rates.refresh import duty  # imported here: that module imports Duty

    made = duty()
    made.essential = False  # rate sources are the outside world: reported, never failing /healthz
    return made


def core_duties(watched: frozenset[PaymentMethod] = frozenset()) -> list[Duty]:
    return [
        Duty("rebuild-if-flushed", 1.0, rebuild_if_flushed),
        Duty("relay-events", 1.0, relay_events),
        make_expire_duty(watched),
        refresh_rates_duty(),
    ]


def all_duties(settings: Settings) -> list[Duty]:
    """Every duty this worker runs, in order (the order matters only within one tick).

    Rebuild and relay come first so the watch index is complete before any watcher scans.
    """
    # Imported here: these modules import Duty from this one.
    from settlement import btc_watcher, kzte_watcher, refund_watch, webhooks
    from settlement.ledger import booking as ledger_booking

    watchers = [btc_watcher.duty(settings.bitcoin_zmq_url), kzte_watcher.duty()]
    for watcher in watchers:
        watcher.essential = False  # a hung node is reported, it never fails the web's health
    return [
        *core_duties(watched=frozenset({PaymentMethod.BTC, PaymentMethod.KZTE})),
        *watchers,
        *webhooks.duty(),
        *ledger_booking.duty(),
        *refund_watch.duty(),
    ]


def recorded_fence(rt: Runtime, chain: str) -> int:
    """The highest fencing token the database holds for a chain watcher's checkpoint.

    Pass it as `floor` to `Coordinator.acquire_lease`, so a flushed Redis cannot hand out a
    token below the one in `chain_cursors` (the checkpoint would refuse every write).
    """
    with rt.session_factory() as session:
        fence = session.scalar(select(ChainCursor.fence).where(ChainCursor.chain == chain))
    return fence or 0


def run_duty(rt: Runtime, duty: Duty, state: WorkerState, now: float) -> int | None:
    """Run one duty now (after taking or renewing its lease when leader-only).

    Returns its work count, or None when another worker leads it or it failed (then it is
    logged and backed off). Redis being unreachable raises CoordinationUnavailableError.
    """
    duty.woken.clear()
    duty.next_due = now + duty.interval_seconds
    if duty.leader_only and rt.coordinator.acquire_lease(duty.name, state.holder, LEASE_MS) is None:
        return None  # another worker leads this duty
    try:
        count = duty.run(rt)
    except CoordinationUnavailableError:
        raise  # every duty needs Redis: the caller backs off (and revives it)
    except (RedisConnectionError, RedisTimeoutError) as exc:  # a duty's own Redis call
        raise CoordinationUnavailableError(f"Redis is unavailable: {exc}") from exc
    except Exception as exc:  # one duty's bug (or a locked database) must not stop the others
        _duty_failed(duty, exc, now)
        return None
    if duty.failures:
        log.info("duty %s works again after %d failed runs", duty.name, duty.failures)
        duty.failures, duty.failure = 0, None
    return count


def run_pass(
    rt: Runtime, duties: list[Duty], state: WorkerState, force: bool = False
) -> dict[str, int]:
    """Run every duty that is due (or all of them with `force`), one after another in this
    thread; returns work counts. The synchronous form: tests and `cryptocity worker --once`.

    A duty that raises is logged and backed off; the others still run. Redis being
    unreachable ends the pass (CoordinationUnavailableError): every duty needs it.
    """
    counts: dict[str, int] = {}
    now = time.monotonic()
    for duty in duties:
        if not force and now < duty.next_due and not duty.woken.is_set():
            continue
        count = run_duty(rt, duty, state, now)
        if count is not None:
            counts[duty.name] = count
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


def run_worker(settings: Settings, once: bool = False) -> int:
    """`cryptocity worker`: every duty in its own thread until SIGTERM / SIGINT (`once`: one
    forced pass of every duty, in this thread)."""
    from settlement.duty_runner import DutyRunner  # it imports this module

    duties = all_duties(settings)
    rt = open_runtime(settings)
    state = WorkerState()
    runner = DutyRunner(rt, duties, state)

    def _stop(signum: int, _frame: FrameType | None) -> None:
        log.info("signal %d: finishing the duties' current runs", signum)
        runner.stop()

    previous = {sig: signal.signal(sig, _stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        if once:
            _run_once(rt, duties, state)
        else:
            runner.run()  # returns once stopped, every duty finished (or left hung)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        _release_leases(rt)
        runner.close_duties()
        rt.close()
        log.info("worker stopped")
    return 0


def _run_once(rt: Runtime, duties: list[Duty], state: WorkerState) -> None:
    try:
        counts = run_pass(rt, duties, state, force=True)
        log.info("pass: %s", {k: v for k, v in counts.items() if v})
    except CoordinationUnavailableError as exc:
        log.warning("Redis unavailable: %s", exc)
    except OperationalError as exc:
        log.warning("database unavailable: %s", exc.orig)


def _release_leases(rt: Runtime) -> None:
    """Hand every lease back (only those still ours), so the next worker leads at once."""
    try:
        released = rt.coordinator.release_leases()
    except CoordinationUnavailableError as exc:  # they expire by their TTL anyway
        log.warning("could not release the leases: %s", exc)
        return
    if released:
        log.info("released %d lease(s)", released)
