"""Every route's access rules: anonymous, cashier, owner, another merchant's owner, operator.

PAGES and POSTS name every rule of the app's url_map (`test_every_route_has_an_access_entry`
fails, listing the rule, when one is added without an entry). `{mine}`/`{theirs}` and the
`my_…`/`their_…` ids come from tests/portal/route_catalog.py: shop A's people must get 404 (or
a refusal that changes nothing) on shop B's invoices, cashiers, products, keys, webhooks,
deliveries, refunds, fee invoices and statements.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from flask import Flask
from flask.testing import FlaskClient
from route_catalog import API_PREFIX, missing_message, route_ids, rules_of
from werkzeug.exceptions import MethodNotAllowed, NotFound
from werkzeug.routing import RequestRedirect

from pos.runtime import Runtime
from settlement.ledger.models import FeeInvoice, FeeInvoiceStatus, Refund, RefundStatus

from portal_helpers import csrf_from

# (path with placeholders, expected status per who)
ANON, CASHIER, OWNER, OPERATOR = "anon", "cashier", "owner", "operator"
LOGIN = 302  # anonymous users are sent to the sign-in page
SEE = 303  # a list page's action answers "see the list" (with a flashed refusal)
WHO = [ANON, CASHIER, OWNER, OPERATOR]


def _all(status: int) -> dict[str, int]:
    return {ANON: status, CASHIER: status, OWNER: status, OPERATOR: status}


def _only(roles: tuple[str, ...], status: int = 200, other: int = 403) -> dict[str, int]:
    return {ANON: LOGIN, **{who: status if who in roles else other for who in WHO[1:]}}


OWNER_ONLY = _only((OWNER,))
OPERATOR_ONLY = _only((OPERATOR,))
TILL = _only((CASHIER, OWNER))

PAGES: list[tuple[str, dict[str, int]]] = [
    ("/", {ANON: 302, CASHIER: 302, OWNER: 302, OPERATOR: 302}),
    ("/terminal/", TILL),
    ("/account/password", _only((CASHIER, OWNER, OPERATOR))),
    ("/account/2fa", _only((OWNER, OPERATOR))),
    ("/login/2fa", _all(302)),  # no sign-in pending: back to the sign-in page
    ("/terminal/cart", TILL),
    ("/terminal/cart?category=Drinks", TILL),
    ("/terminal/quote?amount=2500&tip=10", TILL),
    ("/terminal/invoices/{mine}", TILL),
    ("/terminal/invoices/{theirs}", _only((CASHIER, OWNER), 404)),
    ("/terminal/choice?t={my_choice}", TILL),
    ("/terminal/choice?t={their_choice}", _only((CASHIER, OWNER), 404)),
    ("/terminal/choice/status.json?t={my_choice}", TILL),
    ("/terminal/choice/status.json?t={their_choice}", _only((CASHIER, OWNER), 404)),
    ("/terminal/choice/qr.svg?t={my_choice}", TILL),
    ("/terminal/choice/qr.svg?t={their_choice}", _only((CASHIER, OWNER), 404)),
    ("/merchant/", OWNER_ONLY),
    ("/merchant/?period=week", OWNER_ONLY),
    ("/merchant/dashboard/summary.csv", OWNER_ONLY),
    ("/merchant/dashboard/products.csv?period=today", OWNER_ONLY),
    ("/merchant/dashboard/nope.csv", _only((OWNER,), 404)),
    ("/merchant/setup", _only((OWNER,), 302)),
    ("/merchant/setup/profile", OWNER_ONLY),
    ("/merchant/setup/bitcoin", OWNER_ONLY),
    ("/merchant/setup/solana", OWNER_ONLY),
    ("/merchant/setup/policies", OWNER_ONLY),
    ("/merchant/setup/nope", _only((OWNER,), 404)),
    ("/merchant/cashiers", OWNER_ONLY),
    ("/merchant/products", OWNER_ONLY),
    ("/merchant/branding", OWNER_ONLY),
    ("/merchant/integrations/", OWNER_ONLY),
    ("/merchant/integrations/webhooks/{my_hook}", OWNER_ONLY),
    ("/merchant/integrations/webhooks/{their_hook}", _only((OWNER,), 404)),
    ("/merchant/invoices/", OWNER_ONLY),
    ("/merchant/invoices/export.csv", OWNER_ONLY),
    ("/merchant/invoices/{mine}", OWNER_ONLY),
    ("/merchant/invoices/{theirs}", _only((OWNER,), 404)),
    ("/refunds/", _only((OWNER, OPERATOR))),
    ("/fees/", _only((OWNER, OPERATOR))),
    ("/reports/statement", {ANON: LOGIN, CASHIER: 403, OWNER: 302, OPERATOR: 200}),
    ("/reports/merchants/{shop}/statement", _only((OWNER, OPERATOR))),
    (
        "/reports/merchants/{other}/statement",
        {ANON: LOGIN, CASHIER: 403, OWNER: 404, OPERATOR: 200},
    ),
    ("/reports/merchants/{shop}/statement.csv", _only((OWNER, OPERATOR))),
    (
        "/reports/merchants/{other}/statement.csv",
        {ANON: LOGIN, CASHIER: 403, OWNER: 404, OPERATOR: 200},
    ),
    ("/operator/", OPERATOR_ONLY),
    ("/operator/merchants", OPERATOR_ONLY),
    ("/operator/audit", OPERATOR_ONLY),
    ("/operator/audit?merchant={other}&from=2026-01-01", OPERATOR_ONLY),
    ("/operator/audit.csv", OPERATOR_ONLY),
    ("/operator/rates/", OPERATOR_ONLY),
    ("/reports/zone", OPERATOR_ONLY),
    ("/reports/zone/volume.csv", OPERATOR_ONLY),
    ("/reports/zone/nope.csv", _only((OPERATOR,), 404)),
    ("/reports/payouts", OPERATOR_ONLY),
    ("/reports/payouts.csv", OPERATOR_ONLY),
    ("/reports/reconcile", OPERATOR_ONLY),
    ("/reports/reconcile/nope.csv", _only((OPERATOR,), 404)),
    ("/reports/conversions", OPERATOR_ONLY),
    ("/reports/conversions.csv", OPERATOR_ONLY),
    ("/reports/balances", OPERATOR_ONLY),
    ("/reports/balances.csv", OPERATOR_ONLY),
    # Public pages: the shopper has no account.
    ("/i/{mine}", _all(200)),
    ("/i/{mine}/receipt", _all(200)),
    ("/i/{mine}/status.json", _all(200)),
    ("/i/{mine}/qr.svg", _all(200)),
    ("/i/{mine}/events", _all(200)),
    ("/i/nope/events", _all(404)),
    ("/c/{my_choice}", _all(200)),
    ("/c/not-a-token", _all(400)),
    ("/r/{their_refund_token}", _all(200)),
    ("/r/not-a-token", _all(404)),
    # Images and accent stylesheets are public (the checkout shows them) and named by content.
    ("/media/{my_image}.webp", _all(200)),
    ("/media/{their_logo}.webp", _all(200)),
    ("/media/{my_image}.png", _all(404)),
    ("/media/nope.webp", _all(404)),
    ("/media/accent/0b6e4f.css", _all(200)),
    ("/media/accent/ffffff.css", _all(404)),  # unreadable with white text: never served
    ("/login", _all(200)),
    ("/lang/ru?next=/login", _all(302)),
    ("/healthz", _all(200)),
    ("/metrics", _all(200)),  # no METRICS_TOKEN in the tests; with one it answers 401
]

# POST routes: (path, expected status per who) - anonymous to login, wrong role 403. The body is
# only a CSRF token, so the allowed role usually gets its form's 400 (or a flashed refusal).
POSTS: list[tuple[str, dict[str, int]]] = [
    ("/login", _all(401)),  # no e-mail, no password
    ("/login/2fa", _all(302)),  # no sign-in pending
    ("/account/password", _only((CASHIER, OWNER, OPERATOR), 400)),
    ("/account/2fa/enable", _only((OWNER, OPERATOR), 302)),  # no enrolment started
    ("/account/2fa/disable", _only((OWNER,), 302)),  # the owner has no 2FA to turn off
    ("/terminal/invoices", _only((CASHIER, OWNER), 400)),
    ("/c/{my_choice}", _all(400)),
    ("/r/{their_refund_token}", _all(422)),
    ("/merchant/setup/profile", _only((OWNER,), 400)),
    ("/merchant/setup/nope", _only((OWNER,), 404)),
    ("/merchant/bank", _only((OWNER,), 400)),
    ("/merchant/cashiers", _only((OWNER,), 400)),
    ("/merchant/cashiers/{their_cashier}/disable", _only((OWNER,), 404)),
    ("/merchant/cashiers/{their_cashier}/reset", _only((OWNER,), 404)),
    ("/merchant/cashiers/{spare_cashier}/nope", _only((OWNER,), 404)),
    ("/merchant/products", _only((OWNER,), 400)),
    ("/merchant/products/{their_product}/hide", _only((OWNER,), 404)),
    ("/merchant/products/{their_product}/edit", _only((OWNER,), 404)),
    ("/merchant/products/{my_product}/edit", _only((OWNER,), 302)),  # no change asked: saved
    ("/merchant/branding", _only((OWNER,), 302)),  # empty: the zone's look, saved
    ("/merchant/branding/logo", _only((OWNER,), 400)),  # no file
    ("/merchant/branding/logo/delete", _only((OWNER,), 302)),
    ("/merchant/integrations/keys", _only((OWNER,), 400)),
    ("/merchant/integrations/domains", _only((OWNER,), 302)),  # empty: no domains, saved
    ("/merchant/integrations/keys/{their_key}/revoke", _only((OWNER,), 404)),
    ("/merchant/integrations/webhooks", _only((OWNER,), 400)),
    ("/merchant/integrations/webhooks/{their_hook}", _only((OWNER,), 404)),
    ("/merchant/integrations/webhooks/{their_hook}/delete", _only((OWNER,), 404)),
    ("/merchant/integrations/deliveries/{their_delivery}/redeliver", _only((OWNER,), 404)),
    ("/refunds/", _only((OWNER, OPERATOR), SEE)),
    ("/refunds/{their_refund}/sent", _only((OWNER, OPERATOR), SEE)),
    ("/refunds/return", _only((OWNER, OPERATOR), SEE)),  # no invoice given: said, nothing made
    ("/refunds/{their_refund}/cancel", {ANON: LOGIN, CASHIER: 403, OWNER: SEE, OPERATOR: SEE}),
    ("/fees/issue", _only((OPERATOR,), SEE)),
    ("/fees/{their_fee}/mark-paid", _only((OPERATOR,), SEE)),
    ("/operator/merchants", _only((OPERATOR,), 400)),
    ("/operator/merchants/{other}/suspend", _only((OPERATOR,), 400)),
    ("/operator/merchants/{other}/settlement", _only((OPERATOR,), 400)),
    ("/reports/payouts/run", _only((OPERATOR,), 400)),
    ("/reports/payouts/{their_payout}/mark-paid", _only((OPERATOR,), SEE)),
    ("/reports/conversions", _only((OPERATOR,), 400)),
    ("/reports/conversions/import", _only((OPERATOR,), 400)),
    # Last: it ends the session the requests above used.
    ("/logout", {ANON: LOGIN, CASHIER: 302, OWNER: 302, OPERATOR: 302}),
]


@pytest.fixture
def ids(
    app: Flask, runtime: Runtime, make_invoice: Callable[..., str], world: dict[str, int]
) -> dict[str, str]:
    return route_ids(app, runtime, world, make_invoice)


def _covered(app: Flask, entries: list[tuple[str, dict[str, int]]], method: str) -> set[str]:
    adapter = app.url_map.bind("localhost")
    endpoints: set[str] = set()
    for path, _expected in entries:
        try:
            endpoint, _args = adapter.match(path.split("?")[0].format_map(_Any()), method)
        except (NotFound, MethodNotAllowed, RequestRedirect):
            continue
        endpoints.add(str(endpoint))
    return endpoints


class _Any(dict[str, str]):
    """Placeholders as a number: enough for the router to pick the rule."""

    def __missing__(self, key: str) -> str:
        return "1"


def test_every_route_has_an_access_entry(app: Flask) -> None:
    """A new route needs a line in PAGES or POSTS (the API has its own tests)."""
    covered = {(e, "GET") for e in _covered(app, PAGES, "GET")}
    covered |= {(e, "POST") for e in _covered(app, POSTS, "POST")}
    missing = {
        (endpoint, method)
        for endpoint, method in rules_of(app)
        if not endpoint.startswith(API_PREFIX) and (endpoint, method) not in covered
    }
    assert not missing, missing_message("PAGES/POSTS access", missing)


def _get(client: FlaskClient, path: str) -> int:
    # The live stream never ends by itself: take its status and close it.
    with client.get(path, buffered=not path.endswith("/events")) as response:
        return response.status_code


@pytest.mark.parametrize("who", WHO)
def test_page_access(
    as_user: Callable[[str | None], FlaskClient], ids: dict[str, str], who: str
) -> None:
    client = as_user(None if who == ANON else who)
    wrong = []
    for path, expected in PAGES:
        status = _get(client, path.format(**ids))
        if status != expected[who]:
            wrong.append((path, status, expected[who]))
        if expected[who] == LOGIN and who == ANON and path not in ("/", "/lang/ru?next=/login"):
            response = client.get(path.format(**ids))
            assert response.headers["Location"].startswith("/login"), path
    assert not wrong, f"{who}: (path, got, expected) {wrong}"


@pytest.mark.parametrize("who", WHO)
def test_post_access_with_csrf(
    as_user: Callable[[str | None], FlaskClient], ids: dict[str, str], who: str
) -> None:
    client = as_user(None if who == ANON else who)
    token = csrf_from(client, "/login")
    wrong = []
    for path, expected in POSTS:
        response = client.post(path.format(**ids), data={"csrf_token": token})
        if response.status_code != expected[who]:
            wrong.append((path, response.status_code, expected[who]))
    assert not wrong, f"{who}: (path, got, expected) {wrong}"


@pytest.mark.parametrize("who", WHO)
def test_every_form_needs_a_csrf_token(
    as_user: Callable[[str | None], FlaskClient], ids: dict[str, str], who: str
) -> None:
    client = as_user(None if who == ANON else who)
    for path, _expected in POSTS:
        response = client.post(path.format(**ids), data={"x": "1"})
        assert response.status_code == 400, path
        # The CSRF refusal's own sentence, not a form's validation error.
        assert "This form has expired" in response.get_data(as_text=True)


def test_shop_a_posting_on_shop_b_ids_changes_nothing_of_shop_b(
    as_user: Callable[[str | None], FlaskClient], ids: dict[str, str], runtime: Runtime
) -> None:
    """Every cross-tenant POST of the matrix, then shop B's objects are as they were."""
    from pos.catalog import CatalogItem
    from pos.integrations import ApiKey, Webhook
    from pos.models import User

    with runtime.session_factory() as session:
        cashier_hash = session.get_one(User, int(ids["their_cashier"])).password_hash
    for who in (CASHIER, OWNER):
        client = as_user(who)
        token = csrf_from(client, "/login")
        for path, _expected in POSTS:
            if "{their_" in path and path != "/logout":
                client.post(path.format(**ids), data={"csrf_token": token, "txid": "x" * 64})
    with runtime.session_factory() as session:
        cashier = session.get_one(User, int(ids["their_cashier"]))
        assert cashier.active and cashier.password_hash == cashier_hash
        their_item = session.get_one(CatalogItem, int(ids["their_product"]))
        assert their_item.active and their_item.category == "Drinks"
        assert their_item.image_sha256 == ids["their_image"]
        assert session.get_one(ApiKey, int(ids["their_key"])).revoked_at is None
        assert session.get(Webhook, int(ids["their_hook"])) is not None
        refund = session.get_one(Refund, int(ids["their_refund"]))
        assert refund.status is RefundStatus.CLAIMABLE and refund.txid is None
        fee = session.get_one(FeeInvoice, int(ids["their_fee"]))
        assert fee.status is FeeInvoiceStatus.ISSUED


def test_the_other_merchants_export_holds_none_of_our_invoices(
    as_user: Callable[[str | None], FlaskClient], ids: dict[str, str]
) -> None:
    body = as_user("other_owner").get("/merchant/invoices/export.csv").get_data(as_text=True)
    assert ids["theirs"] in body and ids["mine"] not in body
    page = as_user("other_owner").get("/merchant/cashiers").get_data(as_text=True)
    assert "cashier@b.test" in page and "cashier@a.test" not in page


INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>", re.I)
STYLE_ATTR = re.compile(r"<[^>]+\sstyle\s*=", re.I)
INLINE_HANDLER = re.compile(r"<[^>]+\son[a-z]+\s*=", re.I)
EXTERNAL_ASSET = re.compile(r"<(?:script|link|img)[^>]+(?:src|href)=\"(?:https?:)?//", re.I)


@pytest.mark.parametrize("who", WHO)
def test_every_page_keeps_the_strict_csp(
    as_user: Callable[[str | None], FlaskClient], ids: dict[str, str], who: str
) -> None:
    """No inline script, handler or style (the CSP would block them) and no CDN asset."""
    client = as_user(None if who == ANON else who)
    for path, expected in PAGES:
        bare = path.split("?")[0]
        if (
            expected[who] != 200
            or bare.endswith((".json", ".svg", ".csv", "/events", ".webp", ".css"))
            or bare
            in (
                "/healthz",
                "/metrics",
            )
        ):
            continue
        response = client.get(path.format(**ids))
        page = response.get_data(as_text=True)
        assert "unsafe-inline" not in response.headers["Content-Security-Policy"]
        for pattern in (INLINE_SCRIPT, STYLE_ATTR, INLINE_HANDLER, EXTERNAL_ASSET):
            assert pattern.search(page) is None, (path, pattern.pattern)
        for asset in re.findall(r'(?:src|href)="(/static/[^"]+)"', page):
            with client.get(asset) as static:
                assert static.status_code == 200, asset
