"""Sign-in limits: counted before the password is checked, per account and per (account, IP),
progressive delays, no IP-wide lockout, bounded parallel hashing (issue #19.5)."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from merchant_portal import security
from pos import passwords

import factories
from portal_helpers import csrf_from

Client = Callable[[str | None], FlaskClient]


class ScryptProbe:
    """Wraps the real hashlib.scrypt to count calls and the most running at once (the real
    function still runs: nothing is faked)."""

    def __init__(self, hold_seconds: float = 0.0) -> None:
        self.calls = 0
        self.running = 0
        self.most_at_once = 0
        self.hold_seconds = hold_seconds
        self._lock = threading.Lock()
        self._real = hashlib.scrypt

    def __call__(self, *args: Any, **kwargs: Any) -> bytes:
        with self._lock:
            self.calls += 1
            self.running += 1
            self.most_at_once = max(self.most_at_once, self.running)
        try:
            time.sleep(self.hold_seconds)  # widen the window in which calls could overlap
            return self._real(*args, **kwargs)
        finally:
            with self._lock:
                self.running -= 1


@pytest.fixture
def probe(monkeypatch: pytest.MonkeyPatch) -> ScryptProbe:
    passwords.burn_time("warm up")  # the dummy hash is made once, outside the count
    probe = ScryptProbe()
    monkeypatch.setattr(hashlib, "scrypt", probe)
    return probe


def _attempt(client: FlaskClient, token: str, email: str, password: str, ip: str) -> int:
    response = client.post(
        "/login",
        data={"email": email, "password": password, "csrf_token": token},
        environ_overrides={"REMOTE_ADDR": ip},
    )
    return response.status_code


def test_parallel_wrong_passwords_are_counted_before_they_are_checked(
    app: Flask, world: dict[str, int], probe: ScryptProbe
) -> None:
    clients = [app.test_client() for _ in range(40)]
    tokens = [csrf_from(client, "/login") for client in clients]
    start = threading.Barrier(len(clients))
    statuses: list[int] = []

    def guess(client: FlaskClient, token: str) -> None:
        start.wait()
        statuses.append(_attempt(client, token, "owner@a.test", "wrong guess", "10.9.9.9"))

    threads = [
        threading.Thread(target=guess, args=pair) for pair in zip(clients, tokens, strict=True)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    allowed = security.FREE_ATTEMPTS_PER_ACCOUNT_AND_IP
    assert probe.calls == allowed  # the old check-then-count evaluated all 40
    assert sorted(statuses) == [401] * allowed + [429] * (40 - allowed)
    assert probe.most_at_once <= passwords.MAX_CONCURRENT_HASHES


def test_others_behind_the_same_ip_still_sign_in(app: Flask, world: dict[str, int]) -> None:
    attacker = app.test_client()
    token = csrf_from(attacker, "/login")
    for _ in range(12):
        _attempt(attacker, token, "owner@a.test", "wrong guess", "10.1.1.1")
    assert _attempt(attacker, token, "owner@a.test", "wrong guess", "10.1.1.1") == 429
    colleague = app.test_client()  # another user of the same proxy
    token = csrf_from(colleague, "/login")
    assert _attempt(colleague, token, "cashier@a.test", factories.PASSWORD, "10.1.1.1") == 302
    # The attacked owner, from their own address, is not locked out by someone else's guesses.
    owner = app.test_client()
    token = csrf_from(owner, "/login")
    assert _attempt(owner, token, "owner@a.test", factories.PASSWORD, "10.2.2.2") == 302


def test_the_delay_doubles_and_is_capped(app: Flask) -> None:
    now = 1_000_000.0
    with app.app_context():
        for _ in range(security.FREE_ATTEMPTS_PER_ACCOUNT_AND_IP):
            assert security.reserve_login_attempt("10.3.3.3", "x@shop.test", now) == 0
        waits = []
        for _ in range(12):
            wait = security.reserve_login_attempt("10.3.3.3", "x@shop.test", now)
            assert wait > 0
            assert security.reserve_login_attempt("10.3.3.3", "x@shop.test", now + wait - 1) > 0
            now += wait
            assert security.reserve_login_attempt("10.3.3.3", "x@shop.test", now) == 0
            waits.append(wait)
    assert waits[:5] == [2, 4, 8, 16, 32]
    assert max(waits) == security.ATTEMPT_DELAY_CAP_SECONDS == 15 * 60


def test_the_account_wide_limit_slows_guesses_from_many_addresses(app: Flask) -> None:
    with app.app_context():
        for n in range(security.FREE_ATTEMPTS_PER_ACCOUNT):
            assert security.reserve_login_attempt(f"10.4.0.{n}", "y@shop.test", 5.0) == 0
        assert security.reserve_login_attempt("10.4.1.1", "y@shop.test", 5.0) > 0
        assert security.reserve_login_attempt("10.4.1.1", "z@shop.test", 5.0) == 0


def test_the_second_step_is_limited_too(app: Flask, world: dict[str, int]) -> None:
    client = app.test_client()
    token = csrf_from(client, "/login")
    assert _attempt(client, token, "ops@zone.test", factories.PASSWORD, "10.5.5.5") == 302
    token = csrf_from(client, "/login/2fa")
    statuses = [
        client.post("/login/2fa", data={"code": "000000", "csrf_token": token}).status_code
        for _ in range(security.FREE_SECOND_FACTOR_ATTEMPTS + 1)
    ]
    assert statuses[-1] == 429 and statuses.count(429) == 1


def test_the_semaphore_bounds_parallel_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    probe = ScryptProbe(hold_seconds=0.05)
    monkeypatch.setattr(hashlib, "scrypt", probe)
    threads = [threading.Thread(target=passwords.hash_password, args=("pw",)) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert probe.calls == 12
    assert probe.most_at_once == passwords.MAX_CONCURRENT_HASHES  # parallel, but bounded
