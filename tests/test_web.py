"""The portal through Flask's test client: health, sign-in, roles, tenant isolation, forms."""

import re

import pytest
from flask import Flask
from flask.testing import FlaskClient

from pos import invoices
from pos.coordination import Coordinator, connect
from pos.models import AuditLog, Merchant, Role
from pos.runtime import Runtime
from pos.states import PaymentMethod

import factories
from portal_helpers import csrf_from, login


@pytest.fixture
def world(runtime: Runtime) -> dict[str, int]:
    with runtime.session_factory.begin() as session:
        shop = factories.merchant(session, runtime.settings, "Shop A", "a")
        other = factories.merchant(session, runtime.settings, "Shop B", "b")
        factories.user(session, "owner@a.test", Role.OWNER, shop.id)
        factories.user(session, "cashier@a.test", Role.CASHIER, shop.id)
        factories.user(session, "owner@b.test", Role.OWNER, other.id)
        factories.user(session, "ops@zone.test", Role.OPERATOR)
        return {"shop": shop.id, "other": other.id}


def _invoice(runtime: Runtime, merchant_id: int) -> str:
    with runtime.session_factory() as session:
        invoice = invoices.create_invoice(
            session,
            runtime.settings,
            runtime.rates,
            invoices.InvoiceRequest(merchant_id, 250_000, PaymentMethod.KZTE),
        )
        session.commit()
        return invoice.id


def test_healthz_reports_database_and_redis(client: FlaskClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json == {
        "status": "ok",
        "database": "ok",
        "redis": "ok",
        "mode": "demo",
        "workers": 0,  # no worker registered: no duty is expected to beat
        "duties": {},
        "stale_duties": [],
    }


def test_healthz_degraded_when_redis_is_gone(runtime: Runtime) -> None:
    from merchant_portal import create_app

    runtime.coordinator = Coordinator(connect("redis://127.0.0.1:1/0"))
    response = create_app(runtime=runtime).test_client().get("/healthz")
    assert response.status_code == 503
    assert response.json["redis"] == "unreachable" and response.json["database"] == "ok"


@pytest.mark.parametrize(
    ("email", "home"),
    [
        ("owner@a.test", "/merchant/"),
        ("cashier@a.test", "/terminal/"),
        ("ops@zone.test", "/operator/"),
    ],
)
def test_each_role_lands_on_its_page(
    client: FlaskClient, world: dict[str, int], email: str, home: str
) -> None:
    login(client, email, factories.PASSWORD)
    response = client.get("/")
    assert response.headers["Location"] == home
    assert client.get(home).status_code == 200


def test_login_without_csrf_token_is_refused(client: FlaskClient, world: dict[str, int]) -> None:
    response = client.post("/login", data={"email": "owner@a.test", "password": factories.PASSWORD})
    assert response.status_code == 400
    assert "This form has expired" in response.get_data(as_text=True)  # the CSRF refusal


def test_wrong_password_is_401_and_audited(
    client: FlaskClient, world: dict[str, int], runtime: Runtime
) -> None:
    token = csrf_from(client, "/login")
    response = client.post(
        "/login", data={"email": "owner@a.test", "password": "nope", "csrf_token": token}
    )
    assert response.status_code == 401
    assert "Wrong e-mail or password" in response.get_data(as_text=True)
    with runtime.session_factory() as session:
        actions = [row.action for row in session.query(AuditLog).all()]
    assert "auth.login_failed" in actions


def test_login_rate_limit_gives_a_clear_message(client: FlaskClient, world: dict[str, int]) -> None:
    token = csrf_from(client, "/login")
    for _ in range(10):
        client.post(
            "/login", data={"email": "owner@a.test", "password": "wrong", "csrf_token": token}
        )
    response = client.post(
        "/login",
        data={"email": "owner@a.test", "password": factories.PASSWORD, "csrf_token": token},
    )
    assert response.status_code == 429
    assert "Too many sign-in attempts" in response.get_data(as_text=True)


def test_login_renews_the_session_and_sets_cookie_flags(
    client: FlaskClient, world: dict[str, int]
) -> None:
    token = csrf_from(client, "/login")
    response = client.post(
        "/login",
        data={"email": "owner@a.test", "password": factories.PASSWORD, "csrf_token": token},
    )
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie


def test_open_redirect_after_login_is_ignored(client: FlaskClient, world: dict[str, int]) -> None:
    token = csrf_from(client, "/login")
    response = client.post(
        "/login?next=https://evil.example/",
        data={"email": "owner@a.test", "password": factories.PASSWORD, "csrf_token": token},
    )
    assert response.headers["Location"] == "/merchant/"


@pytest.mark.parametrize(
    ("email", "path", "status"),
    [
        ("cashier@a.test", "/operator/", 403),
        ("cashier@a.test", "/merchant/", 403),
        ("owner@a.test", "/operator/", 403),
        ("ops@zone.test", "/terminal/", 403),
        ("ops@zone.test", "/merchant/", 403),
    ],
)
def test_roles_are_enforced(
    client: FlaskClient, world: dict[str, int], email: str, path: str, status: int
) -> None:
    login(client, email, factories.PASSWORD)
    assert client.get(path).status_code == status


@pytest.mark.parametrize("path", ["/terminal/", "/merchant/", "/operator/"])
def test_anonymous_users_are_sent_to_login(client: FlaskClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 302 and response.headers["Location"].startswith("/login")


def test_owner_sees_only_their_own_invoices(
    client: FlaskClient, world: dict[str, int], runtime: Runtime
) -> None:
    mine, theirs = _invoice(runtime, world["shop"]), _invoice(runtime, world["other"])
    login(client, "owner@a.test", factories.PASSWORD)
    page = client.get("/merchant/invoices/").get_data(as_text=True)
    assert mine in page and theirs not in page


def test_terminal_rejects_bad_amounts_with_a_field_message(
    client: FlaskClient, world: dict[str, int]
) -> None:
    login(client, "cashier@a.test", factories.PASSWORD)
    token = csrf_from(client, "/terminal/")
    for amount, message in [
        ("", "not an amount"),
        ("abc", "not an amount"),
        ("0", "more than zero"),
        ("50", "smallest invoice"),
        ("-10", "not an amount"),
    ]:
        response = client.post(
            "/terminal/invoices", data={"amount": amount, "method": "kzte", "csrf_token": token}
        )
        assert response.status_code == 400
        assert message in response.get_data(as_text=True)
    response = client.post(
        "/terminal/invoices", data={"amount": "2500", "method": "doge", "csrf_token": token}
    )
    assert response.status_code == 400 and "choose BTC or KZTE" in response.get_data(as_text=True)


def test_terminal_creates_an_invoice_and_shows_checkout(
    client: FlaskClient, world: dict[str, int]
) -> None:
    login(client, "cashier@a.test", factories.PASSWORD)
    token = csrf_from(client, "/terminal/")
    response = client.post(
        "/terminal/invoices", data={"amount": "2 500", "method": "btc", "csrf_token": token}
    )
    assert response.status_code == 302
    terminal_screen = response.headers["Location"]
    assert re.fullmatch(r"/terminal/invoices/[a-z0-9]{20}", terminal_screen)
    assert "bitcoin:bcrt1q" in client.get(terminal_screen).get_data(as_text=True)
    location = "/i/" + terminal_screen.rsplit("/", 1)[1]
    page = client.get(location).get_data(as_text=True)
    assert "2,500.00 ₸" in page and "bitcoin:bcrt1q" in page
    svg = client.get(f"{location}/qr.svg")
    assert svg.status_code == 200 and svg.mimetype == "image/svg+xml"
    status = client.get(f"{location}/status.json").json
    assert status["status"] == "new" and status["due_atomic"] > 0


def test_checkout_of_unknown_invoice_is_404(client: FlaskClient) -> None:
    assert client.get("/i/doesnotexist").status_code == 404
    assert client.get("/i/doesnotexist/status.json").status_code == 404
    assert client.get("/i/doesnotexist/qr.svg").status_code == 404


def test_suspended_merchant_terminal_refuses_new_invoices(
    client: FlaskClient, world: dict[str, int], runtime: Runtime
) -> None:
    login(client, "owner@a.test", factories.PASSWORD)
    token = csrf_from(client, "/terminal/")
    from pos.models import MerchantStatus

    with runtime.session_factory.begin() as session:
        session.get(Merchant, world["shop"]).status = MerchantStatus.SUSPENDED  # type: ignore[union-attr]
    response = client.post(
        "/terminal/invoices", data={"amount": "2500", "method": "kzte", "csrf_token": token}
    )
    assert response.status_code == 400 and "suspended" in response.get_data(as_text=True)


def test_security_headers(client: FlaskClient) -> None:
    headers = client.get("/login").headers
    assert "script-src 'self'" in headers["Content-Security-Policy"]
    assert "unsafe-inline" not in headers["Content-Security-Policy"]
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert "Strict-Transport-Security" not in headers  # demo mode runs on plain http


def test_production_mode_sends_hsts(runtime: Runtime) -> None:
    from merchant_portal import create_app
    from pos.settings import Mode

    runtime.settings = runtime.settings.with_overrides(mode=Mode.PRODUCTION)
    app: Flask = create_app(runtime=runtime)
    assert "max-age" in app.test_client().get("/login").headers["Strict-Transport-Security"]
    assert app.config["SESSION_COOKIE_SECURE"] is True


def test_logout_needs_post_with_csrf(client: FlaskClient, world: dict[str, int]) -> None:
    login(client, "owner@a.test", factories.PASSWORD)
    assert client.get("/logout").status_code == 405
    assert client.post("/logout").status_code == 400
    token = csrf_from(client, "/merchant/")
    assert client.post("/logout", data={"csrf_token": token}).status_code == 302
    assert client.get("/merchant/").status_code == 302


def test_templates_carry_no_inline_script(
    client: FlaskClient, world: dict[str, int], runtime: Runtime
) -> None:
    invoice_id = _invoice(runtime, world["shop"])
    page = client.get(f"/i/{invoice_id}").get_data(as_text=True)
    assert re.search(r"<script(?![^>]*\bsrc=)[^>]*>", page) is None
