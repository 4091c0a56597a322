"""A hung Redis (SIGSTOP) costs a web request at most its Redis budget, and never a 500.

Each test starts its own redis-server (the binary the demo uses) on a loopback port and stops
it with SIGSTOP: the kernel still accepts connections, so every call used to wait out its 3 s
socket timeout in turn (6-12 s per invoice creation). The session-wide test Redis is never
stopped. Invoice creation needs no Redis (its events are an outbox in the database, relayed
later); pages that do need it answer 503 with Retry-After.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pytest
import redis
from flask import Blueprint, Flask
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from merchant_portal import create_app
from merchant_portal.api.errors import register as register_api_errors
from merchant_portal.context import coordinator as request_coordinator
from pos import integrations, invoices
from pos.coordination import EVENT_STREAM, Coordinator, connect
from pos.errors import CoordinationUnavailableError
from pos.models import InvoiceEvent, Role
from pos.redis_guard import (
    RETRY_AFTER_SECONDS,
    CircuitBreaker,
    CircuitOpenError,
    breaker_of,
    redis_budget,
)
from pos.redis_server import redis_server_binary
from pos.runtime import Runtime, make_rate_book
from pos.settings import Settings

import factories
from portal_helpers import csrf_from, login

# Generous for a loaded 2-core CI machine, and far below the old 6-12 s (one 3 s socket
# timeout per Redis call, two to four calls per creation).
BOUND_SECONDS = 2.5
START_TIMEOUT_SECONDS = 10.0
RECOVERY_TIMEOUT_SECONDS = 15.0  # the breaker's cool-down, then one probe


@dataclass
class StoppableRedis:
    url: str
    process: subprocess.Popen[bytes]

    @contextmanager
    def stopped(self) -> Iterator[None]:
        """SIGSTOP the server for the block: it accepts connections but never answers."""
        os.kill(self.process.pid, signal.SIGSTOP)
        try:
            yield
        finally:
            os.kill(self.process.pid, signal.SIGCONT)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[StoppableRedis]:
    """A redis-server of this test only, on loopback, without persistence."""
    port = _free_port()
    process = subprocess.Popen(
        [
            redis_server_binary(),
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    try:
        probe = redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while True:
            try:
                probe.ping()
                break
            except redis.RedisError:
                assert process.poll() is None, "redis-server exited at start"
                assert time.monotonic() < deadline, "redis-server did not answer in time"
                time.sleep(0.05)
        probe.close()
        yield StoppableRedis(url, process)
    finally:
        os.kill(process.pid, signal.SIGCONT)  # a stopped process ignores SIGTERM until then
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@pytest.fixture
def hung_runtime(
    settings: Settings,
    engine: Engine,
    session_factory: sessionmaker[Session],
    own_redis: StoppableRedis,
) -> Iterator[Runtime]:
    coordinator = Coordinator(connect(own_redis.url))
    yield Runtime(
        settings,
        engine,
        session_factory,
        coordinator,
        make_rate_book(settings, coordinator),
        own_redis.url,
    )
    coordinator.client.close()


@pytest.fixture
def hung_app(hung_runtime: Runtime) -> Flask:
    return create_app(runtime=hung_runtime, test_config={"TESTING": True})


@pytest.fixture
def shop(hung_runtime: Runtime) -> dict[str, str]:
    """A merchant with a cashier and an API key (bearer token)."""
    with hung_runtime.session_factory.begin() as session:
        merchant = factories.merchant(session, hung_runtime.settings, "Shop A", "a")
        factories.user(session, "cashier@a.test", Role.CASHIER, merchant.id)
        _key, token = integrations.create_api_key(
            session, merchant.id, "till", ("invoices:read", "invoices:write")
        )
    return {"token": token, "email": "cashier@a.test"}


T = TypeVar("T")


def _timed(call: Callable[[], T]) -> tuple[T, float]:
    started = time.monotonic()
    result = call()
    return result, time.monotonic() - started


def _unpublished(runtime: Runtime, invoice_ids: list[str]) -> list[str]:
    with runtime.session_factory() as session:
        return list(
            session.scalars(
                select(InvoiceEvent.invoice_id).where(
                    InvoiceEvent.invoice_id.in_(invoice_ids), InvoiceEvent.published_at.is_(None)
                )
            )
        )


def _relay_until_published(runtime: Runtime, invoice_ids: list[str]) -> None:
    """What the worker's relay does after Redis is back (it retries the same way)."""
    deadline = time.monotonic() + RECOVERY_TIMEOUT_SECONDS
    while _unpublished(runtime, invoice_ids):
        assert time.monotonic() < deadline, "the relay never published the outbox"
        try:
            invoices.relay_unpublished(runtime.session_factory, runtime.coordinator)
        except CoordinationUnavailableError:
            time.sleep(0.2)  # the breaker's cool-down has not ended yet


def test_invoice_creation_is_fast_while_redis_is_stopped_and_nothing_is_lost(
    hung_app: Flask, hung_runtime: Runtime, shop: dict[str, str], own_redis: StoppableRedis
) -> None:
    api = hung_app.test_client()
    auth = {"Authorization": f"Bearer {shop['token']}"}
    body = {"price_tiyn": 150_000, "method": "kzte", "description": "Coffee"}
    cashier = hung_app.test_client()
    login(cashier, shop["email"], factories.PASSWORD)
    csrf = csrf_from(cashier, "/terminal/")
    warm = api.post("/api/v1/invoices", json=body, headers=auth)  # a pooled live connection
    assert warm.status_code == 201
    breaker = breaker_of(hung_runtime.coordinator.client)
    assert breaker is not None and breaker.trips == 0

    with own_redis.stopped():
        created, api_seconds = _timed(lambda: api.post("/api/v1/invoices", json=body, headers=auth))
        posted, form_seconds = _timed(
            lambda: cashier.post(
                "/terminal/invoices",
                data={"csrf_token": csrf, "amount": "2500", "method": "kzte"},
            )
        )
        assert posted.status_code == 302, posted.get_data(as_text=True)
        form_invoice = posted.headers["Location"].rsplit("/", 1)[1]
        # The live pages' fallback: polling status.json answers from the database.
        polled, poll_seconds = _timed(lambda: cashier.get(f"/i/{form_invoice}/status.json"))
        assert created.status_code == 201, created.get_json()
        api_invoice = created.get_json()["id"]
        assert polled.status_code == 200
        assert polled.get_json()["status"] == "new"
        # The events wait in the outbox while Redis cannot take them.
        waiting = sorted(_unpublished(hung_runtime, [api_invoice, form_invoice]))
        assert waiting == sorted([api_invoice, form_invoice])

    assert api_seconds < BOUND_SECONDS, f"API create took {api_seconds:.2f} s"
    assert form_seconds < BOUND_SECONDS, f"terminal form took {form_seconds:.2f} s"
    assert poll_seconds < BOUND_SECONDS, f"status.json took {poll_seconds:.2f} s"
    assert breaker.trips >= 1  # one timeout opened it; the calls after it skipped Redis

    _relay_until_published(hung_runtime, [api_invoice, form_invoice])
    stream = hung_runtime.coordinator.client.xrange(EVENT_STREAM)
    created_events = [f["invoice"] for _id, f in stream if f["type"] == "invoice.created"]
    for invoice_id in (api_invoice, form_invoice):
        assert created_events.count(invoice_id) == 1  # relayed once: nothing lost, no duplicate
    live = hung_runtime.coordinator.get_live(form_invoice)
    assert live is not None and live["status"] == "new"


def test_pages_that_need_redis_answer_503_with_retry_after(
    hung_app: Flask, shop: dict[str, str], own_redis: StoppableRedis
) -> None:
    cashier = hung_app.test_client()
    login(cashier, shop["email"], factories.PASSWORD)
    csrf = csrf_from(cashier, "/terminal/")
    # "Shopper chooses": the offer needs Redis to create at most one invoice.
    offered = cashier.post(
        "/terminal/invoices", data={"csrf_token": csrf, "amount": "3000", "method": "choose"}
    )
    assert offered.status_code == 302
    wait_page = offered.headers["Location"]  # /terminal/choice?t=<token>
    token = wait_page.split("t=", 1)[1]
    shopper = hung_app.test_client()

    with own_redis.stopped():
        page, page_seconds = _timed(lambda: cashier.get(wait_page))
        status, status_seconds = _timed(
            lambda: cashier.get(f"/terminal/choice/status.json?t={token}")
        )
        pick, pick_seconds = _timed(lambda: shopper.get(f"/c/{token}"))

    for response in (page, status, pick):
        assert response.status_code == 503, response.get_data(as_text=True)
        assert response.headers["Retry-After"] == str(RETRY_AFTER_SECONDS)
    assert "try again" in page.get_data(as_text=True)
    assert "127.0.0.1" not in page.get_data(as_text=True)
    assert status.get_json()["error"] == "CoordinationUnavailableError"
    assert "try again" in status.get_json()["message"]
    assert "try again" in pick.get_data(as_text=True)
    for seconds in (page_seconds, status_seconds, pick_seconds):
        assert seconds < BOUND_SECONDS


def test_the_api_answers_503_json_with_retry_after_when_redis_is_stopped(
    hung_app: Flask, own_redis: StoppableRedis
) -> None:
    # No /api/v1 route needs Redis today; this one does, behind the API's own error handlers.
    probe = Blueprint("needs_redis", __name__, url_prefix="/api/v1/_probe")
    register_api_errors(probe)

    @probe.get("/live/<invoice_id>")
    def live(invoice_id: str) -> dict[str, object]:
        return {"live": request_coordinator().get_live(invoice_id)}

    @probe.get("/raw")
    def raw() -> dict[str, object]:  # a client call nobody wrapped: still no 500
        return {"value": request_coordinator().client.get("k")}

    hung_app.register_blueprint(probe)
    client = hung_app.test_client()
    assert client.get("/api/v1/_probe/live/x").status_code == 200
    assert client.get("/api/v1/_probe/raw").status_code == 200
    with own_redis.stopped():
        answers = [
            _timed(lambda p=p: client.get(p))
            for p in ("/api/v1/_probe/live/x", "/api/v1/_probe/raw")
        ]
    for response, seconds in answers:
        assert response.status_code == 503, response.get_data(as_text=True)
        assert response.headers["Retry-After"] == str(RETRY_AFTER_SECONDS)
        error = response.get_json()["error"]
        assert error["code"] == "coordination_unavailable" and "try again" in error["message"]
        assert seconds < BOUND_SECONDS


def test_outside_a_request_one_timeout_opens_the_breaker_and_redis_is_used_again_after(
    own_redis: StoppableRedis,
) -> None:
    coordinator = Coordinator(connect(own_redis.url, socket_timeout=0.5))
    try:
        assert coordinator.get_live("inv") is None
        with own_redis.stopped():
            with pytest.raises(CoordinationUnavailableError) as first:
                coordinator.get_live("inv")
            assert isinstance(first.value.__cause__, redis.TimeoutError)  # it waited once
            with pytest.raises(CoordinationUnavailableError) as second:
                coordinator.get_live("inv")
            assert isinstance(second.value.__cause__, CircuitOpenError)  # …and not again
        deadline = time.monotonic() + RECOVERY_TIMEOUT_SECONDS
        while True:
            try:
                assert coordinator.get_live("inv") is None
                break
            except CoordinationUnavailableError:
                assert time.monotonic() < deadline, "Redis was never used again"
                time.sleep(0.1)
        breaker = breaker_of(coordinator.client)
        assert breaker is not None and not breaker.is_open
    finally:
        coordinator.client.close()


def test_a_request_budget_bounds_all_its_redis_waits(own_redis: StoppableRedis) -> None:
    # A breaker with no cool-down lets every call wait: only the budget bounds their sum.
    client = connect(own_redis.url, socket_timeout=5.0, breaker=CircuitBreaker(0.0))
    errors: list[redis.RedisError] = []
    try:
        client.ping()
        with own_redis.stopped(), redis_budget(0.4):
            started = time.monotonic()
            for _ in range(3):
                try:
                    client.get("k")
                except redis.RedisError as exc:
                    errors.append(exc)
            seconds = time.monotonic() - started
    finally:
        client.close()
    assert len(errors) == 3 and all(isinstance(e, redis.TimeoutError) for e in errors)
    # The first call waited out the budget; the others did not wait at all.
    assert all("used up" in str(e.__context__) for e in errors[1:])
    assert seconds < BOUND_SECONDS  # three 5 s socket timeouts would be 15 s


def test_a_refused_connection_does_not_open_the_breaker() -> None:
    # Nothing listens on port 1: refused at once, so a restarted Redis is usable at once.
    client = connect("redis://127.0.0.1:1/0")
    with pytest.raises(redis.ConnectionError):
        client.get("k")
    breaker = breaker_of(client)
    assert breaker is not None and not breaker.is_open
    client.close()


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_breaker_opens_on_failure_lets_one_probe_through_and_closes_on_success() -> None:
    clock = _Clock()
    breaker = CircuitBreaker(2.0, clock)
    breaker.check()  # closed
    breaker.record_failure()
    with pytest.raises(CircuitOpenError):
        breaker.check()
    clock.now += 2.5
    breaker.check()  # the cool-down ended: this thread probes…
    breaker.check()  # …for all of its call (connect, handshake, command)
    others: list[BaseException] = []

    def other() -> None:
        try:
            breaker.check()
        except CircuitOpenError as exc:
            others.append(exc)

    thread = threading.Thread(target=other)
    thread.start()
    thread.join(timeout=5)
    assert len(others) == 1  # another thread still skips Redis while the probe waits
    breaker.record_failure()  # the probe timed out too
    with pytest.raises(CircuitOpenError):
        breaker.check()
    clock.now += 2.5
    breaker.check()
    breaker.record_success()
    assert not breaker.is_open
    thread = threading.Thread(target=other)
    thread.start()
    thread.join(timeout=5)
    assert len(others) == 1  # closed for everyone
