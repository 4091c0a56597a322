"""Each network rate adapter against its provider's recorded answers, replayed on 127.0.0.1:
good, stale, malformed, HTTP 429, HTTP 500 and a timeout."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from pos import rate_rules
from pos.rates import BTC_KZT, RateBook, RateQuote
from settlement.rates.binance import BinanceTicker
from settlement.rates.errors import (
    FeedHttpError,
    FeedMalformedError,
    FeedRateLimitedError,
    FeedTimeoutError,
    FeedUnreachableError,
)
from settlement.rates.exmo import ExmoTicker
from settlement.rates.feeds import Feed
from settlement.rates.nbk import ALMATY, NbkOfficialRate

from rate_replay import Replay

TIMEOUT = 0.5  # the client's; the held answers wait longer than this


@dataclass(frozen=True)
class Provider:
    name: str
    path: str
    make: Callable[[str, float], Feed]
    prefix: str  # fixture file prefix
    error_ext: str  # the extension of its error pages


PROVIDERS = [
    Provider(
        "nbk", "/rss/get_rates.cfm", lambda url, t: NbkOfficialRate("USD", url, t), "nbk", "html"
    ),
    Provider("exmo", "/v1.1/ticker", lambda url, t: ExmoTicker("BTC_KZT", url, t), "exmo", "html"),
    Provider(
        "binance",
        "/api/v3/ticker/24hr",
        lambda url, t: BinanceTicker("BTCUSDT", "BTC/USDT", url, t),
        "binance",
        "json",
    ),
]
GOOD_EXT = {"nbk": "xml", "exmo": "json", "binance": "json"}


def _feed(provider: Provider, replay: Replay) -> Feed:
    base = replay.url + ("/rss/get_rates.cfm" if provider.name == "nbk" else "")
    return provider.make(base, TIMEOUT)


def _file(provider: Provider, kind: str) -> str:
    ext = GOOD_EXT[provider.name] if kind in ("good", "stale", "malformed") else provider.error_ext
    if provider.name == "exmo" and kind == "429":
        ext = "json"
    return f"{provider.prefix}_{kind}.{ext}"


def test_nbk_reads_the_official_usd_rate_of_today(replay: Replay) -> None:
    replay.answer("/rss/get_rates.cfm", "nbk_good.xml")
    now = datetime.now(UTC)
    quote = NbkOfficialRate("USD", replay.url + "/rss/get_rates.cfm", TIMEOUT).fetch(now)
    assert (quote.pair, quote.rate, quote.source) == ("USD/KZT", Decimal("512.37"), "nbk:USD")
    # The official rate of the Almaty day, asked for by date.
    assert quote.as_of == datetime.combine(
        now.astimezone(ALMATY).date(), datetime.min.time(), ALMATY
    )
    assert replay.requests == [f"/rss/get_rates.cfm?fdate={now.astimezone(ALMATY):%d.%m.%Y}"]


def test_nbk_divides_by_the_quoted_quantity(replay: Replay) -> None:
    replay.answer("/rss/get_rates.cfm", "nbk_good.xml")
    url = replay.url + "/rss/get_rates.cfm"
    now = datetime.now(UTC)
    assert NbkOfficialRate("UZS", url, TIMEOUT).fetch(now).rate == Decimal("0.0412")
    assert NbkOfficialRate("IRR", url, TIMEOUT).fetch(now).rate == Decimal("0.01219")
    with pytest.raises(FeedMalformedError, match="no GBP rate"):
        NbkOfficialRate("GBP", url, TIMEOUT).fetch(now)


def test_exmo_takes_the_mid_of_its_btc_kzt_book(replay: Replay) -> None:
    replay.answer("/v1.1/ticker", "exmo_good.json")
    now = datetime.now(UTC)
    quote = ExmoTicker("BTC_KZT", replay.url, TIMEOUT).fetch(now)
    assert (quote.pair, quote.rate, quote.source) == (
        BTC_KZT,
        Decimal("49850000.00"),
        "exmo:BTC_KZT",
    )
    assert abs(quote.age(now)) < timedelta(seconds=5)


def test_binance_takes_the_mid_and_the_close_time(replay: Replay) -> None:
    replay.answer("/api/v3/ticker/24hr", "binance_good.json")
    now = datetime.now(UTC)
    quote = BinanceTicker("BTCUSDT", "BTC/USDT", replay.url, TIMEOUT).fetch(now)
    assert (quote.pair, quote.rate) == ("BTC/USDT", Decimal("97312.45000000"))
    assert abs(quote.age(now)) < timedelta(seconds=5)
    assert replay.requests == ["/api/v3/ticker/24hr?symbol=BTCUSDT"]


@pytest.mark.parametrize("provider", PROVIDERS, ids=lambda p: p.name)
def test_a_stale_answer_is_a_quote_the_book_will_not_use(
    provider: Provider, replay: Replay
) -> None:
    replay.answer(provider.path, _file(provider, "stale"))
    now = datetime.now(UTC)
    quote = _feed(provider, replay).fetch(now)
    assert quote.as_of < datetime(2025, 5, 13, tzinfo=UTC)
    assert rate_rules.staleness(quote.as_of, now, timedelta(hours=72)) is not None


@pytest.mark.parametrize("provider", PROVIDERS, ids=lambda p: p.name)
def test_a_malformed_answer_is_a_typed_error(provider: Provider, replay: Replay) -> None:
    replay.answer(provider.path, _file(provider, "malformed"))
    with pytest.raises(FeedMalformedError, match=provider.name):
        _feed(provider, replay).fetch(datetime.now(UTC))


@pytest.mark.parametrize("provider", PROVIDERS, ids=lambda p: p.name)
def test_http_429_is_rate_limited_with_its_retry_after(provider: Provider, replay: Replay) -> None:
    replay.answer(provider.path, _file(provider, "429"), status=429, headers={"Retry-After": "42"})
    with pytest.raises(FeedRateLimitedError) as caught:
        _feed(provider, replay).fetch(datetime.now(UTC))
    assert caught.value.status == 429 and caught.value.retry_after_seconds == 42.0


@pytest.mark.parametrize("provider", PROVIDERS, ids=lambda p: p.name)
def test_http_500_is_an_http_error_not_a_rate(provider: Provider, replay: Replay) -> None:
    status = 502 if provider.name == "exmo" else 500
    replay.answer(provider.path, _file(provider, "500"), status=status)
    with pytest.raises(FeedHttpError) as caught:
        _feed(provider, replay).fetch(datetime.now(UTC))
    assert caught.value.status == status and not isinstance(caught.value, FeedRateLimitedError)


@pytest.mark.parametrize("provider", PROVIDERS, ids=lambda p: p.name)
def test_no_answer_in_time_is_a_timeout(provider: Provider, replay: Replay) -> None:
    replay.answer(provider.path, _file(provider, "good"), hold_seconds=5.0)
    with pytest.raises(FeedTimeoutError, match=f"no answer within {TIMEOUT:g} s"):
        _feed(provider, replay).fetch(datetime.now(UTC))


def test_exmo_error_object_and_binance_error_code_are_malformed(replay: Replay) -> None:
    replay.answer("/v1.1/ticker", "exmo_error.json")
    with pytest.raises(FeedMalformedError, match="Insufficient permissions"):
        ExmoTicker("BTC_KZT", replay.url, TIMEOUT).fetch(datetime.now(UTC))
    replay.answer("/api/v3/ticker/24hr", "binance_bad_symbol.json", status=400)
    with pytest.raises(FeedHttpError, match="Invalid symbol") as caught:
        BinanceTicker("BTCUSDT", "BTC/USDT", replay.url, TIMEOUT).fetch(datetime.now(UTC))
    assert caught.value.status == 400


def test_a_closed_port_is_unreachable() -> None:
    closed = Replay()  # bound, never started, then closed: nothing listens there
    url = closed.url
    closed.server.server_close()
    with pytest.raises(FeedUnreachableError):
        ExmoTicker("BTC_KZT", url, TIMEOUT).fetch(datetime.now(UTC))


def test_the_cross_multiplies_in_decimal_and_keeps_both_legs(replay: Replay) -> None:
    from pos.rates import CrossRate

    replay.answer("/rss/get_rates.cfm", "nbk_good.xml")
    replay.answer("/api/v3/ticker/24hr", "binance_good.json")
    ticker = BinanceTicker("BTCUSDT", "BTC/USDT", replay.url, TIMEOUT)
    official = NbkOfficialRate("USD", replay.url + "/rss/get_rates.cfm", TIMEOUT)
    now = datetime.now(UTC)
    quote = CrossRate(ticker, official, timedelta(hours=72)).fetch(now)
    assert quote.rate == Decimal("49859980.01")  # 97312.45 x 512.37 = 49859980.0065, to the tiyn
    assert [leg.source for leg in quote.legs] == ["binance:BTCUSDT", "nbk:USD"]
    assert [leg.rate for leg in quote.legs] == [Decimal("97312.45000000"), Decimal("512.37")]
    assert quote.as_of == quote.legs[0].as_of  # as old as the leg that moves
    book = RateBook([CrossRate(ticker, official, timedelta(hours=72))], timedelta(minutes=5))
    locked = book.btc_kzt(now)
    assert locked.rate == quote.rate and locked.legs[0].legs == quote.legs
    assert RateQuote.from_dict(locked.to_dict()) == locked


def test_the_cross_refuses_a_stale_official_rate(replay: Replay) -> None:
    from pos.errors import RateUnavailableError
    from pos.rates import CrossRate

    replay.answer("/rss/get_rates.cfm", "nbk_stale.xml")
    replay.answer("/api/v3/ticker/24hr", "binance_good.json")
    cross = CrossRate(
        BinanceTicker("BTCUSDT", "BTC/USDT", replay.url, TIMEOUT),
        NbkOfficialRate("USD", replay.url + "/rss/get_rates.cfm", TIMEOUT),
        timedelta(hours=72),
    )
    with pytest.raises(RateUnavailableError, match=r"nbk:USD .* stale"):
        cross.fetch(datetime.now(UTC))
