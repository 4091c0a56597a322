"""Which adapter fetches which configured feed (pos.rate_config parses the configuration)."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from pos import rate_config
from pos.rate_config import FeedSpec, local_source
from pos.rates import RateQuote
from pos.settings import Settings
from settlement.rates.binance import BinanceTicker
from settlement.rates.exmo import ExmoTicker
from settlement.rates.nbk import NbkOfficialRate

LOCAL_REFRESH_SECONDS = 5.0  # a file or the sandbox costs nothing to read


class Feed(Protocol):
    """A rate source the refresher polls, with its pair and its own refresh interval."""

    name: str
    pair: str
    refresh_seconds: float

    def fetch(self, now: datetime) -> RateQuote:
        """The feed's latest quote; a `RateUnavailableError` if it has none."""
        ...


class LocalFeed:
    """A local source (file, sandbox) polled like the others, so the Rates page shows it."""

    refresh_seconds = LOCAL_REFRESH_SECONDS

    def __init__(self, spec: FeedSpec) -> None:
        self._source = local_source(spec)
        self.name = spec.name
        self.pair = spec.pair

    def fetch(self, now: datetime) -> RateQuote:
        return self._source.fetch(now)


def make_feed(spec: FeedSpec, settings: Settings) -> Feed:
    urls, timeout = settings.rate_api_urls, settings.rate_http_timeout_seconds
    if spec.kind == "nbk":
        return NbkOfficialRate(spec.arg, urls["nbk"], timeout)
    if spec.kind == "exmo":
        return ExmoTicker(spec.arg, urls["exmo"], timeout)
    if spec.kind == "binance":
        return BinanceTicker(spec.arg, spec.pair, urls["binance"], timeout)
    return LocalFeed(spec)


def configured_feeds(settings: Settings) -> list[Feed]:
    """An adapter for every feed the configured sources need, each once."""
    return [make_feed(spec, settings) for spec in rate_config.configured_feeds(settings)]
