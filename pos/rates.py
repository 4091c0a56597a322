"""Exchange rates: sources behind one Protocol, a median of the fresh ones, a staleness limit.

KZTE is a tenge stablecoin priced 1:1 (a depeg alarm is a rate-source concern, not ours here).
BTC/KZT comes from the configured sources; if none is fresh, BTC invoices are refused.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Protocol

from pos.errors import RateUnavailableError, ValidationError
from pos.money import parse_rate

log = logging.getLogger(__name__)

BTC_KZT = "BTC/KZT"
KZTE_KZT = "KZTE/KZT"


@dataclass(frozen=True)
class RateQuote:
    """KZT per one unit of the crypto asset, with where and when it came from."""

    pair: str
    rate: Decimal
    source: str
    as_of: datetime

    def age(self, now: datetime) -> timedelta:
        return now - self.as_of

    def to_json(self) -> str:
        return json.dumps(
            {
                "pair": self.pair,
                "rate": str(self.rate),
                "source": self.source,
                "as_of": self.as_of.isoformat(),
            }
        )

    @classmethod
    def from_json(cls, raw: str | bytes) -> RateQuote:
        data = json.loads(raw)
        return cls(
            data["pair"],
            Decimal(data["rate"]),
            data["source"],
            datetime.fromisoformat(data["as_of"]),
        )


KZTE_PARITY = Decimal(1)


def kzte_quote(now: datetime) -> RateQuote:
    return RateQuote(KZTE_KZT, KZTE_PARITY, "parity", now)


class RateSource(Protocol):
    name: str

    def fetch(self, now: datetime) -> RateQuote:
        """Return the source's latest quote; raise `RateUnavailableError` if it has none."""
        ...


class SandboxBtcKztFeed:
    """Demo feed: a deterministic, smooth walk around 45,000,000 KZT/BTC.

    The same instant always gives the same rate, so demos and tests are reproducible, yet the
    rate moves (a few percent over hours, a little minute to minute) like a real market.
    """

    name = "sandbox"
    LEVEL = 45_000_000

    def fetch(self, now: datetime) -> RateQuote:
        t = now.timestamp()
        wave = (
            0.03 * math.sin(2 * math.pi * t / 21_600)
            + 0.01 * math.sin(2 * math.pi * t / 2_820)
            + 0.002 * math.sin(2 * math.pi * t / 300)
        )
        # Whole seconds and two decimals, as an exchange ticker would publish.
        as_of = now.replace(microsecond=0)
        rate = Decimal(round(self.LEVEL * (1 + wave), 2)).quantize(Decimal("0.01"))
        return RateQuote(BTC_KZT, rate, self.name, as_of)


class FileRateSource:
    """A JSON file `{"rate": "45123456.78", "as_of": "2026-11-23T10:00:00+00:00"}`.

    Lets an operator (or a cron job pulling an exchange) feed rates without code changes.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.name = f"file:{path}"

    def fetch(self, now: datetime) -> RateQuote:
        try:
            data = json.loads(self.path.read_text())
            rate = parse_rate(str(data["rate"]))
            as_of = datetime.fromisoformat(str(data["as_of"]))
        except (OSError, ValueError, KeyError, TypeError, ValidationError) as exc:
            raise RateUnavailableError(f"rate file {self.path} is unreadable: {exc}") from None
        if as_of.tzinfo is None:
            raise RateUnavailableError(f"rate file {self.path}: as_of needs a time zone")
        return RateQuote(BTC_KZT, rate, self.name, as_of)


def sources_from_settings(names: Sequence[str]) -> list[RateSource]:
    sources: list[RateSource] = []
    for name in names:
        if name == "sandbox":
            sources.append(SandboxBtcKztFeed())
        elif name.startswith("file:"):
            sources.append(FileRateSource(Path(name.removeprefix("file:"))))
    return sources


class RateBook:
    """Median of the fresh quotes from every source, with an optional shared cache."""

    def __init__(
        self,
        sources: Sequence[RateSource],
        max_age: timedelta,
        cache_get: Callable[[], RateQuote | None] | None = None,
        cache_put: Callable[[RateQuote], None] | None = None,
    ) -> None:
        self.sources = list(sources)
        self.max_age = max_age
        self._cache_get = cache_get
        self._cache_put = cache_put

    def btc_kzt(self, now: datetime | None = None) -> RateQuote:
        """The BTC/KZT rate to lock into an invoice, or `RateUnavailableError`."""
        now = now or datetime.now(UTC)
        if self._cache_get is not None:
            cached = self._cache_get()
            if cached is not None and timedelta(0) <= cached.age(now) <= self.max_age:
                return cached
        quote = self.refresh(now)
        if self._cache_put is not None:
            self._cache_put(quote)
        return quote

    def refresh(self, now: datetime) -> RateQuote:
        """Ask every source; keep the fresh quotes; return their median."""
        fresh: list[RateQuote] = []
        for source in self.sources:
            try:
                quote = source.fetch(now)
            except RateUnavailableError as exc:
                log.info("rate source %s: %s", source.name, exc)
                continue
            if quote.age(now) > self.max_age:
                log.info("rate source %s is stale (as of %s)", source.name, quote.as_of)
                continue
            fresh.append(quote)
        if not fresh:
            raise RateUnavailableError(
                "no fresh BTC/KZT rate is available, so BTC invoices are paused; "
                "KZTE invoices still work"
            )
        fresh.sort(key=lambda q: q.rate)
        middle = len(fresh) // 2
        if len(fresh) % 2:
            chosen = fresh[middle]
            return chosen
        low, high = fresh[middle - 1], fresh[middle]
        return RateQuote(
            BTC_KZT,
            (low.rate + high.rate) / 2,
            "median:" + ",".join(q.source for q in fresh),
            min(low.as_of, high.as_of),
        )
