"""Each worker duty runs in its own thread: a hung duty (or a hung node) delays only itself, a
dead duty thread is restarted, push wake-ups still run a duty at once, SIGTERM lets runs finish
and hands the leases back, and /healthz reports every duty's heartbeat."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from flask.testing import FlaskClient
from sqlalchemy import Engine
from worker_helpers import cli_env, wait_for, workers

from bench.chain import Payer, start_bench_node
from pos import invoices
from pos.coordination import Coordinator
from pos.db import utcnow
from pos.models import Invoice
from pos.runtime import Runtime
from pos.settings import Settings
from pos.states import InvoiceStatus, PaymentMethod
from sandbox.solana.validator import start_validator
from settlement import duty_health, worker
from settlement.chains.bitcoin_core import BitcoinCoreClient
from settlement.duty_health import DutySpec
from settlement.duty_runner import DutyRunner
from settlement.worker import Duty, WorkerState, run_worker

import factories

HANG_SECONDS = 30.0


class Died(BaseException):
    """Escapes every `except Exception`: what kills a thread outright."""


@pytest.fixture
def release() -> Iterator[threading.Event]:
    """Set at the end of the test: a hung duty's sleep ends then, not 30 s later."""
    event = threading.Event()
    yield event
    event.set()


def _serve(
    monkeypatch: pytest.MonkeyPatch, settings: Settings, duties: list[Duty]
) -> Callable[[], int]:
    """`run_worker` (signals, threads, leases and all) over these duties instead of the real
    ones; the duties stop it by sending this process SIGTERM."""
    monkeypatch.setattr(worker, "all_duties", lambda _settings: duties)
    return lambda: run_worker(settings)


def _sigterm() -> None:
    os.kill(os.getpid(), signal.SIGTERM)  # run_worker's handler is installed by now


def test_a_hung_duty_does_not_delay_another_duty(
    runtime: Runtime,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    release: threading.Event,
) -> None:
    hung_returned = threading.Event()
    beats_seen: set[datetime] = set()
    runs_while_hung: list[int] = []

    def hang(rt: Runtime) -> int:
        release.wait(HANG_SECONDS)  # a node that never answers
        hung_returned.set()
        return 0

    def steady(rt: Runtime) -> int:
        beat = rt.coordinator.heartbeats().get("steady")
        if beat is not None:
            beats_seen.add(beat)
        if not hung_returned.is_set():
            runs_while_hung.append(1)
        if len(runs_while_hung) == 20 or hung_returned.is_set():  # (the latter: too late)
            _sigterm()
        return 1

    # The hung duty comes first: in one thread nothing after it would run for 30 s.
    duties = [Duty("hung", 3600.0, hang), Duty("steady", 0.05, steady)]
    assert _serve(monkeypatch, settings, duties)() == 0
    assert len(runs_while_hung) >= 20  # all while the other duty was still hung
    assert not hung_returned.is_set()
    assert len(beats_seen) >= 10  # its heartbeat moved on with every run
    beats = runtime.coordinator.heartbeats()
    assert "steady" in beats and "hung" not in beats  # a duty that never finished never beat
    release.set()  # the hung run ends; its thread sees the stop and exits
    for thread in threading.enumerate():
        if thread.name == "duty:hung":
            thread.join(10)


def test_a_duty_whose_thread_dies_is_restarted(
    runtime: Runtime, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs: list[int] = []

    def dies_once(rt: Runtime) -> int:
        runs.append(1)
        if len(runs) == 1:
            raise Died
        if len(runs) == 3:
            _sigterm()
        return 1

    assert _serve(monkeypatch, settings, [Duty("dies-once", 0.05, dies_once)])() == 0
    assert len(runs) >= 3  # ran again after its thread died, and the worker lived on
    assert "dies-once" in runtime.coordinator.heartbeats()


def test_sigterm_lets_a_run_finish_and_releases_its_lease(
    runtime: Runtime, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    finished: list[int] = []

    def slow(rt: Runtime) -> int:
        if finished:
            _sigterm()  # arrives mid-run: the run still completes
            threading.Event().wait(1.0)
        finished.append(1)
        return 1

    duties = [Duty("slow-leader", 0.05, slow, leader_only=True)]
    assert _serve(monkeypatch, settings, duties)() == 0
    assert len(finished) == 2
    assert runtime.coordinator.client.get("cc:lease:slow-leader") is None
    assert runtime.coordinator.client.hgetall(duty_health.WORKERS_KEY) == {}  # unregistered


def test_a_push_wake_up_runs_a_duty_at_once(runtime: Runtime) -> None:
    wakers: list[Callable[[], None]] = []
    runs: list[int] = []
    duty = Duty(
        "pushed", 3600.0, lambda rt: runs.append(1) or 1, start=lambda wake: wakers.append(wake)
    )
    runner = DutyRunner(runtime, [duty], WorkerState())
    thread = threading.Thread(target=runner.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: len(runs) == 1, "the first run")
        for expected in (2, 3):  # the hour-long interval is only the floor
            wakers[0]()
            wait_for(lambda n=expected: len(runs) == n, f"run {expected} after a wake-up")
    finally:
        runner.stop()
        thread.join(10)
    assert not thread.is_alive()


def _register(coordinator: Coordinator, specs: list[DutySpec], beats: dict[str, datetime]) -> None:
    now = utcnow()
    duty_health.register(coordinator, "host:1", specs, now - timedelta(minutes=5), now)
    for name, at in beats.items():
        coordinator.record_heartbeats(at, [name])


def test_healthz_reports_each_duty_and_fails_only_for_a_stale_essential_one(
    client: FlaskClient, coordinator: Coordinator
) -> None:
    now = utcnow()
    specs = [DutySpec("relay-events", 1.0, True), DutySpec("webhook-deliver", 1.0, False)]
    _register(coordinator, specs, {"relay-events": now, "webhook-deliver": now})
    body = client.get("/healthz").json
    assert body["status"] == "ok" and body["workers"] == 1 and body["stale_duties"] == []
    relay = body["duties"]["relay-events"]
    assert relay["last_run"] == now.isoformat() and relay["essential"] and not relay["stale"]
    assert relay["stale_after_seconds"] == duty_health.MIN_STALE_SECONDS

    # A slow optional duty is flagged; the check still passes.
    _register(coordinator, specs, {"webhook-deliver": now - timedelta(minutes=2)})
    response = client.get("/healthz")
    assert response.status_code == 200 and response.json["status"] == "warning"
    assert response.json["stale_duties"] == ["webhook-deliver"]
    assert response.json["duties"]["webhook-deliver"]["stale"]

    # A stale essential duty means the worker itself is stuck: the check fails.
    _register(coordinator, specs, {"relay-events": now - timedelta(minutes=2)})
    response = client.get("/healthz")
    assert response.status_code == 503 and response.json["status"] == "degraded"
    assert response.json["stale_duties"] == ["relay-events", "webhook-deliver"]


def test_healthz_shows_a_running_workers_heartbeats(runtime: Runtime, client: FlaskClient) -> None:
    runner = DutyRunner(runtime, worker.core_duties(), WorkerState())
    thread = threading.Thread(target=runner.run, daemon=True)
    thread.start()
    try:

        def beating() -> bool:
            duties = client.get("/healthz").json["duties"]
            return "expire-invoices" in duties and duties["expire-invoices"]["last_run"] is not None

        wait_for(beating, "the worker's duties in /healthz")
        body = client.get("/healthz").json
        assert body["workers"] == 1
        assert {"rebuild-if-flushed", "relay-events", "expire-invoices"} <= set(body["duties"])
        assert not body["duties"]["relay-events"]["stale"]
    finally:
        runner.stop()
        thread.join(10)
    assert client.get("/healthz").json["workers"] == 0  # a stopped worker unregisters


# --- a real worker process, a real (hung) Solana node ------------------------------------------


def test_a_hung_solana_node_does_not_delay_bitcoin_detection(
    runtime: Runtime,
    settings: Settings,
    engine: Engine,
    client: FlaskClient,
    tmp_path: Path,
) -> None:
    node = start_bench_node(tmp_path / "btc")
    validator = start_validator(tmp_path / "solana")
    bitcoin = BitcoinCoreClient(node.url)
    try:
        runtime.settings = runtime.settings.with_overrides(
            bitcoin_rpc_url=node.url,
            kzte_mint=validator.kzte_mint,
            kzte_decimals=validator.kzte_decimals,
            solana_rpc_url=validator.rpc_url,
            solana_ws_url=validator.ws_url,
        )
        payer = Payer(bitcoin, "duty-isolation")
        payer.fund(1, 10_000_000)
        # An open KZTE invoice: its watcher reads the node about every second.
        btc_id, btc_address, due_sat = _open_invoices(runtime)
        env = cli_env(settings, tmp_path / "data", redis_url=settings.redis_url)
        env.update(
            BITCOIN_RPC_URL=node.url,
            BITCOIN_NETWORK="regtest",
            SOLANA_RPC_URL=validator.rpc_url,
            SOLANA_WS_URL=validator.ws_url,
            KZTE_MINT=validator.kzte_mint,
        )
        beats = runtime.coordinator.heartbeats
        with workers(env, tmp_path) as start:
            running = start("worker")
            wait_for(
                lambda: {"watch-bitcoin", "kzte-watcher"} <= set(beats()),
                "both watchers' first polls",
                log=running.log,
            )
            os.kill(validator.process.pid, signal.SIGSTOP)  # the node hangs: no answer at all
            try:
                stopped_beat = beats()["kzte-watcher"]
                btc_beats: set[datetime] = set()
                kzte_beats: set[datetime] = set()

                def sample() -> None:
                    now = beats()
                    btc_beats.add(now["watch-bitcoin"])
                    if now["kzte-watcher"] > stopped_beat:
                        kzte_beats.add(now["kzte-watcher"])

                bitcoin.call("sendrawtransaction", payer.pay_address(btc_address, due_sat))

                def detected() -> bool:
                    sample()
                    return _status(runtime, btc_id) is InvoiceStatus.PROCESSING

                wait_for(detected, "the Bitcoin payment to be detected", log=running.log)

                def five_more_polls() -> bool:
                    sample()
                    return len(btc_beats) >= 6

                wait_for(five_more_polls, "more Bitcoin polls", timeout=30, log=running.log)
                # Every Solana call now waits 5 s x 3 tries: the KZTE watcher finished at most
                # one pass meanwhile, while the Bitcoin watcher went on polling every second.
                assert len(kzte_beats) <= 1, running.log()
                health = client.get("/healthz")
                assert health.status_code == 200, health.json  # watchers are not essential
                assert not health.json["duties"]["watch-bitcoin"]["stale"]
            finally:
                os.kill(validator.process.pid, signal.SIGCONT)
            assert running.terminate() == 0, running.log()
    finally:
        bitcoin.close()
        validator.stop()
        node.stop()


def _open_invoices(runtime: Runtime) -> tuple[str, str, int]:
    """A BTC and a KZTE invoice, open; (BTC invoice id, its address, its amount due)."""
    with runtime.session_factory.begin() as session:
        merchant = factories.merchant(session, runtime.settings)
        merchant_id = merchant.id
    with runtime.session_factory() as session:
        created = [
            invoices.create_invoice(
                session,
                runtime.settings,
                runtime.rates,
                invoices.InvoiceRequest(merchant_id, 250_000, method),
            )
            for method in (PaymentMethod.BTC, PaymentMethod.KZTE)
        ]
        session.commit()
        invoices.publish_after_commit(runtime.session_factory, runtime.coordinator, session)
        btc = created[0]
        return btc.id, btc.btc_address or "", btc.amount_due_atomic


def _status(runtime: Runtime, invoice_id: str) -> InvoiceStatus:
    with runtime.session_factory() as session:
        invoice = session.get(Invoice, invoice_id)
        assert invoice is not None
        return invoice.status
