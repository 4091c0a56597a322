"""Fixtures for the rate tests: a loopback replay of the providers' answers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from pos.runtime import Runtime, make_rate_book

from rate_replay import Clock, Replay, write_rate


@pytest.fixture
def replay() -> Iterator[Replay]:
    server = Replay().start()
    yield server
    server.stop()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def rates_runtime(runtime: Runtime, replay: Replay, tmp_path: Path) -> Runtime:
    """The test runtime on three agreeing BTC/KZT sources and a KZTE feed, all on loopback:
    EXMO's BTC_KZT, Binance's BTCUSDT x the NBK's USD, and a file; KZTE/KZT from a file."""
    replay.answer("/v1.1/ticker", "exmo_good.json")
    replay.answer("/api/v3/ticker/24hr", "binance_good.json")
    replay.answer("/rss/get_rates.cfm", "nbk_good.xml")
    write_rate(tmp_path / "btc_kzt.json", "49855000")
    write_rate(tmp_path / "kzte_kzt.json", "0.9990")
    runtime.settings = runtime.settings.with_overrides(
        btc_rate_sources=(
            "exmo:BTC_KZT",
            "binance:BTCUSDT*nbk:USD",
            f"file:{tmp_path / 'btc_kzt.json'}",
        ),
        kzte_rate_sources=(f"file:{tmp_path / 'kzte_kzt.json'}",),
        rate_api_urls={
            "exmo": replay.url,
            "binance": replay.url,
            "nbk": replay.url + "/rss/get_rates.cfm",
        },
        rate_http_timeout_seconds=1.0,
    )
    runtime.rates = make_rate_book(runtime.settings, runtime.coordinator)
    return runtime
