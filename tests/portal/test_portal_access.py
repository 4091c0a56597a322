"""Every route's access rules: anonymous, cashier, owner, another merchant's owner, operator."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from flask.testing import FlaskClient

from portal_helpers import csrf_from

# (path with placeholders, expected status per who)
ANON, CASHIER, OWNER, OPERATOR = "anon", "cashier", "owner", "operator"
LOGIN = 302  # anonymous users are sent to the sign-in page

PAGES: list[tuple[str, dict[str, int]]] = [
    ("/terminal/", {ANON: LOGIN, CASHIER: 200, OWNER: 200, OPERATOR: 403}),
    ("/terminal/cart", {ANON: LOGIN, CASHIER: 200, OWNER: 200, OPERATOR: 403}),
    ("/terminal/invoices/{mine}", {ANON: LOGIN, CASHIER: 200, OWNER: 200, OPERATOR: 403}),
    ("/terminal/invoices/{theirs}", {ANON: LOGIN, CASHIER: 404, OWNER: 404, OPERATOR: 403}),
    ("/merchant/", {ANON: LOGIN, CASHIER: 403, OWNER: 200, OPERATOR: 403}),
    ("/merchant/setup", {ANON: LOGIN, CASHIER: 403, OWNER: 302, OPERATOR: 403}),
    ("/merchant/setup/profile", {ANON: LOGIN, CASHIER: 403, OWNER: 200, OPERATOR: 403}),
    ("/merchant/setup/bitcoin", {ANON: LOGIN, CASHIER: 403, OWNER: 200, OPERATOR: 403}),
    ("/merchant/setup/solana", {ANON: LOGIN, CASHIER: 403, OWNER: 200, OPERATOR: 403}),
    ("/merchant/setup/policies", {ANON: LOGIN, CASHIER: 403, OWNER: 200, OPERATOR: 403}),
    ("/merchant/setup/nope", {ANON: LOGIN, CASHIER: 403, OWNER: 404, OPERATOR: 403}),
    ("/merchant/cashiers", {ANON: LOGIN, CASHIER: 403, OWNER: 200, OPERATOR: 403}),
    ("/merchant/products", {ANON: LOGIN, CASHIER: 403, OWNER: 200, OPERATOR: 403}),
    ("/merchant/invoices/", {ANON: LOGIN, CASHIER: 403, OWNER: 200, OPERATOR: 403}),
    ("/merchant/invoices/export.csv", {ANON: LOGIN, CASHIER: 403, OWNER: 200, OPERATOR: 403}),
    ("/merchant/invoices/{mine}", {ANON: LOGIN, CASHIER: 403, OWNER: 200, OPERATOR: 403}),
    ("/merchant/invoices/{theirs}", {ANON: LOGIN, CASHIER: 403, OWNER: 404, OPERATOR: 403}),
    ("/operator/", {ANON: LOGIN, CASHIER: 403, OWNER: 403, OPERATOR: 200}),
    ("/operator/merchants", {ANON: LOGIN, CASHIER: 403, OWNER: 403, OPERATOR: 200}),
    # Public pages: the shopper has no account.
    ("/i/{mine}", {ANON: 200, CASHIER: 200, OWNER: 200, OPERATOR: 200}),
    ("/i/{mine}/receipt", {ANON: 200, CASHIER: 200, OWNER: 200, OPERATOR: 200}),
    ("/i/{mine}/status.json", {ANON: 200, CASHIER: 200, OWNER: 200, OPERATOR: 200}),
    ("/i/{mine}/qr.svg", {ANON: 200, CASHIER: 200, OWNER: 200, OPERATOR: 200}),
    ("/login", {ANON: 200, CASHIER: 200, OWNER: 200, OPERATOR: 200}),
    ("/lang/ru?next=/login", {ANON: 302, CASHIER: 302, OWNER: 302, OPERATOR: 302}),
    ("/healthz", {ANON: 200, CASHIER: 200, OWNER: 200, OPERATOR: 200}),
]

# POST routes: (path, expected status per who) - anonymous to login, wrong role 403.
POSTS: list[tuple[str, dict[str, int]]] = [
    ("/terminal/invoices", {ANON: LOGIN, CASHIER: 400, OWNER: 400, OPERATOR: 403}),
    ("/merchant/setup/profile", {ANON: LOGIN, CASHIER: 403, OWNER: 400, OPERATOR: 403}),
    ("/merchant/cashiers", {ANON: LOGIN, CASHIER: 403, OWNER: 400, OPERATOR: 403}),
    (
        "/merchant/cashiers/{their_cashier}/disable",
        {ANON: LOGIN, CASHIER: 403, OWNER: 404, OPERATOR: 403},
    ),
    ("/merchant/products", {ANON: LOGIN, CASHIER: 403, OWNER: 400, OPERATOR: 403}),
    ("/operator/merchants", {ANON: LOGIN, CASHIER: 403, OWNER: 403, OPERATOR: 400}),
    ("/operator/merchants/{other}/suspend", {ANON: LOGIN, CASHIER: 403, OWNER: 403, OPERATOR: 400}),
]


@pytest.fixture
def ids(make_invoice: Callable[..., str], world: dict[str, int]) -> dict[str, str]:
    return {
        "mine": make_invoice(world["shop"]),
        "theirs": make_invoice(world["other"]),
        "their_cashier": str(world["other_cashier"]),
        "other": str(world["other"]),
    }


WHO = [ANON, CASHIER, OWNER, OPERATOR]


@pytest.mark.parametrize("who", WHO)
def test_page_access(
    as_user: Callable[[str | None], FlaskClient], ids: dict[str, str], who: str
) -> None:
    client = as_user(None if who == ANON else who)
    for path, expected in PAGES:
        response = client.get(path.format(**ids))
        assert response.status_code == expected[who], (who, path)
        if expected[who] == LOGIN and who == ANON and not path.startswith("/lang"):
            assert response.headers["Location"].startswith("/login")


@pytest.mark.parametrize("who", WHO)
def test_post_access_with_csrf(
    as_user: Callable[[str | None], FlaskClient], ids: dict[str, str], who: str
) -> None:
    client = as_user(None if who == ANON else who)
    token = csrf_from(client, "/login")
    for path, expected in POSTS:
        response = client.post(path.format(**ids), data={"csrf_token": token})
        assert response.status_code == expected[who], (who, path)


@pytest.mark.parametrize("who", [CASHIER, OWNER, OPERATOR])
def test_every_form_needs_a_csrf_token(
    as_user: Callable[[str | None], FlaskClient], ids: dict[str, str], who: str
) -> None:
    client = as_user(who)
    for path, _expected in POSTS:
        response = client.post(path.format(**ids), data={"x": "1"})
        assert response.status_code == 400, path
        assert "CSRF" in response.get_data(as_text=True)


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
        if expected[who] != 200 or path.endswith((".json", ".svg", ".csv")) or "healthz" in path:
            continue
        response = client.get(path.format(**ids))
        page = response.get_data(as_text=True)
        assert "unsafe-inline" not in response.headers["Content-Security-Policy"]
        for pattern in (INLINE_SCRIPT, STYLE_ATTR, INLINE_HANDLER, EXTERNAL_ASSET):
            assert pattern.search(page) is None, (path, pattern.pattern)
        for asset in re.findall(r'(?:src|href)="(/static/[^"]+)"', page):
            with client.get(asset) as static:
                assert static.status_code == 200, asset
