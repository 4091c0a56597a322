"""The refresh-rates duty: per-feed schedules and backoff, a failing or hanging feed never
holding up the others, and the alarms with their audit rows (real Redis and database)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import select

from pos import invoices
from pos.db import utcnow
from pos.errors import KzteDepegError
from pos.models import AuditLog
from pos.rate_store import BTC_SPREAD, BTC_UNAVAILABLE, KZTE_DEPEG, RateStore
from pos.runtime import Runtime
from pos.states import PaymentMethod
from settlement.rates.feeds import configured_feeds
from settlement.rates.refresh import RateRefresher, backoff_seconds

import factories
from rate_replay import Clock, Replay, write_rate


def _refresher(rt: Runtime, clock: Clock, budget: float = 5.0) -> RateRefresher:
    return RateRefresher(configured_feeds(rt.settings), clock, budget_seconds=budget)


def _asked(replay: Replay, path: str) -> int:
    return sum(1 for asked in replay.requests if asked.startswith(path))


def _alarm_rows(rt: Runtime) -> list[tuple[str, str]]:
    with rt.session_factory() as session:
        rows = session.scalars(select(AuditLog).where(AuditLog.action.like("rates.%"))).all()
        return [(row.action, row.detail["alarm"]) for row in rows]


def test_one_run_stores_every_feed_and_the_book_reads_them(
    rates_runtime: Runtime, clock: Clock
) -> None:
    refresher = _refresher(rates_runtime, clock)
    try:
        assert refresher.run(rates_runtime) == 5  # exmo, binance, nbk, the BTC file, KZTE file
    finally:
        refresher.close()
    store = RateStore(rates_runtime.coordinator)
    assert store.last_quote("USD/KZT", "nbk:USD") is not None
    quote = rates_runtime.rates.btc_kzt()
    assert quote.source.startswith("median:") and len(quote.legs) == 3
    # 49 850 000 (EXMO), 49 855 000 (file), 49 859 980.01 (97 312.45 x 512.37): the middle one.
    assert quote.rate == Decimal("49855000")
    assert store.alarms() == {} and _alarm_rows(rates_runtime) == []
    assert rates_runtime.coordinator.cached_rate("BTC/KZT") == quote


def test_a_failing_feed_backs_off_alone_and_honours_retry_after(
    rates_runtime: Runtime, replay: Replay, clock: Clock
) -> None:
    replay.answer("/v1.1/ticker", "exmo_500.html", status=502)
    replay.answer(
        "/api/v3/ticker/24hr", "binance_429.json", status=429, headers={"Retry-After": "120"}
    )
    refresher = _refresher(rates_runtime, clock)
    store = RateStore(rates_runtime.coordinator)
    try:
        refresher.run(rates_runtime)
        exmo = store.feed("BTC/KZT", "exmo:BTC_KZT")
        assert exmo.failures == 1 and "HTTP 502" in exmo.error and exmo.quote is None
        limited = store.feed("BTC/USDT", "binance:BTCUSDT")
        assert limited.rate_limited and limited.retry_at is not None
        assert limited.retry_at - (limited.checked_at or utcnow()) == timedelta(seconds=120)
        assert store.feed("USD/KZT", "nbk:USD").quote is not None  # the others went on
        # The file source alone still prices BTC: one failing exchange blocks nothing.
        assert rates_runtime.rates.btc_kzt().rate == Decimal("49855000")

        clock.advance(5)  # EXMO's first retry is 15 s away, Binance's 120 s
        refresher.run(rates_runtime)
        assert (_asked(replay, "/v1.1/ticker"), _asked(replay, "/api/v3/ticker")) == (1, 1)
        clock.advance(11)
        refresher.run(rates_runtime)
        assert store.feed("BTC/KZT", "exmo:BTC_KZT").failures == 2  # now 30 s to the next
        assert _asked(replay, "/api/v3/ticker") == 1
        replay.answer("/v1.1/ticker", "exmo_good.json")
        clock.advance(29)
        refresher.run(rates_runtime)
        assert _asked(replay, "/v1.1/ticker") == 2  # 16 + 29 = 45 s < 15 + 30 s: not yet
        clock.advance(2)
        refresher.run(rates_runtime)
        recovered = store.feed("BTC/KZT", "exmo:BTC_KZT")
        assert recovered.failures == 0 and recovered.error == "" and recovered.quote is not None
    finally:
        refresher.close()


def test_backoff_doubles_from_a_capped_base() -> None:
    assert [backoff_seconds(15, n) for n in (1, 2, 3)] == [15, 30, 60]
    assert backoff_seconds(600, 1) == 30  # a daily feed that fails is asked again soon
    assert backoff_seconds(15, 40) == 900


def test_a_feed_that_hangs_does_not_hold_up_the_others(
    rates_runtime: Runtime, replay: Replay, clock: Clock
) -> None:
    replay.answer("/v1.1/ticker", "exmo_good.json", hold_seconds=30)  # beyond the 1 s timeout
    refresher = _refresher(rates_runtime, clock, budget=0.2)
    store = RateStore(rates_runtime.coordinator)
    try:
        refresher.run(rates_runtime)
        # Binance and the NBK answered and were stored while EXMO's request is still open.
        assert store.feed("BTC/USDT", "binance:BTCUSDT").quote is not None
        assert store.feed("USD/KZT", "nbk:USD").quote is not None
        assert store.feed("BTC/KZT", "exmo:BTC_KZT").checked_at is None
        for _ in range(50):  # bounded: the 1 s client timeout ends it within a few runs
            refresher.run(rates_runtime)
            if store.feed("BTC/KZT", "exmo:BTC_KZT").failures:
                break
        hung = store.feed("BTC/KZT", "exmo:BTC_KZT")
        assert hung.failures == 1 and "no answer within 1 s" in hung.error
        assert _asked(replay, "/v1.1/ticker") == 1  # never asked twice while in flight
    finally:
        refresher.close()


def test_spread_alarm_is_raised_once_and_cleared_with_audit_rows(
    rates_runtime: Runtime, clock: Clock, tmp_path: Path
) -> None:
    refresher = _refresher(rates_runtime, clock)
    store = RateStore(rates_runtime.coordinator)
    try:
        refresher.run(rates_runtime)
        write_rate(tmp_path / "btc_kzt.json", "53000000")  # 6 % above the others
        clock.advance(6)
        refresher.run(rates_runtime)
        clock.advance(6)
        refresher.run(rates_runtime)  # still disagreeing: no second alert
        assert set(store.alarms()) == {BTC_SPREAD}
        assert "disagree by" in store.alarms()[BTC_SPREAD].message
        assert _alarm_rows(rates_runtime) == [("rates.alarm_raised", BTC_SPREAD)]
        write_rate(tmp_path / "btc_kzt.json", "49855000")
        clock.advance(6)
        refresher.run(rates_runtime)
        assert store.alarms() == {}
        assert _alarm_rows(rates_runtime)[-1] == ("rates.alarm_cleared", BTC_SPREAD)
    finally:
        refresher.close()


def test_no_fresh_source_raises_the_unavailable_alarm(
    rates_runtime: Runtime, replay: Replay, clock: Clock, tmp_path: Path
) -> None:
    replay.answer("/v1.1/ticker", "exmo_stale.json")
    replay.answer("/api/v3/ticker/24hr", "binance_malformed.json")
    write_rate(tmp_path / "btc_kzt.json", "49855000", utcnow() - timedelta(hours=1))
    refresher = _refresher(rates_runtime, clock)
    try:
        refresher.run(rates_runtime)
    finally:
        refresher.close()
    assert set(RateStore(rates_runtime.coordinator).alarms()) == {BTC_UNAVAILABLE}


def test_kzte_depeg_pauses_kzte_invoices_and_raises_its_alarm(
    rates_runtime: Runtime, clock: Clock, tmp_path: Path
) -> None:
    with rates_runtime.session_factory.begin() as session:
        shop_id = factories.merchant(session, rates_runtime.settings).id
    write_rate(tmp_path / "kzte_kzt.json", "0.9700")  # 3 % below the peg; the limit is 1 %
    refresher = _refresher(rates_runtime, clock)
    try:
        refresher.run(rates_runtime)
    finally:
        refresher.close()
    assert set(RateStore(rates_runtime.coordinator).alarms()) == {KZTE_DEPEG}
    with (
        rates_runtime.session_factory() as session,
        pytest.raises(
            KzteDepegError, match=r"KZTE invoices are paused: KZTE trades at 0\.9700 KZT"
        ),
    ):
        invoices.create_invoice(
            session,
            rates_runtime.settings,
            rates_runtime.rates,
            invoices.InvoiceRequest(shop_id, 250_000, PaymentMethod.KZTE),
        )
    with rates_runtime.session_factory() as session:  # BTC is not affected by KZTE's peg
        invoice = invoices.create_invoice(
            session,
            rates_runtime.settings,
            rates_runtime.rates,
            invoices.InvoiceRequest(shop_id, 250_000, PaymentMethod.BTC),
        )
        assert invoice.rate_components["spread_bp"] >= 0
