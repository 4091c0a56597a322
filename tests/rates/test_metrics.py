"""/metrics scraped through the Flask test client: real Prometheus text, rate and alarm gauges."""

from __future__ import annotations

from pathlib import Path

from flask import Flask
from prometheus_client.parser import text_string_to_metric_families

from pos.runtime import Runtime
from settlement.rates.feeds import configured_feeds
from settlement.rates.refresh import RateRefresher

from rate_replay import Clock, write_rate


def _scrape(
    app: Flask, headers: dict[str, str] | None = None
) -> dict[str, dict[tuple[str, ...], float]]:
    answer = app.test_client().get("/metrics", headers=headers or {})
    assert answer.status_code == 200
    assert answer.headers["Content-Type"].startswith("text/plain; version=")
    families: dict[str, dict[tuple[str, ...], float]] = {}
    for family in text_string_to_metric_families(answer.get_data(as_text=True)):
        for sample in family.samples:
            key = tuple(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            families.setdefault(sample.name, {})[key] = sample.value
    return families


def _refresh(rt: Runtime, clock: Clock) -> None:
    refresher = RateRefresher(configured_feeds(rt.settings), clock)
    try:
        refresher.run(rt)
    finally:
        refresher.close()


def test_gauges_show_each_source_the_locked_rate_and_quiet_alarms(
    rates_runtime: Runtime, app: Flask, clock: Clock
) -> None:
    _refresh(rates_runtime, clock)
    gauges = _scrape(app)
    values = gauges["cryptocity_rate_source_value"]
    assert values[("pair=BTC/KZT", "source=exmo:BTC_KZT")] == 49_850_000.0
    assert values[("pair=BTC/KZT", "source=binance:BTCUSDT*nbk:USD")] == 49_859_980.01
    assert (
        values[("pair=KZTE/KZT", f"source=file:{rates_runtime.settings.kzte_rate_sources[0][5:]}")]
        == 0.999
    )
    usable = gauges["cryptocity_rate_source_usable"]
    assert set(usable.values()) == {1.0} and len(usable) == 4
    assert gauges["cryptocity_rate_btc_kzt"][()] == 49_855_000.0
    assert gauges["cryptocity_rate_btc_max_spread_bp"][()] == 200.0
    assert gauges["cryptocity_rate_kzte_depeg_bp"][()] == 10.0
    assert gauges["cryptocity_rate_alarm"] == {
        ("alarm=btc_spread",): 0.0,
        ("alarm=btc_unavailable",): 0.0,
        ("alarm=kzte_depeg",): 0.0,
    }
    feeds = gauges["cryptocity_rate_feed_failures"]
    assert feeds[("feed=nbk:USD", "pair=USD/KZT")] == 0.0
    assert gauges["cryptocity_rate_feed_age_seconds"][("feed=nbk:USD", "pair=USD/KZT")] > 0


def test_a_depeg_shows_as_an_alarm_gauge(
    rates_runtime: Runtime, app: Flask, clock: Clock, tmp_path: Path
) -> None:
    write_rate(tmp_path / "kzte_kzt.json", "1.0250")
    _refresh(rates_runtime, clock)
    gauges = _scrape(app)
    assert gauges["cryptocity_rate_alarm"][("alarm=kzte_depeg",)] == 1.0
    assert gauges["cryptocity_rate_kzte_depeg_bp"][()] == 250.0


def test_a_metrics_token_is_required_once_configured(runtime: Runtime, app: Flask) -> None:
    runtime.settings = runtime.settings.with_overrides(metrics_token="scrape-secret")
    client = app.test_client()
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer nope"}).status_code == 401
    gauges = _scrape(app, {"Authorization": "Bearer scrape-secret"})
    assert "cryptocity_rate_alarm" in gauges  # the demo's sandbox source, no alarm
    assert gauges["cryptocity_rate_source_usable"][("pair=BTC/KZT", "source=sandbox")] == 1.0
