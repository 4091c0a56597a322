"""Exchange rates: sources behind one Protocol, a median of the fresh ones, a staleness limit,
a spread alarm between sources and a depeg alarm for KZTE.

KZTE is a tenge stablecoin priced 1:1; a fresh KZTE/KZT quote further than the allowed depeg
from 1 pauses KZTE invoices. BTC/KZT comes from the configured sources; if none is fresh, or the
fresh ones disagree by more than the allowed spread, BTC invoices are refused.

Sources here need no network: the demo's sandbox feed, `file:` JSON, a cross of two other
sources, and `StoredFeed`, which reads the last value the worker fetched (network adapters live
in `settlement.rates`; the web tier only ever reads what they stored in Redis).
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
from typing import Any, Protocol

from pos import rate_rules
from pos.errors import (
    KzteDepegError,
    RateDisagreementError,
    RateUnavailableError,
    ValidationError,
)
from pos.i18n import N_
from pos.money import parse_rate

log = logging.getLogger(__name__)

BTC_KZT = "BTC/KZT"
KZTE_KZT = "KZTE/KZT"
DEFAULT_MAX_SPREAD_BP = 200  # 2 %
DEFAULT_MAX_DEPEG_BP = 100  # 1 %
MAX_SOURCE_LABEL = 200  # invoices.rate_source


@dataclass(frozen=True)
class RateQuote:
    """Units of `pair`'s quote currency per one unit of its base, with where and when.

    `legs` are the quotes this one was made of: the fresh sources of a median, the two legs
    of a cross. They are what an invoice stores as its rate components.
    """

    pair: str
    rate: Decimal
    source: str
    as_of: datetime
    legs: tuple[RateQuote, ...] = ()
    spread_bp: int | None = None  # a median of several sources: how far apart they were
    depeg_bp: int | None = None  # a KZTE parity quote: how far KZTE traded from 1:1
    # (source, why) of configured sources left out: stale, failing, not fetched yet.
    ignored: tuple[tuple[str, str], ...] = ()

    def age(self, now: datetime) -> timedelta:
        return now - self.as_of

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "pair": self.pair,
            "rate": str(self.rate),
            "source": self.source,
            "as_of": self.as_of.isoformat(),
        }
        if self.legs:
            data["legs"] = [leg.to_dict() for leg in self.legs]
        if self.spread_bp is not None:
            data["spread_bp"] = self.spread_bp
        if self.depeg_bp is not None:
            data["depeg_bp"] = self.depeg_bp
        if self.ignored:
            data["ignored"] = [{"source": s, "reason": why} for s, why in self.ignored]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RateQuote:
        return cls(
            str(data["pair"]),
            Decimal(str(data["rate"])),
            str(data["source"]),
            datetime.fromisoformat(str(data["as_of"])),
            tuple(cls.from_dict(leg) for leg in data.get("legs", ())),
            data.get("spread_bp"),
            data.get("depeg_bp"),
            tuple((str(i["source"]), str(i["reason"])) for i in data.get("ignored", ())),
        )

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_json(cls, raw: str | bytes) -> RateQuote:
        return cls.from_dict(json.loads(raw))


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
    pair = BTC_KZT
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

    Lets an operator (or a cron job pulling an exchange) feed rates without code changes. The
    same format feeds KZTE/KZT for the depeg alarm (`KZTE_KZT_RATE_SOURCES`).
    """

    def __init__(self, path: Path, pair: str = BTC_KZT) -> None:
        self.path = path
        self.pair = pair
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
        return RateQuote(self.pair, rate, self.name, as_of)


class StoredFeed:
    """The last good quote the worker fetched from a network feed (read from Redis).

    Web requests never wait on an exchange: they read this. No value yet means the worker's
    `refresh-rates` duty has not fetched the feed successfully since Redis was last emptied.
    """

    def __init__(self, name: str, pair: str, read: Callable[[str, str], RateQuote | None]) -> None:
        self.name = name
        self.pair = pair
        self._read = read

    def fetch(self, now: datetime) -> RateQuote:
        quote = self._read(self.pair, self.name)
        if quote is None:
            raise RateUnavailableError(f"{self.name}: no value fetched yet (the worker fetches it)")
        return quote


class CrossRate:
    """BTC/KZT as BTC/USD(T) from an exchange times USD/KZT from an official daily rate.

    The fiat leg is a daily rate with its own, longer staleness limit; the cross is as old as
    its crypto leg (the one that moves), and keeps both legs on the quote.
    """

    def __init__(
        self, crypto: RateSource, fiat: RateSource, fiat_max_age: timedelta, pair: str = BTC_KZT
    ) -> None:
        self.crypto = crypto
        self.fiat = fiat
        self.fiat_max_age = fiat_max_age
        self.pair = pair
        self.name = f"{crypto.name}*{fiat.name}"

    def fetch(self, now: datetime) -> RateQuote:
        crypto = self.crypto.fetch(now)
        fiat = self.fiat.fetch(now)
        why = rate_rules.staleness(fiat.as_of, now, self.fiat_max_age)
        if why is not None:
            raise RateUnavailableError(f"{fiat.source} ({fiat.pair}) is {why}")
        rate = rate_rules.cross_rate(crypto.rate, fiat.rate)
        return RateQuote(self.pair, rate, self.name, crypto.as_of, legs=(crypto, fiat))


@dataclass(frozen=True)
class Reading:
    """What one configured source said just now: a quote, and why it may not be used."""

    source: str
    quote: RateQuote | None
    problem: str | None  # None: fresh and usable

    @property
    def fresh(self) -> bool:
        return self.quote is not None and self.problem is None


@dataclass(frozen=True)
class Assessment:
    """The verdict on one pair: the quote to lock, or why there is none."""

    pair: str
    readings: tuple[Reading, ...]
    quote: RateQuote | None
    refusal: RateUnavailableError | None
    spread_bp: int = 0  # BTC: how far apart the fresh sources are
    depeg_bp: int | None = None  # KZTE: how far the fresh quotes put KZTE from 1:1

    @property
    def fresh(self) -> list[RateQuote]:
        return [r.quote for r in self.readings if r.fresh and r.quote is not None]


def read_sources(sources: Sequence[RateSource], now: datetime, max_age: timedelta) -> list[Reading]:
    """Ask every source once; a failing or stale one is noted, never fatal."""
    readings: list[Reading] = []
    for source in sources:
        try:
            quote = source.fetch(now)
        except RateUnavailableError as exc:
            log.info("rate source %s: %s", source.name, exc)
            readings.append(Reading(source.name, None, str(exc)))
            continue
        readings.append(
            Reading(source.name, quote, rate_rules.staleness(quote.as_of, now, max_age))
        )
    return readings


def _percent(bp: int) -> str:
    return f"{bp // 100}.{bp % 100:02d} %"


def assess_btc(readings: Sequence[Reading], max_spread_bp: int) -> Assessment:
    """Median of the fresh readings, refused when none is fresh or they disagree too much."""
    fresh = [r.quote for r in readings if r.fresh and r.quote is not None]
    ignored = tuple((r.source, r.problem or "") for r in readings if not r.fresh)
    if not fresh:
        refusal = RateUnavailableError(
            N_(
                "no fresh BTC/KZT rate is available, so BTC invoices are paused; "
                "KZTE invoices still work"
            )
        )
        return Assessment(BTC_KZT, tuple(readings), None, refusal)
    rates = [q.rate for q in fresh]
    spread = rate_rules.spread_bp(rates)
    if spread > max_spread_bp:
        listed = ", ".join(f"{q.source} {q.rate}" for q in sorted(fresh, key=lambda q: q.rate))
        refusal = RateDisagreementError(
            N_(
                "BTC invoices are refused: the BTC/KZT sources disagree by %(spread)s, "
                "more than the %(allowed)s allowed (%(rates)s); the operator is "
                "alerted. KZTE invoices still work"
            ),
            spread=_percent(spread),
            allowed=_percent(max_spread_bp),
            rates=listed,
        )
        return Assessment(BTC_KZT, tuple(readings), None, refusal, spread)
    fresh.sort(key=lambda q: q.rate)
    label = fresh[0].source if len(fresh) == 1 else "median:" + ",".join(q.source for q in fresh)
    if len(label) > MAX_SOURCE_LABEL:
        label = label[: MAX_SOURCE_LABEL - 1] + "…"
    quote = RateQuote(
        BTC_KZT,
        rate_rules.median(rates),
        label,
        min(q.as_of for q in fresh),  # as old as its oldest part
        legs=tuple(fresh),
        spread_bp=spread,
        ignored=ignored,
    )
    return Assessment(BTC_KZT, tuple(readings), quote, None, spread)


def assess_kzte(readings: Sequence[Reading], max_depeg_bp: int, now: datetime) -> Assessment:
    """Parity, unless a fresh KZTE/KZT quote shows a depeg beyond the limit.

    No KZTE source, or none fresh, is not a depeg: KZTE keeps its 1:1 price (unknown is not
    failed) and the Rates page shows the sources as stale.
    """
    fresh = [r.quote for r in readings if r.fresh and r.quote is not None]
    ignored = tuple((r.source, r.problem or "") for r in readings if not r.fresh)
    if not fresh:
        quote = RateQuote(KZTE_KZT, KZTE_PARITY, "parity", now, ignored=ignored)
        return Assessment(KZTE_KZT, tuple(readings), quote, None)
    observed = rate_rules.median([q.rate for q in fresh])
    depeg = rate_rules.depeg_bp(observed)
    if depeg > max_depeg_bp:
        refusal = KzteDepegError(
            N_(
                "KZTE invoices are paused: KZTE trades at %(observed)s KZT, %(depeg)s off "
                "its 1:1 peg (more than the %(allowed)s allowed); the operator is "
                "alerted"
            ),
            observed=observed,
            depeg=_percent(depeg),
            allowed=_percent(max_depeg_bp),
        )
        return Assessment(KZTE_KZT, tuple(readings), None, refusal, depeg_bp=depeg)
    quote = RateQuote(
        KZTE_KZT, KZTE_PARITY, "parity", now, legs=tuple(fresh), depeg_bp=depeg, ignored=ignored
    )
    return Assessment(KZTE_KZT, tuple(readings), quote, None, depeg_bp=depeg)


class RateBook:
    """The rates an invoice locks: BTC/KZT (median of fresh sources) and KZTE/KZT (parity)."""

    def __init__(
        self,
        sources: Sequence[RateSource],
        max_age: timedelta,
        max_spread_bp: int = DEFAULT_MAX_SPREAD_BP,
        kzte_sources: Sequence[RateSource] = (),
        max_depeg_bp: int = DEFAULT_MAX_DEPEG_BP,
    ) -> None:
        self.sources = list(sources)
        self.max_age = max_age
        self.max_spread_bp = max_spread_bp
        self.kzte_sources = list(kzte_sources)
        self.max_depeg_bp = max_depeg_bp

    def assess_btc(self, now: datetime) -> Assessment:
        return assess_btc(read_sources(self.sources, now, self.max_age), self.max_spread_bp)

    def assess_kzte(self, now: datetime) -> Assessment:
        readings = read_sources(self.kzte_sources, now, self.max_age)
        return assess_kzte(readings, self.max_depeg_bp, now)

    def btc_kzt(self, now: datetime | None = None) -> RateQuote:
        """The BTC/KZT rate to lock into an invoice, or a `RateUnavailableError` saying why."""
        return _locked(self.assess_btc(now or datetime.now(UTC)))

    def kzte_kzt(self, now: datetime | None = None) -> RateQuote:
        """KZTE's 1:1 rate with the KZTE quotes checked, or `KzteDepegError`."""
        return _locked(self.assess_kzte(now or datetime.now(UTC)))


def _locked(assessment: Assessment) -> RateQuote:
    if assessment.refusal is not None:
        raise assessment.refusal
    assert assessment.quote is not None
    return assessment.quote
