"""End to end: the worker's refresh-rates duty and the portal, on replayed providers.

Three BTC/KZT sources agree and an invoice locks their median with its components; then EXMO
goes stale and the file source diverges by 6 %: the worker raises the spread alarm, the
terminal refuses BTC with a clear message (KZTE still works), the API answers 503, and the
operator sees the alarm, each source's status and the audit alert on the Rates page.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families

from pos import integrations
from pos.models import Role
from pos.runtime import Runtime
from settlement.rates.refresh import duty
from settlement.worker import Duty, WorkerState, run_pass

import factories
from portal_helpers import csrf_from, login
from rate_replay import Clock, Replay, write_rate


@pytest.fixture
def people(rates_runtime: Runtime) -> dict[str, int]:
    with rates_runtime.session_factory.begin() as session:
        shop = factories.merchant(session, rates_runtime.settings, "Shop A", "a")
        factories.user(session, "owner@a.test", Role.OWNER, shop.id)
        factories.user(session, "ops@zone.test", Role.OPERATOR)
        return {"shop": shop.id}


@pytest.fixture
def refresh_duty(clock: Clock) -> Iterator[Duty]:
    made = duty(clock)
    yield made
    assert made.close is not None
    made.close()


def _client(app: Flask, email: str) -> FlaskClient:
    client = app.test_client()
    login(client, email, factories.PASSWORD)
    return client


def _sell(owner: FlaskClient, method: str) -> tuple[int, str]:
    token = csrf_from(owner, "/terminal/")
    answer = owner.post(
        "/terminal/invoices",
        data={"csrf_token": token, "amount": "25000", "method": method, "mode": "amount"},
    )
    return answer.status_code, answer.headers.get("Location") or answer.get_data(as_text=True)


def _gauges(client: FlaskClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = client.get("/metrics").get_data(as_text=True)
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_a_stale_and_a_diverging_source_refuse_btc_and_alert_the_operator(
    rates_runtime: Runtime,
    app: Flask,
    people: dict[str, int],
    refresh_duty: Duty,
    replay: Replay,
    clock: Clock,
    tmp_path: Path,
) -> None:
    rt, state = rates_runtime, WorkerState()
    assert run_pass(rt, [refresh_duty], state, force=True) == {"refresh-rates": 5}
    owner, operator = _client(app, "owner@a.test"), _client(app, "ops@zone.test")

    # All agree: the invoice locks the median and keeps its three sources, values and times.
    status, location = _sell(owner, "btc")
    assert status == 302, location
    invoice_id = location.rsplit("/", 1)[-1]
    page = owner.get(f"/merchant/invoices/{invoice_id}").get_data(as_text=True)
    assert 'id="rate-components"' in page
    for shown in (
        "exmo:BTC_KZT",
        "binance:BTCUSDT*nbk:USD",
        "\u00d7 nbk:USD",
        "512.37",
        "49850000.00",
    ):
        assert shown in page
    components_card = page.split('id="rate-components"')[1].split("</section>")[0]
    assert "spread 3 bp" in components_card and "depeg" not in components_card
    with rt.session_factory.begin() as session:
        _key, bearer = integrations.create_api_key(
            session, people["shop"], "till", ("invoices:read", "invoices:write"), 1000
        )
    auth = {"Authorization": f"Bearer {bearer}"}
    body = app.test_client().get(f"/api/v1/invoices/{invoice_id}", headers=auth).get_json()
    components = body["rate_components"]
    assert body["rate_kzt"] == "49855000" and components["rate"] == "49855000"
    assert components["legs"][0]["source"] == "exmo:BTC_KZT"
    cross = next(leg for leg in components["legs"] if "*" in leg["source"])
    assert [(leg["pair"], leg["rate"]) for leg in cross["legs"]] == [
        ("BTC/USDT", "97312.45000000"),
        ("USD/KZT", "512.37"),
    ]

    # EXMO goes stale and the file feed diverges by ~6 %.
    replay.answer("/v1.1/ticker", "exmo_stale.json")
    write_rate(tmp_path / "btc_kzt.json", "53000000")
    clock.advance(20)  # past every ticker's 15 s interval
    assert run_pass(rt, [refresh_duty], state, force=True) == {"refresh-rates": 4}

    status, page = _sell(owner, "btc")
    assert status == 400
    assert re.search(r"BTC invoices are refused: the BTC/KZT sources disagree by 6\.\d\d %", page)
    assert "KZTE invoices still work" in page
    assert _sell(owner, "kzte")[0] == 302  # KZTE is not held hostage by BTC's sources
    refused = app.test_client().post(
        "/api/v1/invoices", json={"price_tiyn": 2_500_000, "method": "btc"}, headers=auth
    )
    assert refused.status_code == 503
    assert refused.get_json()["error"]["code"] == "rate_unavailable"
    assert "disagree" in refused.get_json()["error"]["message"]

    rates_page = operator.get("/operator/rates/").get_data(as_text=True)
    assert 'id="alarm-btc_spread"' in rates_page and "BTC/KZT sources disagree" in rates_page
    stale_row = re.search(r'data-source="exmo:BTC_KZT">(.*?)</tr>', rates_page, re.S)
    assert stale_row and "status-stale" in stale_row.group(1)
    for diverging in (f"file:{tmp_path / 'btc_kzt.json'}", "binance:BTCUSDT*nbk:USD"):
        row = re.search(rf'data-source="{re.escape(diverging)}">(.*?)</tr>', rates_page, re.S)
        assert row and "status-disagreeing" in row.group(1)
    assert "raised" in rates_page.split('id="rate-history"')[1]
    overview = operator.get("/operator/").get_data(as_text=True)
    # The alert also shows in the zone's audit log, as a sentence.
    assert "Rate alarm btc_spread raised" in overview

    gauges = _gauges(operator)
    assert gauges[("cryptocity_rate_alarm", (("alarm", "btc_spread"),))] == 1.0
    assert gauges[("cryptocity_rate_alarm", (("alarm", "kzte_depeg"),))] == 0.0
    assert gauges[("cryptocity_rate_btc_spread_bp", ())] > 200
    assert ("cryptocity_rate_btc_kzt", ()) not in gauges  # no rate an invoice could lock


def test_the_rates_page_is_for_operators_only(
    rates_runtime: Runtime, app: Flask, people: dict[str, int]
) -> None:
    assert _client(app, "owner@a.test").get("/operator/rates/").status_code == 403
    anonymous = app.test_client().get("/operator/rates/")
    assert anonymous.status_code == 302 and "/login" in anonymous.headers["Location"]
