"""The state of the zone's rates at a glance: for the operator's Rates page and /metrics.

Two views of the same moment: *sources* are what an invoice's rate is made of (one feed, or a
cross of two), judged by the RateBook exactly as an invoice would be; *feeds* are what the
worker fetches, with their last value, its age and how the last attempts went.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from pos import rate_rules
from pos.errors import KzteDepegError, RateDisagreementError
from pos.rate_config import FeedSpec, configured_feeds
from pos.rate_store import Alarm, FeedState, RateStore
from pos.rates import Assessment, RateBook, RateQuote, Reading
from pos.settings import Settings

# Statuses, also CSS classes on the page.
OK, STALE, UNAVAILABLE, DISAGREEING, OFF_PEG = (
    "ok",
    "stale",
    "unavailable",
    "disagreeing",
    "off-peg",
)
FAILING, RATE_LIMITED, WAITING = "failing", "rate-limited", "waiting"


@dataclass(frozen=True)
class SourceRow:
    pair: str
    name: str
    quote: RateQuote | None
    age: timedelta | None
    status: str
    problem: str  # why it is not used ("" when it is)
    deviation_bp: int | None  # from the rate an invoice would lock (or the median of the fresh)


@dataclass(frozen=True)
class FeedRow:
    spec: FeedSpec
    state: FeedState
    age: timedelta | None
    status: str


@dataclass(frozen=True)
class RateBoard:
    now: datetime
    btc: Assessment
    kzte: Assessment
    sources: list[SourceRow]
    feeds: list[FeedRow]
    alarms: dict[str, Alarm]
    max_spread_bp: int
    max_depeg_bp: int


def _source_rows(assessment: Assessment, now: datetime) -> list[SourceRow]:
    fresh = assessment.fresh
    reference: Decimal | None = None
    if assessment.quote is not None and assessment.pair.startswith("BTC"):
        reference = assessment.quote.rate
    elif fresh:
        reference = rate_rules.median([q.rate for q in fresh])
    rows = []
    for reading in assessment.readings:
        rows.append(_source_row(assessment, reading, reference, now))
    return rows


def _source_row(
    assessment: Assessment, reading: Reading, reference: Decimal | None, now: datetime
) -> SourceRow:
    quote = reading.quote
    if reading.fresh:
        status = OK
        if isinstance(assessment.refusal, RateDisagreementError):
            status = DISAGREEING
        elif isinstance(assessment.refusal, KzteDepegError):
            status = OFF_PEG
    else:
        status = STALE if quote is not None else UNAVAILABLE
    deviation = None
    if quote is not None and reference is not None and assessment.pair.startswith("BTC"):
        deviation = rate_rules.deviation_bp(quote.rate, reference)
    elif quote is not None:
        deviation = rate_rules.depeg_bp(quote.rate)
    return SourceRow(
        assessment.pair,
        reading.source,
        quote,
        quote.age(now) if quote is not None else None,
        status,
        reading.problem or "",
        deviation,
    )


def _feed_row(spec: FeedSpec, state: FeedState, settings: Settings, now: datetime) -> FeedRow:
    quote = state.quote
    age = quote.age(now) if quote is not None else None
    if state.error:
        status = RATE_LIMITED if state.rate_limited else FAILING
    elif quote is None:
        status = WAITING
    else:
        max_age = (
            timedelta(hours=settings.fiat_rate_max_age_hours)
            if spec.kind == "nbk"
            else timedelta(seconds=settings.rate_max_age_seconds)
        )
        status = OK if rate_rules.staleness(quote.as_of, now, max_age) is None else STALE
    return FeedRow(spec, state, age, status)


def rate_board(settings: Settings, rates: RateBook, store: RateStore, now: datetime) -> RateBoard:
    btc, kzte = rates.assess_btc(now), rates.assess_kzte(now)
    feeds = [
        _feed_row(spec, store.feed(spec.pair, spec.name), settings, now)
        for spec in configured_feeds(settings)
    ]
    return RateBoard(
        now,
        btc,
        kzte,
        _source_rows(btc, now) + _source_rows(kzte, now),
        feeds,
        store.alarms(),
        settings.rate_max_spread_bp,
        settings.kzte_max_depeg_bp,
    )
