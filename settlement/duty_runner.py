"""Each worker duty in its own thread: its own schedule, wake-ups, back-off and heartbeat.

Threads rather than processes: the duties spend their time waiting on the network (chain
nodes, webhook receivers, Redis, the database), and Python releases the GIL while they wait, so
a hung call costs only its own thread. Threads share the runtime's connection pools, the
embedded Redis' supervision and the worker's lease holder name, start at once and stop with the
process. A process per duty would add a database and Redis pool per duty and a second place to
handle SIGTERM and hand leases over, to isolate CPU-bound work — and no duty is CPU-bound.

The supervisor (the thread calling `run`, the main one) restarts a duty thread that died,
revives the embedded Redis when a duty finds it gone, keeps this worker's registration for
/healthz fresh (settlement.duty_health) and logs a run that has gone on unusually long (a hung
node). `stop()` (the SIGTERM handler) wakes every thread; each finishes its current run, closes
its own duty (the webhook dispatcher records its in-flight POSTs) and exits. `run` returns when
all have, or after `STOP_SECONDS` with a hung one left behind (daemon threads die with the
process).
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime

from pos.db import utcnow
from pos.errors import CoordinationUnavailableError
from pos.runtime import Runtime
from settlement import duty_health
from settlement.duty_health import DutySpec
from settlement.worker import MAX_DUTY_BACKOFF_SECONDS, TICK_SECONDS, Duty, WorkerState, run_duty

log = logging.getLogger(__name__)

SUPERVISE_SECONDS = 0.5
STOP_SECONDS = 5.0  # above the webhook deadline, so in-flight deliveries are recorded
LONG_RUN_SECONDS = 60.0  # a run longer than this (or ten intervals) is logged as hung


class DutyThread:
    """One duty's loop: run when due or woken, record the heartbeat, back off on failure."""

    def __init__(self, runner: DutyRunner, duty: Duty) -> None:
        self.runner = runner
        self.duty = duty
        self.thread: threading.Thread | None = None
        self.runs = 0  # completed runs (for the logs and tests)
        self.deaths = 0  # times the thread died and was restarted
        self.running_since: float | None = None
        self.long_run_logged = False
        self.exited = False  # the loop ended because the worker stops
        self.closed = False
        self._redis_failures = 0

    def start(self) -> None:
        self.thread = threading.Thread(
            target=self._main, name=f"duty:{self.duty.name}", daemon=True
        )
        self.thread.start()

    def alive(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    def _main(self) -> None:
        try:
            self._loop()
        except BaseException:  # the supervisor restarts the thread; nothing may escape here
            log.exception("duty %s: its thread died; the supervisor restarts it", self.duty.name)
            self.running_since = None
            return
        self.exited = True
        self.close()

    def _loop(self) -> None:
        duty, state, rt = self.duty, self.runner.state, self.runner.rt
        while not state.stop.is_set():
            wait = duty.next_due - time.monotonic()
            if wait > 0 and not duty.woken.is_set():
                duty.woken.wait(wait)
                continue
            now = time.monotonic()
            self.running_since = now
            try:
                count = run_duty(rt, duty, state, now)
                if count is not None:
                    rt.coordinator.record_heartbeats(utcnow(), [duty.name])
            except CoordinationUnavailableError as exc:
                self._redis_failed(exc, now)
                continue
            finally:
                self.running_since = None
                self.long_run_logged = False
            self.runs += 1
            if self._redis_failures:
                self._redis_failures = 0
                self.runner.redis_answers()
            if count:
                log.info("%s: %d", duty.name, count)

    def _redis_failed(self, exc: CoordinationUnavailableError, now: float) -> None:
        self._redis_failures += 1
        delay = min(TICK_SECONDS * 2 ** min(self._redis_failures - 1, 8), MAX_DUTY_BACKOFF_SECONDS)
        self.duty.next_due = now + delay
        log.debug("duty %s: Redis unavailable, retrying in %.2f s", self.duty.name, delay)
        self.runner.redis_failed(exc)

    def close(self) -> None:
        if self.closed or self.duty.close is None:
            self.closed = True
            return
        self.closed = True
        try:
            self.duty.close()
        except Exception:  # one duty's cleanup must not keep the others from theirs
            log.exception("duty %s: closing failed", self.duty.name)


class DutyRunner:
    """Runs every duty in its own thread until `stop()`; see the module docstring."""

    def __init__(self, rt: Runtime, duties: list[Duty], state: WorkerState) -> None:
        self.rt = rt
        self.state = state
        self.threads = [DutyThread(self, duty) for duty in duties]
        self.started_at: datetime = utcnow()
        self._redis_error: CoordinationUnavailableError | None = None
        self._redis_down = False
        self._registered_at = 0.0

    # --- called from the duty threads -------------------------------------------------------
    def redis_failed(self, exc: CoordinationUnavailableError) -> None:
        self._redis_error = exc
        self.state.tick.set()  # the supervisor revives the embedded Redis at once

    def redis_answers(self) -> None:
        if self._redis_down:
            self._redis_down = False
            log.info("Redis answers again")

    # --- the supervisor ---------------------------------------------------------------------
    def run(self) -> None:
        """Start the threads and supervise them until `stop()`; then wait for them to end."""
        for worker in self.threads:
            duty = worker.duty
            if duty.start is not None:
                try:
                    duty.start(duty.woken.set)  # a push signal runs the duty at once
                except Exception:  # the interval stays the floor without the push signal
                    log.exception("duty %s: its wake-up source did not start", duty.name)
            worker.start()
        names = ", ".join(t.duty.name for t in self.threads)
        log.info("worker %s started: %s", self.state.holder, names)
        while not self.state.stop.is_set():
            self._supervise(time.monotonic())
            self.state.tick.wait(SUPERVISE_SECONDS)
            self.state.tick.clear()
        self._wait_for_threads()

    def stop(self) -> None:
        """Ask every duty to finish its run and exit (safe from a signal handler)."""
        self.state.stop.set()
        for worker in self.threads:
            worker.duty.woken.set()
        self.state.tick.set()

    def _supervise(self, now: float) -> None:
        error, self._redis_error = self._redis_error, None
        if error is not None:
            if not self._redis_down:
                log.warning("Redis unavailable, retrying: %s", error)
                self._redis_down = True
            if self.rt.revive_redis():  # demo mode's embedded server: ours to bring back
                for worker in self.threads:
                    worker.duty.next_due = 0.0
                    worker.duty.woken.set()
        for worker in self.threads:
            if not worker.alive() and not worker.exited and not self.state.stop.is_set():
                self._restart(worker, now)
            started = worker.running_since
            limit = max(LONG_RUN_SECONDS, 10 * worker.duty.interval_seconds)
            if started is not None and now - started > limit and not worker.long_run_logged:
                worker.long_run_logged = True
                log.warning(
                    "duty %s has been running for %.0f s (a hung node or receiver?); "
                    "the other duties go on",
                    worker.duty.name,
                    now - started,
                )
        if now - self._registered_at >= duty_health.REGISTER_EVERY_SECONDS:
            self._register(now)

    def _restart(self, worker: DutyThread, now: float) -> None:
        worker.deaths += 1
        delay = min(2.0 ** min(worker.deaths - 1, 8), MAX_DUTY_BACKOFF_SECONDS)
        worker.duty.next_due = now + delay  # a thread that dies at once does not spin
        log.error("duty %s: restarting its thread (death %d)", worker.duty.name, worker.deaths)
        worker.start()

    def _register(self, now: float) -> None:
        specs = [
            DutySpec(t.duty.name, t.duty.interval_seconds, t.duty.essential) for t in self.threads
        ]
        try:
            duty_health.register(
                self.rt.coordinator, self.state.holder, specs, self.started_at, utcnow()
            )
            self._registered_at = now
        except CoordinationUnavailableError as exc:
            self.redis_failed(exc)

    def _wait_for_threads(self) -> None:
        limit = time.monotonic() + STOP_SECONDS
        for worker in self.threads:
            if worker.thread is not None:
                worker.thread.join(max(limit - time.monotonic(), 0.0))
        hung = [t.duty.name for t in self.threads if t.alive()]
        if hung:
            log.warning("stopping with these duties still running (left behind): %s", hung)
        try:
            duty_health.unregister(self.rt.coordinator, self.state.holder)
        except CoordinationUnavailableError as exc:
            log.warning("could not unregister from /healthz (expires by itself): %s", exc)

    def close_duties(self) -> None:
        """Close what the threads did not close themselves (they died, hung or never ran)."""
        for worker in self.threads:
            worker.close()
