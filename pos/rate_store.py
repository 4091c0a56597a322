"""What the worker learned about each rate feed, and the rate alarms, kept in Redis.

The worker's `refresh-rates` duty writes; the web tier's RateBook (through `StoredFeed`), the
operator's Rates page and /metrics read. Everything here is rebuilt by the next refresh, so a
flushed Redis only means "no value yet" for a few seconds — BTC invoices wait, nothing is lost.

Keys (beside pos.coordination's):
  cc:ratefeed:<pair>|<feed>  hash  quote (JSON of the last good quote), checked_at, ok_at,
                                   error (the last failure, "" once it works), failures (in a
                                   row), retry_at (when the worker asks again), rate_limited
  cc:ratealarm               hash  alarm name -> JSON {"since", "message"} while it is raised
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from redis.exceptions import RedisError

from pos.coordination import Coordinator
from pos.errors import CoordinationUnavailableError
from pos.rates import RateQuote

ALARM_KEY = "cc:ratealarm"
BTC_SPREAD = "btc_spread"  # fresh BTC/KZT sources disagree beyond RATE_MAX_SPREAD_BP
BTC_UNAVAILABLE = "btc_unavailable"  # no fresh BTC/KZT source at all
KZTE_DEPEG = "kzte_depeg"  # KZTE trades further from 1:1 than KZTE_MAX_DEPEG_BP
ALARMS = (BTC_SPREAD, BTC_UNAVAILABLE, KZTE_DEPEG)


def feed_key(pair: str, name: str) -> str:
    return f"cc:ratefeed:{pair}|{name}"


@dataclass(frozen=True)
class FeedState:
    """The worker's last word on one feed (all None/0 before its first attempt)."""

    pair: str
    name: str
    quote: RateQuote | None = None
    checked_at: datetime | None = None
    ok_at: datetime | None = None
    error: str = ""
    failures: int = 0
    retry_at: datetime | None = None
    rate_limited: bool = False


@dataclass(frozen=True)
class Alarm:
    name: str
    since: datetime
    message: str


def _time(raw: str | None) -> datetime | None:
    return datetime.fromisoformat(raw) if raw else None


class RateStore:
    """Typed access to the rate keys, on the Coordinator's Redis client."""

    def __init__(self, coordinator: Coordinator) -> None:
        self.client = coordinator.client

    def _call(self, fn: Any) -> Any:
        try:
            return fn()
        except RedisError as exc:
            raise CoordinationUnavailableError(f"Redis is unavailable: {exc}") from exc

    # --- feeds ------------------------------------------------------------------------------
    def record_success(self, quote: RateQuote, name: str, at: datetime, retry_at: datetime) -> None:
        fields = {
            "quote": quote.to_json(),
            "checked_at": at.isoformat(),
            "ok_at": at.isoformat(),
            "error": "",
            "failures": "0",
            "retry_at": retry_at.isoformat(),
            "rate_limited": "0",
        }
        key = feed_key(quote.pair, name)
        self._call(lambda: self.client.hset(key, mapping=fields))  # type: ignore[arg-type]

    def record_failure(
        self,
        pair: str,
        name: str,
        error: str,
        at: datetime,
        failures: int,
        retry_at: datetime,
        rate_limited: bool,
    ) -> None:
        """Note a failed fetch; the last good quote stays (its age decides if it is usable)."""
        fields = {
            "checked_at": at.isoformat(),
            "error": error[:500],
            "failures": str(failures),
            "retry_at": retry_at.isoformat(),
            "rate_limited": "1" if rate_limited else "0",
        }
        key = feed_key(pair, name)
        self._call(lambda: self.client.hset(key, mapping=fields))  # type: ignore[arg-type]

    def feed(self, pair: str, name: str) -> FeedState:
        raw: dict[str, str] = self._call(lambda: self.client.hgetall(feed_key(pair, name)))
        if not raw:
            return FeedState(pair, name)
        return FeedState(
            pair,
            name,
            RateQuote.from_json(raw["quote"]) if raw.get("quote") else None,
            _time(raw.get("checked_at")),
            _time(raw.get("ok_at")),
            raw.get("error", ""),
            int(raw.get("failures") or 0),
            _time(raw.get("retry_at")),
            raw.get("rate_limited") == "1",
        )

    def last_quote(self, pair: str, name: str) -> RateQuote | None:
        """The last good quote of a feed (what `StoredFeed` reads), or None."""
        raw = self._call(lambda: self.client.hget(feed_key(pair, name), "quote"))
        return RateQuote.from_json(str(raw)) if raw else None

    # --- alarms -----------------------------------------------------------------------------
    def alarms(self) -> dict[str, Alarm]:
        raw: dict[str, str] = self._call(lambda: self.client.hgetall(ALARM_KEY))
        alarms = {}
        for name, value in raw.items():
            data = json.loads(value)
            alarms[name] = Alarm(name, datetime.fromisoformat(data["since"]), data["message"])
        return alarms

    def raise_alarm(self, name: str, message: str, at: datetime) -> bool:
        """Raise (or keep) an alarm; True only when it was not raised before."""
        value = json.dumps({"since": at.isoformat(), "message": message})
        new = bool(self._call(lambda: self.client.hsetnx(ALARM_KEY, name, value)))
        if not new:  # keep `since`, refresh the message (the numbers move)
            current = self.alarms().get(name)
            since = current.since if current else at
            value = json.dumps({"since": since.isoformat(), "message": message})
            self._call(lambda: self.client.hset(ALARM_KEY, name, value))
        return new

    def clear_alarm(self, name: str) -> bool:
        """Clear an alarm; True only when it was raised."""
        return bool(self._call(lambda: self.client.hdel(ALARM_KEY, name)))
