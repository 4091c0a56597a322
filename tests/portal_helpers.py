"""Helpers for driving the portal like a browser does (CSRF tokens from the page)."""

from __future__ import annotations

import re

from flask.testing import FlaskClient
from sqlalchemy import select

from pos import totp
from pos.models import User
from pos.runtime import Runtime

_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_from(client: FlaskClient, path: str) -> str:
    """Read the CSRF token from a page, as a browser would."""
    page = client.get(path).get_data(as_text=True)
    match = _CSRF.search(page)
    assert match, f"no CSRF token on {path}"
    return match.group(1)


def login(client: FlaskClient, email: str, password: str) -> None:
    """Sign in; for a user with two-factor sign-in (the factories' operators), answer the
    second step with the current code of factories.TOTP_SECRET."""
    token = csrf_from(client, "/login")
    response = client.post(
        "/login", data={"email": email, "password": password, "csrf_token": token}
    )
    assert response.status_code == 302, response.get_data(as_text=True)
    if response.headers["Location"] == "/login/2fa":
        complete_second_factor(client, email)


def complete_second_factor(client: FlaskClient, email: str) -> None:
    from factories import TOTP_SECRET

    runtime: Runtime = client.application.extensions["cryptocity"]
    with runtime.session_factory.begin() as session:
        user = session.scalar(select(User).where(User.email == email))
        assert user is not None and user.totp_secret == TOTP_SECRET
        # Tests sign one operator in several times within a 30 s step; a code is accepted only
        # once, so forget the step used before (the replay rule has its own test).
        user.totp_last_step = None
    token = csrf_from(client, "/login/2fa")
    response = client.post(
        "/login/2fa", data={"code": totp.code_at(TOTP_SECRET), "csrf_token": token}
    )
    assert response.status_code == 302, response.get_data(as_text=True)


def change_password(client: FlaskClient, current: str, new: str) -> None:
    """Choose a new password on /account/password (as after a one-time password)."""
    token = csrf_from(client, "/account/password")
    response = client.post(
        "/account/password",
        data={
            "csrf_token": token,
            "current_password": current,
            "new_password": new,
            "confirm_password": new,
        },
    )
    assert response.status_code == 302, response.get_data(as_text=True)
