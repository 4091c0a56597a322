"""Change-your-password, the forced change of one-time passwords, the policy (issue #19.7)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from pos.models import AuditLog, User
from pos.password_policy import PasswordPolicyError, check_password, common_passwords
from pos.passwords import MIN_PASSWORD_LENGTH, verify_password
from pos.runtime import Runtime

import factories
from portal_helpers import csrf_from

Client = Callable[[str | None], FlaskClient]


def _change(
    client: FlaskClient, current: str, new: str, confirm: str | None = None, **headers: str
) -> tuple[int, str]:
    token = csrf_from(client, "/account/password")
    response = client.post(
        "/account/password",
        data={
            "csrf_token": token,
            "current_password": current,
            "new_password": new,
            "confirm_password": new if confirm is None else confirm,
        },
        headers=headers,
    )
    return response.status_code, response.get_data(as_text=True)


def test_the_shipped_common_list_is_loaded() -> None:
    assert len(common_passwords()) > 19_000 and "password1234" in common_passwords()


@pytest.mark.parametrize(
    ("password", "reason"),
    [
        ("short", "short"),
        ("password1234", "common"),  # in the shipped list
        ("PASSWORD1234", "common"),  # compared lowercased
        ("aaaaaaaaaaaaaa", "common"),  # too few distinct characters
        ("owner@a.test", "email"),
        ("x" * 300, "long"),
    ],
)
def test_the_policy_refuses(password: str, reason: str) -> None:
    with pytest.raises(PasswordPolicyError) as caught:
        check_password(password, "owner@a.test")
    assert caught.value.reason == reason
    assert MIN_PASSWORD_LENGTH >= 12


def test_change_password_checks_and_audits(as_user: Client, runtime: Runtime) -> None:
    owner = as_user("owner")
    status, page = _change(owner, "not the password", "a fine new phrase")
    assert status == 400 and 'id="current_password-error"' in page
    status, page = _change(owner, factories.PASSWORD, "password1234")
    assert status == 400 and "too common" in page
    status, page = _change(owner, factories.PASSWORD, "a fine new phrase", "another phrase")
    assert status == 400 and 'id="confirm_password-error"' in page
    status, page = _change(owner, factories.PASSWORD, "owner@a.test")
    assert status == 400 and "e-mail address" in page
    status, _ = _change(owner, factories.PASSWORD, "a fine new phrase")
    assert status == 302
    with runtime.session_factory() as session:
        user = session.scalar(select(User).where(User.email == "owner@a.test"))
        assert user is not None and verify_password(user.password_hash, "a fine new phrase")
        actions = list(session.scalars(select(AuditLog.action)))
    assert "user.password_changed" in actions


def test_policy_errors_are_translated(as_user: Client) -> None:
    owner = as_user("owner")
    status, page = _change(owner, factories.PASSWORD, "password1234", **{"Accept-Language": "ru"})
    assert status == 400 and "слишком распространён" in page
    status, page = _change(owner, factories.PASSWORD, "short", **{"Accept-Language": "kk"})
    assert status == 400 and "кемінде 12" in page


def test_a_one_time_password_must_be_changed_before_any_page(
    as_user: Client, runtime: Runtime, world: dict[str, int]
) -> None:
    with runtime.session_factory.begin() as session:
        user = session.get(User, world["cashier"])
        assert user is not None
        user.must_change_password = True
    cashier = as_user("cashier")
    for path in ("/terminal/", "/merchant/", "/account/2fa"):
        assert cashier.get(path).headers["Location"] == "/account/password"
    page = cashier.get("/account/password").get_data(as_text=True)
    assert 'id="must-change"' in page
    assert _change(cashier, factories.PASSWORD, "the cashier's own phrase")[0] == 302
    assert cashier.get("/terminal/").status_code == 200
    with runtime.session_factory() as session:
        user = session.get(User, world["cashier"])
        assert user is not None and not user.must_change_password
