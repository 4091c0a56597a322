"""The syntax of `BTC_KZT_RATE_SOURCES` and `KZTE_KZT_RATE_SOURCES`, and the `RateBook` it builds.

A source is a comma-separated entry; a *feed* is one thing the worker fetches:

  sandbox                    demo only: the deterministic demo feed (BTC/KZT)
  file:/srv/rates/x.json     a JSON file {"rate", "as_of"} someone else writes
  exmo[:BTC_KZT]             EXMO's public ticker, a market quoting BTC against KZT directly
  binance[:BTCUSDT]*nbk[:USD]
                             a cross: Binance's BTC/USDT ticker times the National Bank of
                             Kazakhstan's official USD/KZT rate (USDT and USDC count as USD)

KZTE/KZT sources (the depeg alarm) are `file:` feeds. Parsing is pure; `rate_book` wires the
feeds: local ones (sandbox, file) are read directly, network ones through `read_stored` — the
last value the worker fetched — so no web request ever waits on an exchange.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from pos.errors import ConfigError
from pos.rates import (
    BTC_KZT,
    KZTE_KZT,
    CrossRate,
    FileRateSource,
    RateBook,
    RateQuote,
    RateSource,
    SandboxBtcKztFeed,
    StoredFeed,
)

if TYPE_CHECKING:
    from pos.settings import Settings

NETWORK_KINDS = ("exmo", "binance", "nbk")
_EXMO_PAIR = re.compile(r"^BTC_KZT$")
_BINANCE_SYMBOL = re.compile(r"^BTC(USDT|USDC|EUR)$")
_NBK_CURRENCY = re.compile(r"^[A-Z]{3}$")
# The fiat currency a stablecoin or fiat quote stands for, in a cross with the official rate.
_FIAT_OF = {"USDT": "USD", "USDC": "USD", "EUR": "EUR"}
SYNTAX_HINT = (
    "use 'sandbox' (demo only), 'file:PATH', 'exmo[:BTC_KZT]' or 'binance[:BTCUSDT]*nbk[:USD]'"
)

ReadStored = Callable[[str, str], RateQuote | None]


@dataclass(frozen=True)
class FeedSpec:
    """One thing to fetch: its kind, its argument (path, pair, symbol, currency), its pair."""

    kind: str
    arg: str
    pair: str

    @property
    def name(self) -> str:
        return "sandbox" if self.kind == "sandbox" else f"{self.kind}:{self.arg}"

    @property
    def is_network(self) -> bool:
        return self.kind in NETWORK_KINDS


@dataclass(frozen=True)
class SourceSpec:
    """One configured source: a single feed, or a cross of a crypto feed and a fiat feed."""

    feeds: tuple[FeedSpec, ...]

    @property
    def name(self) -> str:
        return "*".join(feed.name for feed in self.feeds)


def _feed(raw: str, setting: str) -> FeedSpec:
    kind, _, arg = raw.partition(":")
    if raw == "sandbox":
        return FeedSpec("sandbox", "", BTC_KZT)
    if kind == "file" and arg:
        return FeedSpec("file", arg, BTC_KZT)
    if kind == "exmo":
        arg = arg or "BTC_KZT"
        if not _EXMO_PAIR.match(arg):
            raise ConfigError(f"{setting}: exmo quotes BTC against KZT as BTC_KZT, got {arg!r}")
        return FeedSpec("exmo", arg, BTC_KZT)
    if kind == "binance":
        arg = arg or "BTCUSDT"
        match = _BINANCE_SYMBOL.match(arg)
        if match is None:
            raise ConfigError(f"{setting}: binance takes BTCUSDT, BTCUSDC or BTCEUR, got {arg!r}")
        return FeedSpec("binance", arg, f"BTC/{match.group(1)}")
    if kind == "nbk":
        arg = arg or "USD"
        if not _NBK_CURRENCY.match(arg):
            raise ConfigError(f"{setting}: nbk takes a currency code like USD, got {arg!r}")
        return FeedSpec("nbk", arg, f"{arg}/KZT")
    raise ConfigError(f"{setting}: unknown source {raw!r} ({SYNTAX_HINT})")


def parse_btc_sources(entries: Sequence[str], demo: bool) -> list[SourceSpec]:
    """Parse the BTC/KZT sources; raise `ConfigError` with one sentence on the first bad one."""
    setting = "BTC_KZT_RATE_SOURCES"
    specs: list[SourceSpec] = []
    for entry in entries:
        parts = [part.strip() for part in entry.split("*")]
        if len(parts) == 1:
            feed = _feed(parts[0], setting)
            if feed.pair != BTC_KZT:
                raise ConfigError(
                    f"{setting}: {entry!r} quotes {feed.pair}; cross it with an official rate, "
                    f"e.g. '{entry}*nbk:USD'"
                )
            if feed.kind == "sandbox" and not demo:
                raise ConfigError(f"{setting}: the sandbox feed is for demo mode only")
            specs.append(SourceSpec((feed,)))
        elif len(parts) == 2:
            crypto, fiat = _feed(parts[0], setting), _feed(parts[1], setting)
            if crypto.kind != "binance" or fiat.kind != "nbk":
                raise ConfigError(
                    f"{setting}: a cross is an exchange's BTC ticker times an official rate, "
                    f"e.g. 'binance:BTCUSDT*nbk:USD', got {entry!r}"
                )
            quote_currency = crypto.pair.split("/")[1]
            if _FIAT_OF.get(quote_currency) != fiat.arg:
                raise ConfigError(
                    f"{setting}: {entry!r} multiplies BTC/{quote_currency} by {fiat.pair}; "
                    f"use nbk:{_FIAT_OF.get(quote_currency, quote_currency)}"
                )
            specs.append(SourceSpec((crypto, fiat)))
        else:
            raise ConfigError(f"{setting}: {entry!r} crosses more than two feeds ({SYNTAX_HINT})")
    names = [spec.name for spec in specs]
    if len(set(names)) != len(names):
        raise ConfigError(f"{setting}: a source is listed twice")
    return specs


def parse_kzte_sources(entries: Sequence[str]) -> list[SourceSpec]:
    """KZTE/KZT sources for the depeg alarm: `file:PATH` feeds quoting KZT per KZTE."""
    specs: list[SourceSpec] = []
    for entry in entries:
        kind, _, arg = entry.partition(":")
        if kind != "file" or not arg:
            raise ConfigError(
                f"KZTE_KZT_RATE_SOURCES: unknown source {entry!r} (use 'file:PATH' with "
                '{"rate": "0.9990", "as_of": "<ISO time with zone>"})'
            )
        specs.append(SourceSpec((FeedSpec("file", arg, KZTE_KZT),)))
    return specs


def feeds_of(specs: Sequence[SourceSpec]) -> list[FeedSpec]:
    """Every distinct feed the sources need, in order (a feed shared by two sources once)."""
    seen: dict[tuple[str, str], FeedSpec] = {}
    for spec in specs:
        for feed in spec.feeds:
            seen.setdefault((feed.pair, feed.name), feed)
    return list(seen.values())


def local_source(feed: FeedSpec) -> RateSource:
    """A feed that needs no network: read it directly (web tier and worker alike)."""
    if feed.kind == "sandbox":
        return SandboxBtcKztFeed()
    if feed.kind == "file":
        return FileRateSource(Path(feed.arg), feed.pair)
    raise ValueError(f"{feed.name} is a network feed")


def _source(spec: SourceSpec, read_stored: ReadStored, fiat_max_age: timedelta) -> RateSource:
    legs: list[RateSource] = [
        StoredFeed(feed.name, feed.pair, read_stored) if feed.is_network else local_source(feed)
        for feed in spec.feeds
    ]
    if len(legs) == 1:
        return legs[0]
    return CrossRate(legs[0], legs[1], fiat_max_age)


def rate_book(settings: Settings, read_stored: ReadStored) -> RateBook:
    """The RateBook for these settings; raises `ConfigError` for a source the mode forbids."""
    fiat_max_age = timedelta(hours=settings.fiat_rate_max_age_hours)
    btc = parse_btc_sources(settings.btc_rate_sources, settings.is_demo)
    kzte = parse_kzte_sources(settings.kzte_rate_sources)
    return RateBook(
        [_source(spec, read_stored, fiat_max_age) for spec in btc],
        timedelta(seconds=settings.rate_max_age_seconds),
        max_spread_bp=settings.rate_max_spread_bp,
        kzte_sources=[_source(spec, read_stored, fiat_max_age) for spec in kzte],
        max_depeg_bp=settings.kzte_max_depeg_bp,
    )


def configured_feeds(settings: Settings) -> list[FeedSpec]:
    """Every feed the BTC/KZT and KZTE/KZT sources of these settings need, each once."""
    return feeds_of(
        [
            *parse_btc_sources(settings.btc_rate_sources, settings.is_demo),
            *parse_kzte_sources(settings.kzte_rate_sources),
        ]
    )
