# ruff: noqa: RUF001 - the expected texts are Russian and Kazakh (Cyrillic by design)
"""Every word a person reads in Russian and Kazakh, in pages rendered through the real app:
amounts in the reader's number format, no raw status identifiers, translated error pages and
domain errors, a "saved" confirmation after each settings form, and a label on every field.
"""

from __future__ import annotations

import html
import re
import secrets
from collections.abc import Callable
from datetime import date
from html.parser import HTMLParser
from typing import ClassVar

import pytest
from flask import Flask, render_template_string
from flask.testing import FlaskClient
from route_catalog import route_ids
from sqlalchemy import update

from merchant_portal import labels
from merchant_portal.errors import translated
from pos import invoices, states
from pos.errors import IllegalTransitionError, MerchantNotActiveError, ValidationError
from pos.methods import bitcoin
from pos.models import Invoice, Merchant, MerchantStatus, User
from pos.rates import assess_btc
from pos.runtime import Runtime
from pos.settings import BitcoinNetwork
from pos.states import InvoiceStatus, PaymentMethod
from settlement.ledger import payouts, refunds
from settlement.ledger.errors import PayoutError
from settlement.ledger.models import Payout, PayoutStatus, Refund

from portal_helpers import csrf_from

LANGUAGES = ("ru", "kk")
NBSP = "\u00a0"

# Identifiers that are stored or sent by the API but must never be read as words on a page.
RAW_IDENTIFIERS = {
    *(status.value for status in InvoiceStatus),
    "paid_partial",
    "paid_over",
    "paid_late",
    "marked",
    *(status.value for status in MerchantStatus),
    "owner",
    "cashier",
    "operator",
    "paid",
    "issued",
    "claimable",
    "claimed",
    "sent",
    "confirmed",
    "cancelled",
    "delivered",
    "failed",
    "asset",
    "liability",
    "income",
    "expense",
    "opening",
    "closing",
    "tenge",
    "direct",
    "memorandum",
    "contradicted",
    "unknown",
    "stale",
    "unavailable",
}


@pytest.mark.parametrize(
    ("language", "tiyn", "expected"),
    [
        ("en", 250_000, "2,500.00"),
        ("ru", 250_000, f"2{NBSP}500,00"),
        ("kk", 250_000, f"2{NBSP}500,00"),
        ("ru", 1, "0,01"),
        ("kk", -123_456_789, f"-1{NBSP}234{NBSP}567,89"),
        # Far beyond a float's 15-16 significant digits: still exact to the tiyn.
        ("ru", 10**17 + 7, f"1{NBSP}000{NBSP}000{NBSP}000{NBSP}000{NBSP}000,07"),
        ("en", 10**17 + 7, "1,000,000,000,000,000.07"),
    ],
)
def test_amounts_use_the_readers_number_format(
    app: Flask, language: str, tiyn: int, expected: str
) -> None:
    with app.test_request_context("/", headers={"Cookie": f"lang={language}"}):
        assert labels.format_kzt(tiyn) == expected


def test_whole_tenge_and_counts_are_grouped(app: Flask) -> None:
    with app.test_request_context("/", headers={"Cookie": "lang=kk"}):
        assert labels.format_whole_kzt(250_099) == f"2{NBSP}500"
        assert labels.format_number(1_234_567) == f"1{NBSP}234{NBSP}567"
    with app.test_request_context("/", headers={"Cookie": "lang=en"}):
        assert labels.format_whole_kzt(-250_099) == "-2,500"


class _Page(HTMLParser):
    """The text a person reads (not code, addresses or ids in monospace) and the form fields."""

    SKIPPED: ClassVar[frozenset[str]] = frozenset({"script", "style", "code", "pre", "template"})
    VOID: ClassVar[frozenset[str]] = frozenset(
        {"input", "br", "img", "meta", "link", "hr", "rect", "line"}
    )

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[tuple[str, bool]] = []
        self.words: list[str] = []
        self.fields: list[tuple[str, dict[str, str], bool]] = []  # (tag, attrs, in a label)
        self.label_targets: set[str] = set()

    def _skipping(self) -> bool:
        return any(skip for _tag, skip in self.stack)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        if tag == "label" and values.get("for"):
            self.label_targets.add(values["for"])
        if tag in ("input", "select", "textarea"):
            in_label = any(open_tag == "label" for open_tag, _skip in self.stack)
            self.fields.append((tag, values, in_label))
        if tag in self.VOID:
            return
        skip = tag in self.SKIPPED or "mono" in values.get("class", "").split()
        self.stack.append((tag, skip))

    def handle_endtag(self, tag: str) -> None:
        for index in range(len(self.stack) - 1, -1, -1):
            if self.stack[index][0] == tag:
                del self.stack[index:]
                return

    def handle_data(self, data: str) -> None:
        if not self._skipping():
            # E-mail addresses (cashier@a.test) are names, not words to translate.
            self.words += re.findall(r"[A-Za-z_]+", re.sub(r"\S+@\S+", " ", data))


def _parse(html: str) -> _Page:
    page = _Page()
    page.feed(html)
    return page


def _in(client: FlaskClient, language: str) -> FlaskClient:
    client.set_cookie("lang", language)
    return client


@pytest.fixture
def ids(
    app: Flask,
    runtime: Runtime,
    world: dict[str, int],
    make_invoice: Callable[..., str],
) -> dict[str, str]:
    """Two shops' worth of objects, with one paid, overpaid invoice and a suspended shop."""
    found = route_ids(app, runtime, world, make_invoice)
    with runtime.session_factory.begin() as session:
        session.execute(
            update(Invoice)
            .where(Invoice.id == found["mine"])
            .values(status=InvoiceStatus.SETTLED, paid_over=True, paid_late=True)
        )
        # Display names default to the e-mail's local part ("owner"): a name, not a role.
        session.execute(update(User).values(display_name="Aigerim"))
        session.execute(
            update(Merchant)
            .where(Merchant.id == world["other"])
            .values(status=MerchantStatus.SUSPENDED)
        )
    return found


OWNER_PAGES = (
    "/merchant/integrations/",
    "/merchant/integrations/webhooks/{my_hook}",
    "/merchant/invoices/",
    "/merchant/invoices/{mine}",
    "/merchant/invoices/?status=settled",
    "/merchant/cashiers",
    "/merchant/setup/profile",
    "/merchant/setup/policies",
    "/refunds/",
    "/fees/",
    "/reports/merchants/{shop}/statement",
    "/account/password",
)
OPERATOR_PAGES = (
    "/operator/merchants",
    "/operator/rates/",
    "/reports/zone",
    "/reports/payouts",
    "/reports/reconcile",
    "/reports/conversions",
    "/reports/balances",
    "/reports/statement",
    "/reports/merchants/{shop}/statement",
    "/refunds/",
    "/fees/",
)


PAGES = {"owner": OWNER_PAGES, "operator": OPERATOR_PAGES}


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("who", ["owner", "operator"])
def test_pages_show_no_raw_identifiers(
    as_user: Callable[[str | None], FlaskClient],
    ids: dict[str, str],
    language: str,
    who: str,
) -> None:
    # One test per person and language over all their pages: building the objects is the slow
    # part, so it is done once per test.
    client = _in(as_user(who), language)
    shown: dict[str, list[str]] = {}
    for path in PAGES[who]:
        response = client.get(path.format(**ids))
        assert response.status_code == 200, path
        page = _parse(response.get_data(as_text=True))
        raw = sorted({word for word in page.words if word.lower() in RAW_IDENTIFIERS})
        if raw:
            shown[path] = raw
    assert not shown, f"raw identifiers in {language}: {shown}"


@pytest.mark.parametrize("who", ["owner", "operator"])
def test_every_field_has_a_label(
    as_user: Callable[[str | None], FlaskClient], ids: dict[str, str], who: str
) -> None:
    client = as_user(who)
    unlabelled: dict[str, list[tuple[str, str | None]]] = {}
    for path in PAGES[who]:
        page = _parse(client.get(path.format(**ids)).get_data(as_text=True))
        missing = [
            (tag, attrs.get("name"))
            for tag, attrs, in_label in page.fields
            if attrs.get("type") not in ("hidden", "submit")
            and not in_label
            and not attrs.get("aria-label")
            and attrs.get("id") not in page.label_targets
        ]
        if missing:
            unlabelled[path] = missing
    assert not unlabelled, unlabelled


def test_the_suspend_reason_has_a_real_label(
    as_user: Callable[[str | None], FlaskClient], ids: dict[str, str]
) -> None:
    page = _parse(as_user("operator").get("/operator/merchants").get_data(as_text=True))
    reasons = [
        (attrs, in_label) for tag, attrs, in_label in page.fields if attrs.get("name") == "reason"
    ]
    assert reasons and all(in_label and "placeholder" not in attrs for attrs, in_label in reasons)


def test_a_money_column_header_is_aligned_like_its_numbers(app: Flask) -> None:
    with app.open_resource("static/app.css") as css:
        rules = css.read().decode()
    assert re.search(r"th\.num[^{]*\{[^}]*text-align:\s*right", rules)


def test_the_owners_invoice_shows_translated_status_and_flags(
    as_user: Callable[[str | None], FlaskClient], ids: dict[str, str]
) -> None:
    page = _in(as_user("owner"), "ru").get(f"/merchant/invoices/{ids['mine']}")
    text = page.get_data(as_text=True)
    assert "оплачено" in text and "переплата" in text and "оплачен с опозданием" in text


@pytest.mark.parametrize(
    ("language", "heading", "message"),
    [
        ("ru", "Страница не найдена", "Такой страницы нет."),
        ("kk", "Бет табылмады", "Мұндай бет жоқ."),
    ],
)
def test_not_found_page_is_translated(
    client: FlaskClient, language: str, heading: str, message: str
) -> None:
    response = _in(client, language).get("/no/such/page")
    text = response.get_data(as_text=True)
    assert response.status_code == 404 and heading in text and message in text
    assert "requested URL" not in text


@pytest.mark.parametrize(
    ("language", "heading"), [("ru", "Доступ запрещён"), ("kk", "Кіруге тыйым салынған")]
)
def test_forbidden_page_is_translated(
    as_user: Callable[[str | None], FlaskClient], world: dict[str, int], language: str, heading: str
) -> None:
    response = _in(as_user("cashier"), language).get("/reports/zone")
    text = response.get_data(as_text=True)
    assert response.status_code == 403 and heading in text
    assert "permission" not in text


@pytest.mark.parametrize(
    ("language", "heading", "message"),
    [
        ("ru", "У нас что-то пошло не так", "Ничего не потеряно"),
        ("kk", "Бізде бірдеңе дұрыс болмады", "Ештеңе жоғалған жоқ"),
    ],
)
def test_server_error_page_is_translated(
    app: Flask, language: str, heading: str, message: str
) -> None:
    app.config["PROPAGATE_EXCEPTIONS"] = False  # answer as in production, not raise in the test

    def broken() -> str:
        raise RuntimeError("a bug")

    app.add_url_rule("/test-broken", "test_broken", broken)
    response = _in(app.test_client(), language).get("/test-broken")
    text = response.get_data(as_text=True)
    assert response.status_code == 500 and heading in text and message in text
    assert "a bug" not in text


@pytest.mark.parametrize(
    ("language", "bic", "expected"),
    [
        # A message raised in pos/ (pos.bank_details) with a value kept apart from the text.
        ("ru", "HSBKK", "в BIC 8 или 11 символов, а здесь 5"),
        ("kk", "HSBKK", "BIC 8 немесе 11 таңбадан тұрады, ал мұнда 5"),
        ("en", "HSBKK", "a BIC has 8 or 11 characters; this one has 5"),
    ],
)
def test_a_domain_error_is_shown_translated(
    as_user: Callable[[str | None], FlaskClient],
    world: dict[str, int],
    language: str,
    bic: str,
    expected: str,
) -> None:
    client = _in(as_user("owner"), language)
    token = csrf_from(client, "/merchant/setup/profile")
    response = client.post(
        "/merchant/bank",
        data={
            "csrf_token": token,
            "bank_holder": "Shop A LLP",
            "bank_iban": "KZ86125KZT5004100100",
            "bank_bic": bic,
        },
    )
    assert response.status_code == 400
    assert expected in response.get_data(as_text=True)


def _saved_after(client: FlaskClient, form_page: str, action: str, data: dict[str, str]) -> str:
    token = csrf_from(client, form_page)
    response = client.post(action, data={"csrf_token": token, **data}, follow_redirects=True)
    assert response.status_code == 200, response.get_data(as_text=True)
    flashes = re.findall(r'<p class="flash">([^<]*)</p>', response.get_data(as_text=True))
    assert flashes, f"no confirmation after {action}"
    return flashes[0]


@pytest.mark.parametrize(
    ("form_page", "action", "data", "expected"),
    [
        (
            "/merchant/setup/profile",
            "/merchant/setup/profile",
            {"name": "Shop A2"},
            "Профиль сохранён.",
        ),
        (
            "/merchant/setup/policies",
            "/merchant/setup/policies",
            {
                "confirmations_required": "1",
                "expiry_minutes": "15",
                "tolerance_percent": "0",
                "zero_conf_limit": "0",
            },
            "Правила оплаты сохранены.",
        ),
        (
            "/merchant/setup/profile",
            "/merchant/bank",
            {
                "bank_holder": "Shop A LLP",
                "bank_iban": "KZ86125KZT5004100100",
                "bank_bic": "HSBKKZKX",
            },
            "Банковский счёт для выплат сохранён.",
        ),
        (
            "/merchant/integrations/",
            "/merchant/integrations/domains",
            {"shop_domains": "shop.example.kz"},
            "Домены магазина сохранены.",
        ),
    ],
)
def test_owner_settings_forms_confirm_they_were_saved(
    as_user: Callable[[str | None], FlaskClient],
    world: dict[str, int],
    form_page: str,
    action: str,
    data: dict[str, str],
    expected: str,
) -> None:
    assert _saved_after(_in(as_user("owner"), "ru"), form_page, action, data) == expected


def test_the_webhook_form_confirms_it_was_saved(
    as_user: Callable[[str | None], FlaskClient], ids: dict[str, str]
) -> None:
    page = f"/merchant/integrations/webhooks/{ids['my_hook']}"
    data = {"url": "https://93.184.215.14/cc", "event_types": "invoice.settled", "active": "on"}
    assert _saved_after(_in(as_user("owner"), "kk"), page, page, data) == "Вебхук сақталды."


def test_the_operators_merchant_forms_confirm_they_were_saved(
    as_user: Callable[[str | None], FlaskClient], world: dict[str, int]
) -> None:
    client = _in(as_user("operator"), "ru")
    shop = world["shop"]
    settlement = _saved_after(
        client,
        "/operator/merchants",
        f"/operator/merchants/{shop}/settlement",
        {"settlement_mode": "tenge", "payout_hold_hours": "24"},
    )
    assert settlement.startswith("Shop A: расчёты — в тенге, удержание выплат 24 ч")
    suspended = _saved_after(
        client, "/operator/merchants", f"/operator/merchants/{shop}/suspend", {"reason": "audit"}
    )
    assert suspended == "Shop A: приостановлен. Сохранено."


def test_a_domain_error_with_a_state_names_it_in_the_readers_language(
    app: Flask, runtime: Runtime, world: dict[str, int]
) -> None:
    with runtime.session_factory() as session:
        session.execute(
            update(Merchant)
            .where(Merchant.id == world["shop"])
            .values(status=MerchantStatus.SUSPENDED)
        )
        request = invoices.InvoiceRequest(world["shop"], 250_000, PaymentMethod.KZTE, "")
        with pytest.raises(MerchantNotActiveError) as refused:
            invoices.create_invoice(session, runtime.settings, runtime.rates, request)
    assert str(refused.value) == "merchant 'Shop A' is suspended; invoices cannot be created"
    with app.test_request_context("/", headers={"Cookie": "lang=ru"}):
        assert translated(refused.value) == (
            "магазин 'Shop A' — приостановлен; счета создавать нельзя"
        )
    with app.test_request_context("/", headers={"Cookie": "lang=kk"}):
        assert translated(refused.value) == "'Shop A' дүкені — тоқтатылған; шот құруға болмайды"


def test_a_label_of_a_constant_follows_each_readers_language(
    as_user: Callable[[str | None], FlaskClient], ids: dict[str, str]
) -> None:
    # Jinja folds a filter over a constant when the template compiles: the statement's
    # `'opening' | label(...)` kept the first reader's language for the whole process.
    path = "/reports/merchants/{shop}/statement".format(**ids)
    client = as_user("operator")
    shown = {
        language: _in(client, language).get(path).get_data(as_text=True)
        for language in ("en", "ru", "kk")
    }
    assert "<td>opening</td>" in shown["en"]
    assert "<td>начало периода</td>" in shown["ru"] and "<td>opening</td>" not in shown["ru"]
    assert "<td>opening</td>" not in shown["kk"]


# Errors raised in settlement/ and pos/ with their values apart (`N_`): the page (or the flash)
# says them in the reader's language, while `str(error)` (logs, CLI, API) stays English.
MAINNET_ZPUB = (
    "zpub6rFR7y4Q2AijBEqTUquhVz398htDFrtymD9xYYfG1m4wAcvPhXNfE3EfH1r1ADqtfSdVCToUG868RvU"
    "UkgDKf31mGDtKsAYz2oz2AGutZYs"
)


def _flash_after(client: FlaskClient, form_page: str, action: str, data: dict[str, str]) -> str:
    token = csrf_from(client, form_page)
    response = client.post(action, data={"csrf_token": token, **data}, follow_redirects=True)
    assert response.status_code == 200, response.get_data(as_text=True)
    flashes = re.findall(r'<p class="flash">([^<]*)</p>', response.get_data(as_text=True))
    assert len(flashes) == 1, flashes
    return html.unescape(flashes[0])


@pytest.mark.parametrize(
    ("language", "expected"),
    [
        (
            "ru",
            "возврат {id} в статусе «ждёт покупателя»; отправить можно только возврат, "
            "для которого получен адрес",
        ),
        (
            "kk",
            "{id} қайтаруы «сатып алушыны күтуде» күйінде; тек мекенжайы алынған қайтаруды "
            "жіберуге болады",
        ),
        ("en", "refund {id} is waiting for the shopper; only a claimed refund can be sent"),
    ],
)
def test_a_refund_error_is_flashed_in_the_readers_language(
    as_user: Callable[[str | None], FlaskClient],
    runtime: Runtime,
    world: dict[str, int],
    make_invoice: Callable[..., str],
    language: str,
    expected: str,
) -> None:
    invoice_id = make_invoice(world["shop"])
    with runtime.session_factory.begin() as session:
        refund = Refund(
            token=secrets.token_urlsafe(24),
            invoice_id=invoice_id,
            merchant_id=world["shop"],
            method="kzte",
            settlement_mode="direct",  # the owner records what they sent
            amount_tiyn=5_000,
            amount_atomic=50_000_000,
        )
        session.add(refund)
        session.flush()
        refund_id = refund.id
    client = _in(as_user("owner"), language)
    # Not claimed yet: the shopper has not said where to send it. The status is its label.
    shown = _flash_after(client, "/refunds/", f"/refunds/{refund_id}/sent", {"txid": "x"})
    assert shown == expected.format(id=refund_id)
    with runtime.session_factory() as session, pytest.raises(refunds.RefundError) as refused:
        refunds.record_sent(session, refund_id, "x")
    assert str(refused.value) == (
        f"refund {refund_id} is claimable; only a claimed refund can be sent"
    )


@pytest.mark.parametrize(
    ("language", "expected"),
    [
        ("ru", "выплата {id} уже оплачена (банковский референс KZ-2026-11-02)"),
        ("kk", "{id} төлемі бұрын төленген (банк сілтеме кілті KZ-2026-11-02)"),
    ],
)
def test_a_payout_error_is_flashed_in_the_readers_language(
    as_user: Callable[[str | None], FlaskClient],
    runtime: Runtime,
    world: dict[str, int],
    language: str,
    expected: str,
) -> None:
    with runtime.session_factory.begin() as session:
        payout = Payout(
            merchant_id=world["shop"],
            business_date=date(2026, 11, 2),
            amount_tiyn=1,
            status=PayoutStatus.PAID,
            bank_reference="KZ-2026-11-02",
        )
        session.add(payout)
        session.flush()
        payout_id = payout.id
    client = _in(as_user("operator"), language)
    shown = _flash_after(
        client,
        "/reports/payouts",
        f"/reports/payouts/{payout_id}/mark-paid",
        {"bank_reference": "again"},
    )
    assert shown == expected.format(id=payout_id)
    with runtime.session_factory() as session, pytest.raises(PayoutError) as refused:
        payouts.mark_paid(session, payout_id, "again")
    assert (
        str(refused.value) == f"payout {payout_id} is already paid (bank reference KZ-2026-11-02)"
    )


@pytest.mark.parametrize(
    ("language", "expected"),
    [
        (
            "ru",
            "этот zpub — для mainnet, а зона работает в сети regtest; экспортируйте tpub или vpub",
        ),
        (
            "kk",
            "бұл zpub mainnet желісіне арналған, ал аймақ regtest желісінде жұмыс істейді; "
            "tpub немесе vpub экспорттаңыз",
        ),
    ],
)
def test_an_account_key_error_is_shown_in_the_readers_language(
    as_user: Callable[[str | None], FlaskClient],
    world: dict[str, int],
    language: str,
    expected: str,
) -> None:
    client = _in(as_user("owner"), language)
    token = csrf_from(client, "/merchant/setup/bitcoin")
    response = client.post(
        "/merchant/setup/bitcoin",
        data={"csrf_token": token, "btc_xpub": MAINNET_ZPUB, "action": "preview"},
    )
    assert response.status_code == 400
    page = html.unescape(response.get_data(as_text=True))
    assert expected in page and "for mainnet" not in page
    with pytest.raises(ValidationError) as refused:
        bitcoin.parse_account_xpub(MAINNET_ZPUB, BitcoinNetwork.REGTEST)
    assert str(refused.value) == (
        "this zpub is for mainnet but the zone runs on regtest; export a tpub or vpub"
    )


def test_an_illegal_transition_names_the_statuses_by_their_labels(app: Flask) -> None:
    with pytest.raises(IllegalTransitionError) as refused:
        states.transition(InvoiceStatus.SETTLED, InvoiceStatus.NEW)
    assert str(refused.value) == "an invoice cannot go from settled to new"
    with app.test_request_context("/", headers={"Cookie": "lang=ru"}):
        assert translated(refused.value) == (
            "счёт не может перейти из статуса «оплачено» в статус «ожидает оплаты»"
        )
    with app.test_request_context("/", headers={"Cookie": "lang=kk"}):
        assert (
            translated(refused.value) == "шот «төленді» күйінен «төлемді күтуде» күйіне өте алмайды"
        )


def test_the_rates_boards_refusal_is_shown_in_the_readers_language(app: Flask) -> None:
    refusal = assess_btc([], 200).refusal
    assert refusal is not None
    page = "{{ refusal | translated }}"
    with app.test_request_context("/", headers={"Accept-Language": "ru"}):
        shown = render_template_string(page, refusal=refusal)
    assert shown.startswith("свежего курса BTC/KZT нет")
    with app.test_request_context("/", headers={"Accept-Language": "en"}):
        assert render_template_string(page, refusal=refusal) == str(refusal)
