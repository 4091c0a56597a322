"""Hostile input on every portal route, as every role: the answer is never a 5xx.

Hypothesis fills each rule of the app's url_map: path arguments with real ids of both shops and
hostile strings, query (GET) or form (POST) fields from FIELDS with Unicode digits ('²' passes
`str.isdigit()` but crashes `int()`), numbers beyond 64 bits, dates at year 1 and 9999, control
characters, NUL, very long texts and JSON garbage. CSRF is off here (its own test is in
test_portal_access.py) so the forms are reached. The REST API under /api/v1 is fuzzed from its
OpenAPI document by schemathesis (tests/integrations/test_integrations_fuzz.py); the coverage
test checks that every API rule is in that document and every other rule has FIELDS.

Bounded: EXAMPLES examples per rule for a role that may use it, DENIED_EXAMPLES for one that
gets 403 or the sign-in page; about a minute on a laptop.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from route_catalog import API_PREFIX, missing_message, route_ids, rules_of
from werkzeug.routing import IntegerConverter, Rule

from pos.runtime import Runtime

import factories
from portal_helpers import login

EXAMPLES = 40
DENIED_EXAMPLES = 3

HOSTILE_TEXT = [
    "²",
    "٣",
    "\uff11",  # FULLWIDTH DIGIT ONE
    "²٣\uff11",
    "9" * 30,
    "9" * 5000,
    "18446744073709551617",
    "9223372036854775808",
    "-1",
    "-9223372036854775809",
    "0",
    "1e309",
    "NaN",
    "0001-01-01",
    "9999-12-31",
    "2026-02-30",
    "%0a",
    "\n",
    "\r\nSet-Cookie: x=1",
    "\x00",
    "a" * 10_000,
    '{"a": [1, {"b": null}',
    "[]",
    "null",
    "//evil.example/phish",
    "/\t/evil.example/phish",
    "/\\evil.example",
    "../../etc/passwd",
    "<script>alert(1)</script>",
    "' OR 1=1 --",
    " ",
    "",
]
# The texts every field gets in the sweep (the random examples draw from all of HOSTILE_TEXT).
SWEEP = [
    "²",
    "٣",
    "9" * 30,
    "9" * 5000,
    "-1",
    "0001-01-01",
    "9999-12-31",
    "\r\n",
    "\x00",
    "a" * 10_000,
    '{"a": [1',
    "",
]
# A valid value per field name: the sweep varies one field while the others hold these.
VALID: dict[str, str] = {
    "amount": "2500",
    "description": "tea",
    "tip": "0",
    "method": "kzte",
    "mode": "",
    "name": "Tea house",
    "price": "900",
    "email": "new@a.test",
    "display_name": "Ann",
    "confirmations_required": "1",
    "expiry_minutes": "15",
    "tolerance_percent": "0.5",
    "zero_conf_limit": "0",
    "rate_limit_per_minute": "60",
    "scopes": "invoices:read",
    "url": "https://93.184.215.14/cc",
    "event_types": "invoice.settled",
    "active": "on",
    "from": "2026-11-01",
    "to": "2026-11-23",
    "date": "2026-11-02",
    "page": "1",
    "month": "2026-10",
    "bank_reference": "REF-1",
    "reason": "checks",
    "settlement_mode": "tenge",
    "payout_hold_hours": "24",
    "owner_email": "owner@new.test",
    "owner_name": "Olga",
    "amount_atomic": "1000",
    "proceeds": "10",
    "reference": "bank-1",
    "width": "58",
    "next": "/login",
    "password": "not-the-password",
    "category": "Drinks",
    "accent_colour": "#0b6e4f",
    "store_language": "kk",
}


VALUE = st.one_of(
    st.sampled_from(HOSTILE_TEXT),
    st.text(max_size=40),
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.dates().map(lambda day: day.isoformat()),
    st.decimals(allow_nan=False, allow_infinity=False, places=3).map(str),
)
# Digits only, for <int:…> path arguments (anything else never reaches the view).
HOSTILE_INT = ["0", "٣", "9" * 30, "18446744073709551617", "9223372036854775808"]

_LIST_FILTER = ("status", "method", "from", "to", "q", "page")
_PERIOD = ("from", "to")

# Query fields (GET) or form fields (POST) of every portal rule; `()` for none.
FIELDS: dict[tuple[str, str], tuple[str, ...]] = {
    ("auth.index", "GET"): ("next",),
    ("auth.login", "GET"): ("next",),
    ("auth.login", "POST"): ("email", "password", "next"),
    ("auth.logout", "POST"): (),
    ("auth.second_factor", "GET"): (),
    ("auth.second_factor", "POST"): ("code",),
    ("account.password", "GET"): (),
    ("account.password", "POST"): ("current_password", "new_password", "confirm_password"),
    ("account.two_factor", "GET"): (),
    ("account.two_factor_enable", "POST"): ("code",),
    ("account.two_factor_disable", "POST"): ("password",),
    ("api.docs", "GET"): (),
    ("api.openapi", "GET"): (),
    ("choice.pick", "GET"): ("method",),
    ("choice.pick", "POST"): ("method",),
    ("choice.terminal_wait", "GET"): ("t",),
    ("choice.terminal_wait_qr", "GET"): ("t",),
    ("choice.terminal_wait_status", "GET"): ("t",),
    ("checkout.show", "GET"): (),
    ("checkout.events", "GET"): (),
    ("checkout.qr", "GET"): (),
    ("checkout.receipt", "GET"): ("width",),
    ("checkout.status", "GET"): (),
    ("fees.index", "GET"): (),
    ("fees.issue", "POST"): ("month",),
    ("fees.mark_paid", "POST"): ("bank_reference",),
    ("health.healthz", "GET"): (),
    ("metrics.metrics", "GET"): (),
    ("i18n.switch", "GET"): ("next",),
    ("merchant.index", "GET"): ("period",),
    ("merchant.dashboard_csv", "GET"): ("period",),
    ("merchant.save_bank", "POST"): ("bank_holder", "bank_iban", "bank_bic"),
    ("merchant.setup", "GET"): (),
    ("merchant.step", "GET"): (),
    ("merchant.save_step", "POST"): (
        "name",
        "btc_xpub",
        "confirm",
        "action",
        "solana_wallet",
        "confirmations_required",
        "expiry_minutes",
        "tolerance_percent",
        "zero_conf_limit",
    ),
    ("merchant_staff.cashiers", "GET"): (),
    ("merchant_staff.invite", "POST"): ("email", "display_name"),
    ("merchant_staff.change_cashier", "POST"): (),
    ("merchant_staff.products", "GET"): (),
    ("merchant_staff.add_product", "POST"): ("name", "price", "category", "image"),
    ("merchant_staff.edit_product", "POST"): ("category", "remove_image", "image"),
    ("merchant_staff.change_product", "POST"): (),
    ("branding.index", "GET"): (),
    ("branding.save", "POST"): ("accent_colour", "store_language"),
    ("branding.upload_logo", "POST"): ("logo",),
    ("branding.remove_logo", "POST"): (),
    ("media.file", "GET"): (),
    ("media.accent_css", "GET"): (),
    ("integrations.index", "GET"): (),
    ("integrations.create_key", "POST"): ("name", "scopes", "rate_limit_per_minute"),
    ("integrations.save_domains", "POST"): ("shop_domains",),
    ("integrations.revoke_key", "POST"): (),
    ("integrations.create_webhook", "POST"): ("url", "event_types"),
    ("integrations.webhook", "GET"): (),
    ("integrations.update_webhook", "POST"): ("url", "event_types", "active"),
    ("integrations.delete_webhook", "POST"): (),
    ("integrations.redeliver", "POST"): (),
    ("merchant_invoices.index", "GET"): _LIST_FILTER,
    ("merchant_invoices.export", "GET"): _LIST_FILTER,
    ("merchant_invoices.detail", "GET"): (),
    ("operator.index", "GET"): (),
    ("operator.audit", "GET"): ("actor", "action", "merchant", "from", "to", "page"),
    ("operator.audit_csv", "GET"): ("actor", "action", "merchant", "from", "to"),
    ("operator.merchants", "GET"): (),
    ("operator.register", "POST"): ("name", "owner_email", "owner_name", "settlement_mode"),
    ("operator.change_status", "POST"): ("reason",),
    ("operator.change_settlement", "POST"): ("settlement_mode", "payout_hold_hours"),
    ("operator_rates.index", "GET"): (),
    ("refund_claim.show", "GET"): (),
    ("refund_claim.claim", "POST"): ("destination",),
    ("refunds.index", "GET"): (),
    ("refunds.create", "POST"): ("invoice_id",),
    ("refunds.create_return", "POST"): ("invoice_id", "amount"),
    ("refunds.cancel", "POST"): (),
    ("refunds.record_sent", "POST"): ("txid",),
    ("reports.zone", "GET"): _PERIOD,
    ("reports.zone_csv", "GET"): _PERIOD,
    ("reports.payout_list", "GET"): ("status", "date"),
    ("reports.payout_csv", "GET"): ("status", "date"),
    ("reports.payout_run", "POST"): ("date",),
    ("reports.payout_mark_paid", "POST"): ("bank_reference",),
    ("reports.reconciliation", "GET"): _PERIOD,
    ("reports.reconciliation_csv", "GET"): _PERIOD,
    ("reports.statement_home", "GET"): ("merchant_id", *_PERIOD),
    ("reports.statement", "GET"): _PERIOD,
    ("reports.statement_csv", "GET"): _PERIOD,
    ("reports.conversion_list", "GET"): (),
    ("reports.conversion_csv", "GET"): (),
    ("reports.conversion_record", "POST"): ("method", "amount_atomic", "proceeds", "reference"),
    ("reports.conversion_import", "POST"): ("file",),
    ("reports.balance_sheet", "GET"): (),
    ("reports.balance_csv", "GET"): (),
    ("terminal.index", "GET"): (),
    ("terminal.cart", "GET"): ("category",),
    # qty-… names are added per run with real product ids (see _fields).
    ("terminal.create", "POST"): (
        "amount",
        "description",
        "tip",
        "method",
        "mode",
        "shown_total",
        "qty-²",
    ),
    ("terminal.quote", "GET"): ("amount", "tip", "tiyn"),
    ("terminal.show", "GET"): (),
}

# Real values a path argument may take, by its name (ids of both shops are added per run).
PATH_WORDS: dict[str, list[str]] = {
    "step": ["profile", "bitcoin", "solana", "policies", "nope"],
    "action": ["disable", "enable", "reset", "hide", "show", "approve", "suspend", "nope"],
    "code": ["en", "ru", "kk", "xx"],
    "table": ["volume", "invoices", "merchants", "nope"],
    "ext": ["webp", "png", "css"],
    "colour": ["0b6e4f", "ffffff", "0B6E4F", "fff"],
}


def _path_values(rule: Rule, name: str, ids: dict[str, str]) -> st.SearchStrategy[str]:
    if isinstance(rule._converters[name], IntegerConverter):
        numbers = [v for v in ids.values() if v.isdigit()]
        return st.sampled_from(numbers + HOSTILE_INT)
    words = PATH_WORDS.get(name, []) + [v for v in ids.values() if not v.isdigit()]
    hostile = [v for v in HOSTILE_TEXT if v and "/" not in v and "\\" not in v]
    return st.sampled_from(words + hostile)


def _own_value(rule: Rule, name: str, ids: dict[str, str]) -> str:
    """Shop A's object for a path argument (the sweep must reach the view, not a 404)."""
    own = {
        "invoice_id": ids["mine"],
        "token": ids["my_choice"] if rule.endpoint.startswith("choice") else ids["my_refund_token"],
        "user_id": ids["spare_cashier"],
        "item_id": ids["my_product"],
        "key_id": ids["my_key"],
        "webhook_id": ids["my_hook"],
        "delivery_id": ids["my_delivery"],
        "refund_id": ids["my_refund"],
        "fee_invoice_id": ids["my_fee"],
        "payout_id": ids["my_payout"],
        "merchant_id": ids["shop"],
        "step": "policies",
        "action": "reset" if rule.endpoint.startswith("merchant_staff") else "suspend",
        "code": "ru",
        "table": "volume",
        "sha256": ids["my_image"],
        "ext": "webp",
        "colour": "0b6e4f",
    }
    return own[name]


def _baselines(endpoint: str, names: tuple[str, ...], ids: dict[str, str]) -> list[dict[str, str]]:
    """Valid values of `names` (more than one set where a form has modes)."""
    real = {
        "invoice_id": ids["mine"],
        "t": ids["my_choice"],
        "merchant_id": ids["shop"],
        f"qty-{ids['my_product']}": "1",
    }
    known = {**VALID, **real}
    baseline = {name: known[name] for name in names if name in known}
    if endpoint == "terminal.create":
        return [baseline, {**baseline, "mode": "cart"}]
    return [baseline]


def _fields(endpoint: str, method: str, ids: dict[str, str]) -> tuple[str, ...]:
    names = FIELDS[(endpoint, method)]
    if endpoint == "terminal.create":
        names = (
            *names,
            f"qty-{ids['my_product']}",
            f"qty-{ids['their_product']}",
            "qty-" + "9" * 30,
        )
    return names


def _login(app: Flask, who: str | None) -> FlaskClient:
    client = app.test_client()
    if who is not None:
        login(client, who, factories.PASSWORD)
    return client


def _call(
    client: FlaskClient, rule: Rule, method: str, path: str, fields: dict[str, str], body: Any
) -> tuple[int, str]:
    """(status, Location) of one request; every body is read (a CSV generator fails late)."""
    if method == "GET":
        streaming = rule.endpoint == "checkout.events"  # never ends by itself: status, close
        with client.get(path, query_string=fields, buffered=not streaming) as response:
            if not streaming:
                response.get_data()
            return response.status_code, response.headers.get("Location", "")
    if body is not None:  # JSON garbage where a form is expected
        response = client.post(path, data=body, content_type="application/json")
    elif rule.endpoint == "reports.conversion_import":
        upload = (io.BytesIO(fields.get("file", "").encode("utf-8", "surrogatepass")), "x.csv")
        response = client.post(path, data={"file": upload}, content_type="multipart/form-data")
    elif rule.endpoint in UPLOADS:  # the picture field is a file of hostile bytes
        name = UPLOADS[rule.endpoint]
        data: dict[str, Any] = {k: v for k, v in fields.items() if k != name}
        data[name] = (io.BytesIO(fields.get(name, "").encode("utf-8", "surrogatepass")), "x.png")
        response = client.post(path, data=data, content_type="multipart/form-data")
    else:
        response = client.post(path, data=fields)
    response.get_data()
    return response.status_code, response.headers.get("Location", "")


# Routes with a file field (its name): the fuzz sends that field as an upload.
UPLOADS = {
    "merchant_staff.add_product": "image",
    "merchant_staff.edit_product": "image",
    "branding.upload_logo": "logo",
}


def _denied(status: int, location: str) -> bool:
    return status == 403 or (status == 302 and location.startswith("/login"))


ROLES: list[tuple[str, str | None]] = [
    ("anonymous", None),
    ("cashier", "cashier@a.test"),
    ("owner", "owner@a.test"),
    ("operator", "ops@zone.test"),  # last: it may suspend shop A
]


@pytest.fixture
def fuzz_app(runtime: Runtime) -> Flask:
    from merchant_portal import create_app

    # A crash answers 500 (not an exception in the test) so the sweep can list every one.
    config = {"TESTING": True, "WTF_CSRF_ENABLED": False, "PROPAGATE_EXCEPTIONS": False}
    return create_app(runtime=runtime, test_config=config)


def _portal_rules(app: Flask) -> list[tuple[Rule, str]]:
    pairs = []
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            if (rule.endpoint, method) in FIELDS:
                pairs.append((rule, method))
    # Signing out ends the session the other rules use: it goes last.
    return sorted(pairs, key=lambda pair: pair[0].endpoint == "auth.logout")


def _path(rule: Rule, values: dict[str, str]) -> str:
    built = rule.build(values, append_unknown=False)
    assert built is not None, (rule.rule, values)
    return built[1]


def _sweep(
    client: FlaskClient, rule: Rule, method: str, names: tuple[str, ...], ids: dict[str, str]
) -> list[str]:
    """Each field in turn gets every SWEEP text while the others hold valid values, on our own
    ids: the checks deep in a form are reached, and the cases that once gave 500s are tried on
    every run. Returns the requests that answered 5xx."""
    path = _path(rule, {name: _own_value(rule, name, ids) for name in rule.arguments})
    crashes = []
    for baseline in _baselines(rule.endpoint, names, ids):
        for name in names:
            for text in SWEEP:
                status, _location = _call(
                    client, rule, method, path, {**baseline, name: text}, None
                )
                if status >= 500:
                    crashes.append(f"{status} {method} {path} {name}={text[:30]!r}")
    return crashes


def _fuzz(
    client: FlaskClient,
    rule: Rule,
    method: str,
    names: tuple[str, ...],
    ids: dict[str, str],
    examples: int,
) -> None:
    """Random path arguments, fields and bodies; the first 5xx fails (shrunk by hypothesis)."""
    args = {name: _path_values(rule, name, ids) for name in rule.arguments}
    body = st.none() if method == "GET" else st.one_of(st.none(), st.binary(max_size=200))

    @given(
        path_args=st.fixed_dictionaries(args),
        fields=st.fixed_dictionaries({}, optional={name: VALUE for name in names}),
        body=body,
    )
    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def fire(path_args: dict[str, str], fields: dict[str, str], body: bytes | None) -> None:
        path = _path(rule, path_args)
        status, _location = _call(client, rule, method, path, fields, body)
        assert status < 500, (method, path, fields, body)

    fire()


@pytest.mark.slow
@pytest.mark.parametrize("role", [name for name, _email in ROLES])
def test_no_input_gives_a_server_error(
    fuzz_app: Flask,
    runtime: Runtime,
    world: dict[str, int],
    make_invoice: Callable[..., str],
    role: str,
) -> None:
    ids = route_ids(fuzz_app, runtime, world, make_invoice)
    client = _login(fuzz_app, dict(ROLES)[role])
    crashes: list[str] = []
    plan = []
    for rule, method in _portal_rules(fuzz_app):
        names = _fields(rule.endpoint, method, ids)
        # A probe without input: a role that is refused gets only a few random examples.
        probe_path = _path(rule, {name: _own_value(rule, name, ids) for name in rule.arguments})
        denied = _denied(*_call(client, rule, method, probe_path, {}, None))
        if not denied and names:
            crashes += _sweep(client, rule, method, names, ids)
        plan.append((rule, method, names, DENIED_EXAMPLES if denied else EXAMPLES))
    # The sweep's list first, all of it: each line names its case.
    assert not crashes, f"{role}: {len(crashes)} answers were 5xx:\n" + "\n".join(crashes)
    for rule, method, names, examples in plan:
        _fuzz(client, rule, method, names, ids, examples)


def test_every_route_is_fuzzed(app: Flask) -> None:
    """A new portal route needs FIELDS; a new API route must be in the OpenAPI document."""
    document = app.test_client().get("/api/v1/openapi.json").get_json()
    prefix = "/api/v1"
    missing = set()
    for endpoint, method in rules_of(app):
        if (endpoint, method) in FIELDS:
            continue
        if endpoint.startswith(API_PREFIX):
            [rule] = [r for r in app.url_map.iter_rules() if r.endpoint == endpoint]
            path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule.removeprefix(prefix))
            if method.lower() in document["paths"].get(path, {}):
                continue  # schemathesis fuzzes it from the document
        missing.add((endpoint, method))
    assert not missing, missing_message("fuzz FIELDS", missing)
