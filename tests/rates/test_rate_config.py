"""The BTC_KZT_RATE_SOURCES / KZTE_KZT_RATE_SOURCES syntax and the settings around it."""

from __future__ import annotations

from pathlib import Path

import pytest

from pos.errors import ConfigError
from pos.rate_config import configured_feeds, parse_btc_sources, parse_kzte_sources, rate_book
from pos.settings import Mode, Settings


def test_short_forms_become_canonical_names_and_shared_feeds_appear_once() -> None:
    specs = parse_btc_sources(["exmo", "binance*nbk", "binance:BTCUSDC*nbk:USD"], demo=False)
    assert [s.name for s in specs] == [
        "exmo:BTC_KZT",
        "binance:BTCUSDT*nbk:USD",
        "binance:BTCUSDC*nbk:USD",
    ]
    assert [spec.feeds[0].pair for spec in specs] == ["BTC/KZT", "BTC/USDT", "BTC/USDC"]


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("ftp://x", "unknown source"),
        ("exmo:BTC_USD", "BTC_KZT"),
        ("binance", "cross it with an official rate"),
        ("binance:BTCEUR*nbk:USD", "use nbk:EUR"),
        ("exmo*nbk", "a cross is an exchange's BTC ticker"),
        ("binance*nbk*nbk", "more than two"),
        ("binance:DOGEUSDT*nbk", "BTCUSDT"),
        ("nbk:usd", "currency code"),
    ],
)
def test_bad_sources_are_refused_with_one_sentence(entry: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_btc_sources([entry], demo=True)


def test_the_sandbox_is_refused_in_production_even_in_hand_made_settings(
    settings: Settings,
) -> None:
    with pytest.raises(ConfigError, match="demo mode only"):
        parse_btc_sources(["sandbox"], demo=False)
    production = settings.with_overrides(mode=Mode.PRODUCTION)
    with pytest.raises(ConfigError, match="sandbox feed is for demo mode only"):
        rate_book(production, lambda pair, name: None)


def test_kzte_sources_are_files() -> None:
    assert [s.name for s in parse_kzte_sources(["file:/srv/kzte.json"])] == ["file:/srv/kzte.json"]
    with pytest.raises(ConfigError, match="KZTE_KZT_RATE_SOURCES"):
        parse_kzte_sources(["exmo"])


def test_settings_read_the_rate_environment(tmp_path: Path) -> None:
    loaded = Settings.from_env(
        {
            "CRYPTOCITY_DATA_DIR": str(tmp_path),
            "BTC_KZT_RATE_SOURCES": "exmo, binance*nbk",
            "KZTE_KZT_RATE_SOURCES": f"file:{tmp_path / 'kzte.json'}",
            "RATE_MAX_SPREAD_BP": "150",
            "KZTE_MAX_DEPEG_BP": "50",
            "FIAT_RATE_MAX_AGE_HOURS": "96",
            "EXMO_API_URL": "http://127.0.0.1:9/",
        }
    )
    assert loaded.btc_rate_sources == ("exmo:BTC_KZT", "binance:BTCUSDT*nbk:USD")
    assert (loaded.rate_max_spread_bp, loaded.kzte_max_depeg_bp) == (150, 50)
    assert loaded.fiat_rate_max_age_hours == 96
    assert loaded.rate_api_urls["exmo"] == "http://127.0.0.1:9"
    assert loaded.rate_api_urls["nbk"] == "https://nationalbank.kz/rss/get_rates.cfm"
    names = [feed.name for feed in configured_feeds(loaded)]
    assert names == ["exmo:BTC_KZT", "binance:BTCUSDT", "nbk:USD", f"file:{tmp_path / 'kzte.json'}"]
    with pytest.raises(ConfigError, match="RATE_MAX_SPREAD_BP"):
        Settings.from_env({"CRYPTOCITY_DATA_DIR": str(tmp_path), "RATE_MAX_SPREAD_BP": "0"})
    with pytest.raises(ConfigError, match="BINANCE_API_URL"):
        Settings.from_env({"CRYPTOCITY_DATA_DIR": str(tmp_path), "BINANCE_API_URL": "ftp://x"})
