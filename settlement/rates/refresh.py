"""The worker's `refresh-rates` duty: poll every rate feed on its own schedule, store what it
says, and raise or clear the rate alarms.

- Each feed has its own interval (tickers 15 s, the official daily rate 10 min, local files
  5 s) and its own backoff: a failing feed is asked again after 2^n times its base delay
  (capped), a rate-limited one not before its Retry-After. Network feeds run in a small thread
  pool and the duty waits for them only a bounded time, so a feed that hangs until its timeout
  neither delays the other feeds nor the worker's other duties; its answer is picked up later.
- What a feed said goes to Redis (pos.rate_store); the web tier's RateBook reads it from there.
- After each run the duty asks the RateBook what an invoice would get now. Sources
  disagreeing beyond RATE_MAX_SPREAD_BP, no fresh BTC/KZT source, or a KZTE depeg beyond
  KZTE_MAX_DEPEG_BP raise an alarm (Redis, for the Rates page and /metrics) and, when an alarm
  starts or ends, write an audit row (`rates.alarm_raised` / `rates.alarm_cleared`) the
  operator sees on the zone overview and the Rates page.

It runs in one worker at a time (leader_only), so the providers see one client per zone.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime, timedelta

from pos.accounts import audit
from pos.db import utcnow
from pos.errors import KzteDepegError, RateDisagreementError, RateUnavailableError
from pos.rate_store import BTC_SPREAD, BTC_UNAVAILABLE, KZTE_DEPEG, RateStore
from pos.rates import RateQuote
from pos.runtime import Runtime
from settlement.rates.errors import FeedRateLimitedError
from settlement.rates.feeds import Feed, LocalFeed, configured_feeds
from settlement.worker import Duty

log = logging.getLogger(__name__)

DUTY_INTERVAL_SECONDS = 2.0
FETCH_BUDGET_SECONDS = 2.0  # how long one run waits for network fetches in flight
BACKOFF_BASE_CAP_SECONDS = 30.0  # the first retry of a failing feed comes at most this late
BACKOFF_MAX_SECONDS = 900.0
RATE_LIMITED_MIN_SECONDS = 60.0  # a 429 without Retry-After


@dataclass
class _Schedule:
    feed: Feed
    next_due: float = 0.0  # on the refresher's monotonic clock
    failures: int = 0  # in a row
    future: Future[RateQuote] | None = None


def backoff_seconds(refresh_seconds: float, failures: int) -> float:
    """The wait after the n-th failure in a row: doubling from the base, capped."""
    base = min(refresh_seconds, BACKOFF_BASE_CAP_SECONDS)
    return float(min(base * 2 ** min(failures - 1, 16), max(BACKOFF_MAX_SECONDS, refresh_seconds)))


class RateRefresher:
    """Polls the feeds; `run` is one duty run. `clock` is monotonic (tests pass their own)."""

    def __init__(
        self,
        feeds: Sequence[Feed],
        clock: Callable[[], float] = time.monotonic,
        budget_seconds: float = FETCH_BUDGET_SECONDS,
    ) -> None:
        self.schedules = [_Schedule(feed) for feed in feeds]
        self.clock = clock
        self.budget_seconds = budget_seconds
        network = [s for s in self.schedules if not isinstance(s.feed, LocalFeed)]
        self._pool = (
            ThreadPoolExecutor(max_workers=len(network), thread_name_prefix="rate-feed")
            if network
            else None
        )

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)

    def run(self, rt: Runtime) -> int:
        """Fetch the feeds that are due, store the answers, update the alarms; how many answered."""
        store = RateStore(rt.coordinator)
        answered = 0
        for schedule in self.schedules:
            if schedule.future is not None or self.clock() < schedule.next_due:
                continue
            if isinstance(schedule.feed, LocalFeed) or self._pool is None:
                schedule.future = Future()
                try:
                    schedule.future.set_result(schedule.feed.fetch(utcnow()))
                except Exception as exc:  # recorded below like a network failure
                    schedule.future.set_exception(exc)
            else:
                schedule.future = self._pool.submit(_fetch, schedule.feed)
        in_flight = [s.future for s in self.schedules if s.future is not None]
        if in_flight:
            wait(in_flight, timeout=self.budget_seconds)
        for schedule in self.schedules:
            if schedule.future is not None and schedule.future.done():
                answered += self._record(store, schedule, schedule.future)
                schedule.future = None
        update_alarms(rt, store)
        return answered

    def _record(self, store: RateStore, schedule: _Schedule, done: Future[RateQuote]) -> int:
        feed, at = schedule.feed, utcnow()
        try:
            quote = done.result()
        except RateUnavailableError as exc:
            self._failed(store, schedule, at, exc)
            return 0
        except Exception as exc:  # an adapter's bug must not stop the other feeds
            log.exception("rate feed %s failed unexpectedly", feed.name)
            self._failed(store, schedule, at, exc)
            return 0
        if schedule.failures:
            log.info("rate feed %s answers again after %d failures", feed.name, schedule.failures)
        schedule.failures = 0
        schedule.next_due = self.clock() + feed.refresh_seconds
        store.record_success(quote, feed.name, at, at + timedelta(seconds=feed.refresh_seconds))
        return 1

    def _failed(self, store: RateStore, schedule: _Schedule, at: datetime, exc: Exception) -> None:
        feed = schedule.feed
        schedule.failures += 1
        delay = backoff_seconds(feed.refresh_seconds, schedule.failures)
        limited = isinstance(exc, FeedRateLimitedError)
        if limited:
            asked = getattr(exc, "retry_after_seconds", None) or RATE_LIMITED_MIN_SECONDS
            delay = max(delay, asked)
        schedule.next_due = self.clock() + delay
        log.warning("rate feed %s: %s (retry in %.0f s)", feed.name, exc, delay)
        store.record_failure(
            feed.pair,
            feed.name,
            str(exc) or type(exc).__name__,
            at,
            schedule.failures,
            at + timedelta(seconds=delay),
            limited,
        )


def _fetch(feed: Feed) -> RateQuote:
    return feed.fetch(utcnow())


def update_alarms(rt: Runtime, store: RateStore, now: datetime | None = None) -> None:
    """Raise or clear the rate alarms from what an invoice would get now; audit the changes."""
    now = now or utcnow()
    wanted: dict[str, str | None] = {BTC_SPREAD: None, BTC_UNAVAILABLE: None, KZTE_DEPEG: None}
    if rt.settings.btc_rate_sources:
        btc = rt.rates.assess_btc(now)
        if isinstance(btc.refusal, RateDisagreementError):
            wanted[BTC_SPREAD] = str(btc.refusal)
        elif btc.refusal is not None:
            wanted[BTC_UNAVAILABLE] = str(btc.refusal)
        elif btc.quote is not None:
            # The last good BTC/KZT quote, for `cryptocity rates show` and older readers.
            rt.coordinator.cache_rate(btc.quote, rt.settings.rate_max_age_seconds)
    kzte = rt.rates.assess_kzte(now)
    if isinstance(kzte.refusal, KzteDepegError):
        wanted[KZTE_DEPEG] = str(kzte.refusal)
    changes: list[tuple[str, str, str]] = []
    for name, message in wanted.items():
        if message is not None:
            if store.raise_alarm(name, message, now):
                log.error("rate alarm %s: %s", name, message)
                changes.append(("rates.alarm_raised", name, message))
        elif store.clear_alarm(name):
            log.warning("rate alarm %s cleared", name)
            changes.append(("rates.alarm_cleared", name, ""))
    if changes:
        with rt.session_factory() as session:
            for action, name, message in changes:
                audit(session, action, detail={"alarm": name, "message": message})
            session.commit()


def duty(clock: Callable[[], float] = time.monotonic) -> Duty:
    """The `refresh-rates` worker duty (its refresher is built from the runtime's settings)."""
    made: list[RateRefresher] = []

    def run(rt: Runtime) -> int:
        if not made:
            made.append(RateRefresher(configured_feeds(rt.settings), clock))
        return made[0].run(rt)

    def close() -> None:
        for refresher in made:
            refresher.close()

    return Duty("refresh-rates", DUTY_INTERVAL_SECONDS, run, leader_only=True, close=close)
