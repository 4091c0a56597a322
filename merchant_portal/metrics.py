"""`/metrics`: the rate gauges and the rate alarms in the Prometheus text format.

Minimal on purpose: what a zone's monitoring must page on (an alarm is 1) and what it wants to
graph (each source's value and age, the spread, the depeg). The numbers are computed per scrape
from the same RateBook an invoice would use, so a gauge never disagrees with a refusal.
With METRICS_TOKEN set, a scrape needs `Authorization: Bearer <token>`.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterator

from flask import Blueprint, Response, abort, request
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from merchant_portal.context import coordinator, runtime
from pos.db import utcnow
from pos.rate_board import OK, RateBoard, rate_board
from pos.rate_store import ALARMS, RateStore

bp = Blueprint("metrics", __name__)


class RateCollector:
    """One scrape's gauges from one RateBoard (floats only here, for the exposition format)."""

    def __init__(self, board: RateBoard) -> None:
        self.board = board

    def collect(self) -> Iterator[Metric]:
        board = self.board
        labels = ["pair", "source"]
        value = GaugeMetricFamily(
            "cryptocity_rate_source_value",
            "Last value of each rate source (quote per base).",
            labels=labels,
        )
        age = GaugeMetricFamily(
            "cryptocity_rate_source_age_seconds",
            "Age of each rate source's last value.",
            labels=labels,
        )
        fresh = GaugeMetricFamily(
            "cryptocity_rate_source_usable",
            "1 if an invoice would use this source now.",
            labels=labels,
        )
        for row in board.sources:
            key = [row.pair, row.name]
            fresh.add_metric(key, 1.0 if row.status == OK else 0.0)
            if row.quote is not None and row.age is not None:
                value.add_metric(key, float(row.quote.rate))
                age.add_metric(key, row.age.total_seconds())
        feed_age = GaugeMetricFamily(
            "cryptocity_rate_feed_age_seconds",
            "Age of each fetched feed's last good value.",
            labels=["pair", "feed"],
        )
        failures = GaugeMetricFamily(
            "cryptocity_rate_feed_failures",
            "Failed fetches of each feed in a row.",
            labels=["pair", "feed"],
        )
        for feed in board.feeds:
            key = [feed.spec.pair, feed.spec.name]
            failures.add_metric(key, float(feed.state.failures))
            if feed.age is not None:
                feed_age.add_metric(key, feed.age.total_seconds())
        btc = GaugeMetricFamily(
            "cryptocity_rate_btc_kzt", "The BTC/KZT rate a BTC invoice would lock now."
        )
        if board.btc.quote is not None:
            btc.add_metric([], float(board.btc.quote.rate))
        spread = GaugeMetricFamily(
            "cryptocity_rate_btc_spread_bp", "Spread of the fresh BTC/KZT sources, basis points."
        )
        spread.add_metric([], float(board.btc.spread_bp))
        limit = GaugeMetricFamily("cryptocity_rate_btc_max_spread_bp", "RATE_MAX_SPREAD_BP.")
        limit.add_metric([], float(board.max_spread_bp))
        depeg = GaugeMetricFamily(
            "cryptocity_rate_kzte_depeg_bp", "Distance of KZTE from 1:1 KZT, basis points."
        )
        if board.kzte.depeg_bp is not None:
            depeg.add_metric([], float(board.kzte.depeg_bp))
        alarm = GaugeMetricFamily(
            "cryptocity_rate_alarm", "1 while a rate alarm is raised.", labels=["alarm"]
        )
        for name in ALARMS:
            alarm.add_metric([name], 1.0 if name in board.alarms else 0.0)
        yield from (value, age, fresh, feed_age, failures, btc, spread, limit, depeg, alarm)


@bp.get("/metrics")
def metrics() -> Response:
    rt = runtime()
    expected = rt.settings.metrics_token
    if expected is not None:
        given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(given.encode(), expected.encode()):
            abort(401)
    board = rate_board(rt.settings, rt.rates, RateStore(coordinator()), utcnow())
    registry = CollectorRegistry(auto_describe=False)  # per scrape: no global state
    registry.register(RateCollector(board))
    return Response(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
