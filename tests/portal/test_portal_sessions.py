"""Sessions end on the server side: sign-out, password change or reset, disable (issue #19.6)."""

from __future__ import annotations

import re
from collections.abc import Callable

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from pos.models import User
from pos.runtime import Runtime

import factories
from portal_helpers import change_password, csrf_from, login

Client = Callable[[str | None], FlaskClient]


def _copy_cookie(source: FlaskClient, app: Flask) -> FlaskClient:
    """A second browser holding a copy of `source`'s session cookie (a stolen cookie)."""
    cookie = source.get_cookie("session")
    assert cookie is not None
    thief = app.test_client()
    thief.set_cookie("session", cookie.value)
    return thief


def _post(client: FlaskClient, path: str, form: dict[str, str], page: str) -> int:
    token = csrf_from(client, page)
    return client.post(path, data={"csrf_token": token, **form}).status_code


def test_a_copied_cookie_stops_working_after_sign_out(as_user: Client, app: Flask) -> None:
    owner = as_user("owner")
    thief = _copy_cookie(owner, app)
    assert thief.get("/merchant/").status_code == 200  # the copy works while signed in
    assert _post(owner, "/logout", {}, "/merchant/") == 302
    response = thief.get("/merchant/")
    assert response.status_code == 302 and response.headers["Location"].startswith("/login")


def test_a_cashiers_old_session_ends_when_the_owner_resets_the_password(
    as_user: Client, world: dict[str, int]
) -> None:
    cashier, owner = as_user("cashier"), as_user("owner")
    assert cashier.get("/terminal/").status_code == 200
    token = csrf_from(owner, "/merchant/cashiers")
    response = owner.post(
        f"/merchant/cashiers/{world['cashier']}/reset", data={"csrf_token": token}
    )
    assert response.status_code == 200
    assert cashier.get("/terminal/").headers["Location"].startswith("/login")
    # The one-time password works once more, but only to choose an own password.
    password = re.search(r'id="new-password">([^<]+)<', response.get_data(as_text=True))
    assert password is not None
    login(cashier, "cashier@a.test", password.group(1))
    assert cashier.get("/terminal/").headers["Location"] == "/account/password"


def test_a_password_change_ends_the_other_sessions_but_not_this_one(
    as_user: Client, app: Flask
) -> None:
    owner = as_user("owner")
    other_device = as_user("owner")
    change_password(owner, factories.PASSWORD, "a brand new owner phrase")
    assert owner.get("/merchant/").status_code == 200
    assert other_device.get("/merchant/").headers["Location"].startswith("/login")


def test_disabling_a_cashier_ends_a_copied_session(
    as_user: Client, app: Flask, runtime: Runtime, world: dict[str, int]
) -> None:
    cashier = as_user("cashier")
    copy = _copy_cookie(cashier, app)
    owner = as_user("owner")
    path = f"/merchant/cashiers/{world['cashier']}/disable"
    assert _post(owner, path, {}, "/merchant/cashiers") == 302
    assert copy.get("/terminal/").status_code == 302
    with runtime.session_factory() as session:
        user = session.scalar(select(User).where(User.id == world["cashier"]))
        assert user is not None and user.session_generation == 1
