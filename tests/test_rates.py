import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from pos.errors import RateUnavailableError
from pos.rates import FileRateSource, RateBook, RateQuote, SandboxBtcKztFeed

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def test_sandbox_feed_is_deterministic_and_realistic() -> None:
    feed = SandboxBtcKztFeed()
    first, again = feed.fetch(NOW), feed.fetch(NOW)
    assert first == again
    assert Decimal(40_000_000) < first.rate < Decimal(50_000_000)
    assert first.rate == first.rate.quantize(Decimal("0.01"))
    assert feed.fetch(NOW + timedelta(hours=1)).rate != first.rate


def _write(path: Path, rate: str, as_of: datetime) -> FileRateSource:
    path.write_text(json.dumps({"rate": rate, "as_of": as_of.isoformat()}))
    return FileRateSource(path)


def test_median_of_fresh_sources(tmp_path: Path) -> None:
    sources = [
        _write(tmp_path / f"{i}.json", rate, NOW)
        for i, rate in enumerate(["44000000", "45000000", "47000000"])
    ]
    quote = RateBook(sources, timedelta(minutes=5)).btc_kzt(NOW)
    assert quote.rate == Decimal("45000000")


def test_even_count_takes_the_mean_of_the_middle_two(tmp_path: Path) -> None:
    sources = [_write(tmp_path / f"{i}.json", rate, NOW) for i, rate in enumerate(["44", "46"])]
    assert RateBook(sources, timedelta(minutes=5)).btc_kzt(NOW).rate == Decimal(45)


def test_stale_sources_are_ignored_and_none_fresh_refuses(tmp_path: Path) -> None:
    stale = _write(tmp_path / "old.json", "45000000", NOW - timedelta(hours=1))
    with pytest.raises(RateUnavailableError, match="BTC invoices are paused"):
        RateBook([stale], timedelta(minutes=5)).btc_kzt(NOW)


def test_unreadable_file_is_unavailable_not_a_crash(tmp_path: Path) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    missing = FileRateSource(tmp_path / "missing.json")
    with pytest.raises(RateUnavailableError):
        RateBook([FileRateSource(broken), missing], timedelta(minutes=5)).btc_kzt(NOW)


def test_naive_timestamp_in_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "naive.json"
    path.write_text(json.dumps({"rate": "45000000", "as_of": "2026-11-23T12:00:00"}))
    with pytest.raises(RateUnavailableError, match="time zone"):
        FileRateSource(path).fetch(NOW)


def test_fresh_cache_is_used_and_stale_cache_is_not() -> None:
    cached = RateQuote("BTC/KZT", Decimal("44444444"), "cache", NOW - timedelta(seconds=10))
    book = RateBook([], timedelta(minutes=5), cache_get=lambda: cached)
    assert book.btc_kzt(NOW).rate == Decimal("44444444")
    with pytest.raises(RateUnavailableError):
        book.btc_kzt(NOW + timedelta(minutes=10))
