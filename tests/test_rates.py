import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from pos.errors import RateDisagreementError, RateUnavailableError
from pos.rates import FileRateSource, RateBook, RateQuote, SandboxBtcKztFeed, StoredFeed

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
    quote = RateBook(sources, timedelta(minutes=5), max_spread_bp=1_000).btc_kzt(NOW)
    assert quote.rate == Decimal("45000000")
    assert quote.spread_bp == 667 and [leg.rate for leg in quote.legs] == [
        Decimal("44000000"),
        Decimal("45000000"),
        Decimal("47000000"),
    ]
    # With the default 2 % limit the same three sources disagree: BTC is refused.
    with pytest.raises(RateDisagreementError, match=r"disagree by 6\.67 %"):
        RateBook(sources, timedelta(minutes=5)).btc_kzt(NOW)


def test_even_count_takes_the_mean_of_the_middle_two(tmp_path: Path) -> None:
    sources = [_write(tmp_path / f"{i}.json", rate, NOW) for i, rate in enumerate(["44", "46"])]
    book = RateBook(sources, timedelta(minutes=5), max_spread_bp=500)
    assert book.btc_kzt(NOW).rate == Decimal(45)


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


def test_stored_feed_is_used_while_fresh_and_refused_when_stale() -> None:
    stored = RateQuote("BTC/KZT", Decimal("44444444"), "exmo:BTC_KZT", NOW - timedelta(seconds=10))
    feed = StoredFeed("exmo:BTC_KZT", "BTC/KZT", lambda pair, name: stored)
    book = RateBook([feed], timedelta(minutes=5))
    assert book.btc_kzt(NOW).rate == Decimal("44444444")
    with pytest.raises(RateUnavailableError):
        book.btc_kzt(NOW + timedelta(minutes=10))


def test_a_feed_the_worker_never_fetched_is_no_rate() -> None:
    feed = StoredFeed("exmo:BTC_KZT", "BTC/KZT", lambda pair, name: None)
    with pytest.raises(RateUnavailableError, match="BTC invoices are paused"):
        RateBook([feed], timedelta(minutes=5)).btc_kzt(NOW)
    reading = RateBook([feed], timedelta(minutes=5)).assess_btc(NOW).readings[0]
    assert reading.problem is not None and "no value fetched yet" in reading.problem
