"""TOTP two-factor sign-in: RFC 6238, enrolment, recovery codes, replay (issue #19.7)."""

from __future__ import annotations

import base64
import re
from collections.abc import Callable

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from pos import accounts, totp
from pos.models import AuditLog, Role, User
from pos.runtime import Runtime

import factories
from portal_helpers import csrf_from

Client = Callable[[str | None], FlaskClient]


def test_rfc_6238_test_vectors() -> None:
    # RFC 6238 appendix B (SHA-1, secret "12345678901234567890"), cut to 6 digits.
    secret = base64.b32encode(b"12345678901234567890").decode()
    assert totp.code_at(secret, 59) == "287082"
    assert totp.code_at(secret, 1111111109) == "081804"
    assert totp.code_at(secret, 20000000000) == "353130"


def test_verify_accepts_one_step_of_drift_and_no_replay() -> None:
    secret, now = totp.new_secret(), 1_700_000_000.0
    step = totp.step_at(now)
    assert totp.verify(secret, totp.code_at(secret, now - 30), None, now) == step - 1
    assert totp.verify(secret, totp.code_at(secret, now + 30), None, now) == step + 1
    assert totp.verify(secret, totp.code_at(secret, now - 60), None, now) is None
    assert totp.verify(secret, totp.code_at(secret, now), step, now) is None  # used
    assert totp.verify(secret, "12345", None, now) is None


def _sign_in_password(client: FlaskClient, email: str) -> str:
    token = csrf_from(client, "/login")
    response = client.post(
        "/login", data={"email": email, "password": factories.PASSWORD, "csrf_token": token}
    )
    assert response.status_code == 302
    return str(response.headers["Location"])


def _second_step(client: FlaskClient, code: str) -> int:
    token = csrf_from(client, "/login/2fa")
    return client.post("/login/2fa", data={"code": code, "csrf_token": token}).status_code


def _enrol(client: FlaskClient) -> tuple[str, list[str]]:
    response = client.get("/account/2fa")
    page = response.get_data(as_text=True)
    assert response.headers["Cache-Control"] == "no-store" and "<svg" in page
    secret = re.search(r'id="totp-secret">([A-Z2-7]+)<', page)
    assert secret is not None
    token = csrf_from(client, "/account/2fa")
    wrong = client.post("/account/2fa/enable", data={"code": "000000", "csrf_token": token})
    assert wrong.status_code == 400 or totp.code_at(secret.group(1)) == "000000"
    response = client.post(
        "/account/2fa/enable",
        data={"code": totp.code_at(secret.group(1)), "csrf_token": token},
    )
    assert response.status_code == 200 and response.headers["Cache-Control"] == "no-store"
    codes = re.findall(r"<li>([a-z2-7]{5}-[a-z2-7]{5})</li>", response.get_data(as_text=True))
    assert len(codes) == 10
    return secret.group(1), codes


def test_an_owner_enables_2fa_and_signs_in_with_codes(
    as_user: Client, app: Flask, runtime: Runtime
) -> None:
    owner = as_user("owner")
    secret, codes = _enrol(owner)
    assert "two-factor-on" in owner.get("/account/2fa").get_data(as_text=True)
    with runtime.session_factory() as session:
        user = session.scalar(select(User).where(User.email == "owner@a.test"))
        assert user is not None and user.totp_secret == secret
        assert codes[0] not in str(user.recovery_code_hashes)  # stored hashed
        enrol_step = user.totp_last_step
        assert enrol_step is not None
    browser = app.test_client()
    assert _sign_in_password(browser, "owner@a.test") == "/login/2fa"
    # Not signed in until the second step.
    assert browser.get("/merchant/").headers["Location"].startswith("/login")
    # The code used to enrol is spent: the same step is refused (replay).
    assert _second_step(browser, totp.code_for_step(secret, enrol_step)) == 401
    assert _second_step(browser, codes[0]) == 302
    assert browser.get("/merchant/").status_code == 200
    # A recovery code works once only.
    again = app.test_client()
    _sign_in_password(again, "owner@a.test")
    assert _second_step(again, codes[0]) == 401
    assert _second_step(again, codes[1].upper()) == 302
    with runtime.session_factory() as session:
        actions = list(session.scalars(select(AuditLog.action)))
    assert "user.2fa_enabled" in actions and actions.count("user.recovery_code_used") == 2
    assert "auth.2fa_failed" in actions


def test_a_totp_code_is_accepted_once(as_user: Client, app: Flask, world: dict[str, int]) -> None:
    # The factories' operator has factories.TOTP_SECRET.
    first, second = app.test_client(), app.test_client()
    assert _sign_in_password(first, "ops@zone.test") == "/login/2fa"
    _sign_in_password(second, "ops@zone.test")
    code = totp.code_at(factories.TOTP_SECRET)
    assert _second_step(first, code) == 302
    assert _second_step(second, code) == 401
    assert first.get("/operator/").status_code == 200


def test_an_owner_turns_2fa_off_with_the_password(as_user: Client, app: Flask) -> None:
    owner = as_user("owner")
    _enrol(owner)
    token = csrf_from(owner, "/account/2fa")
    bad = owner.post("/account/2fa/disable", data={"password": "nope", "csrf_token": token})
    assert bad.status_code == 400
    response = owner.post(
        "/account/2fa/disable", data={"password": factories.PASSWORD, "csrf_token": token}
    )
    assert response.status_code == 302 and owner.get("/merchant/").status_code == 200
    assert _sign_in_password(app.test_client(), "owner@a.test") == "/merchant/"


def test_operators_cannot_turn_2fa_off(as_user: Client) -> None:
    operator = as_user("operator")
    token = csrf_from(operator, "/account/2fa")
    response = operator.post(
        "/account/2fa/disable", data={"password": factories.PASSWORD, "csrf_token": token}
    )
    assert response.status_code == 403


def test_an_operator_without_2fa_must_enrol_first(
    app: Flask, runtime: Runtime, world: dict[str, int]
) -> None:
    with runtime.session_factory.begin() as session:
        accounts.create_user(session, "new-ops@zone.test", factories.PASSWORD, Role.OPERATOR)
    client = app.test_client()
    assert _sign_in_password(client, "new-ops@zone.test") == "/operator/"
    for path in ("/operator/", "/operator/merchants", "/reports/"):
        assert client.get(path).headers["Location"] == "/account/2fa"
    assert 'id="must-enrol"' in client.get("/account/2fa").get_data(as_text=True)
    _enrol(client)
    assert client.get("/operator/").status_code == 200
    assert _sign_in_password(app.test_client(), "new-ops@zone.test") == "/login/2fa"


def test_a_recovery_code_raced_by_two_requests_lets_one_in(
    runtime: Runtime, world: dict[str, int]
) -> None:
    from pos import credentials

    with runtime.session_factory.begin() as session:
        user = session.get(User, world["owner"])
        assert user is not None
        secret = totp.new_secret()
        [code, *_rest] = credentials.enable_totp(session, user, secret, totp.code_at(secret))
    # Two sign-ins load the user before either has used the code (two sessions, one database).
    first, second = runtime.session_factory(), runtime.session_factory()
    try:
        one, two = first.get(User, world["owner"]), second.get(User, world["owner"])
        assert one is not None and two is not None
        assert credentials.check_second_factor(first, one, code) == "recovery"
        first.commit()
        assert credentials.check_second_factor(second, two, code) is None
        second.commit()
    finally:
        first.close()
        second.close()
    with runtime.session_factory() as session:
        user = session.get(User, world["owner"])
        assert user is not None and len(user.recovery_code_hashes) == 9
        assert user.recovery_codes_used == 1
