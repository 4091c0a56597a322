"""The owner's pages: onboarding wizard, cashiers, products, invoices, export, gap warning."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable
from datetime import datetime, timedelta

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from merchant_portal.labels import REJECTION_LABELS
from pos import invoices
from pos.db import utcnow
from pos.demo_wallets import demo_account_xpub, demo_solana_wallet
from pos.methods.bitcoin import GAP_LIMIT, first_addresses
from pos.models import AuditLog, Invoice, Merchant, PaymentStatus
from pos.runtime import Runtime
from pos.states import EventType, InvoiceStatus, PaymentMethod
from settlement.payments import Observation, observe_payment, reevaluate

from portal_helpers import change_password, csrf_from, login


@pytest.fixture
def owner(as_user: Callable[[str | None], FlaskClient]) -> FlaskClient:
    return as_user("owner")


def _submit(client: FlaskClient, path: str, data: dict[str, str]) -> tuple[int, str]:
    token = csrf_from(client, "/merchant/")
    response = client.post(path, data={"csrf_token": token, **data})
    location = response.headers.get("Location", "")
    return response.status_code, location or response.get_data(as_text=True)


def _audit_actions(runtime: Runtime) -> list[tuple[str, dict[str, object]]]:
    with runtime.session_factory() as session:
        return [
            (r.action, r.detail) for r in session.scalars(select(AuditLog).order_by(AuditLog.id))
        ]


def _merchant(runtime: Runtime, merchant_id: int) -> Merchant:
    with runtime.session_factory() as session:
        merchant = session.get(Merchant, merchant_id)
        assert merchant is not None
        return merchant


def test_setup_starts_where_something_is_missing(owner: FlaskClient) -> None:
    assert owner.get("/merchant/setup").headers["Location"] == "/merchant/setup/profile"


def test_profile_step(owner: FlaskClient, runtime: Runtime, world: dict[str, int]) -> None:
    status, page = _submit(owner, "/merchant/setup/profile", {"name": "x"})
    assert status == 400 and 'id="name-error"' in page and "2 to 120 characters" in page
    status, location = _submit(owner, "/merchant/setup/profile", {"name": "Shop A Plus"})
    assert status == 302 and location == "/merchant/setup/bitcoin"
    assert _merchant(runtime, world["shop"]).name == "Shop A Plus"
    assert ("merchant.profile_changed", {"from": "Shop A", "to": "Shop A Plus"}) in _audit_actions(
        runtime
    )


def test_bitcoin_step_shows_addresses_before_saving(
    owner: FlaskClient, runtime: Runtime, world: dict[str, int]
) -> None:
    status, page = _submit(owner, "/merchant/setup/bitcoin", {"btc_xpub": "vpubNotAKey"})
    assert status == 400 and 'id="btc_xpub-error"' in page and "checksum" in page
    key = demo_account_xpub("fresh", runtime.settings.bitcoin_network)
    status, page = _submit(owner, "/merchant/setup/bitcoin", {"btc_xpub": key, "action": "preview"})
    assert status == 200
    preview = re.search(r'<ol start="0" class="mono" id="address-preview">(.*?)</ol>', page, re.S)
    assert preview is not None
    addresses = re.findall(r"<li>(\w+)</li>", preview.group(1))
    assert addresses == first_addresses(key, runtime.settings.bitcoin_network)
    assert len(addresses) == 5
    status, page = _submit(owner, "/merchant/setup/bitcoin", {"btc_xpub": key, "action": "save"})
    assert status == 400 and 'id="confirm-error"' in page
    assert _merchant(runtime, world["shop"]).btc_xpub != key
    status, location = _submit(
        owner, "/merchant/setup/bitcoin", {"btc_xpub": key, "action": "save", "confirm": "yes"}
    )
    assert status == 302 and location == "/merchant/setup/solana"
    assert _merchant(runtime, world["shop"]).btc_xpub == key
    assert "merchant.btc_xpub_set" in [a for a, _ in _audit_actions(runtime)]


def test_solana_step(owner: FlaskClient, runtime: Runtime, world: dict[str, int]) -> None:
    status, page = _submit(owner, "/merchant/setup/solana", {"solana_wallet": "0OIl"})
    assert status == 400 and 'id="solana_wallet-error"' in page and "not a Solana address" in page
    wallet = demo_solana_wallet("fresh")
    status, location = _submit(owner, "/merchant/setup/solana", {"solana_wallet": wallet})
    assert status == 302 and location == "/merchant/setup/policies"
    assert _merchant(runtime, world["shop"]).solana_wallet == wallet


POLICIES_OK = {
    "confirmations_required": "2",
    "expiry_minutes": "20",
    "tolerance_percent": "0.5",
    "zero_conf_limit": "5 000",
}


@pytest.mark.parametrize(
    ("field", "value", "error_id", "message"),
    [
        ("confirmations_required", "3", "confirmations_required-error", "0, 1, 2 or 6"),
        ("confirmations_required", "many", "confirmations_required-error", "whole number"),
        ("expiry_minutes", "0", "expiry_minutes-error", "from 1 to 1440"),
        ("tolerance_percent", "abc", "tolerance_bp-error", "percentage"),
        ("tolerance_percent", "20", "tolerance_bp-error", "at most 10 %"),
        ("zero_conf_limit", "lots", "zero_conf_limit-error", "not an amount"),
    ],
)
def test_policies_reject_bad_input_per_field(
    owner: FlaskClient, field: str, value: str, error_id: str, message: str
) -> None:
    status, page = _submit(owner, "/merchant/setup/policies", {**POLICIES_OK, field: value})
    assert status == 400 and f'id="{error_id}"' in page and message in page


def test_policies_are_saved_and_audited(
    owner: FlaskClient, runtime: Runtime, world: dict[str, int]
) -> None:
    status, location = _submit(owner, "/merchant/setup/policies", POLICIES_OK)
    assert status == 302 and location == "/merchant/"
    merchant = _merchant(runtime, world["shop"])
    assert (merchant.confirmations_required, merchant.expiry_minutes) == (2, 20)
    assert (merchant.tolerance_bp, merchant.zero_conf_limit_tiyn) == (50, 500_000)
    assert (
        "merchant.policies_changed",
        {
            "confirmations_required": 2,
            "expiry_minutes": 20,
            "tolerance_bp": 50,
            "zero_conf_limit_tiyn": 500_000,
        },
    ) in _audit_actions(runtime)


def test_invite_and_disable_a_cashier(
    owner: FlaskClient, app: Flask, runtime: Runtime, world: dict[str, int]
) -> None:
    status, page = _submit(owner, "/merchant/cashiers", {"email": "not-an-email"})
    assert status == 400 and 'id="email-error"' in page and "valid e-mail" in page
    status, page = _submit(owner, "/merchant/cashiers", {"email": "cashier@a.test"})
    assert status == 400 and "ask the person for another address" in page
    token = csrf_from(owner, "/merchant/cashiers")
    response = owner.post(
        "/merchant/cashiers",
        data={"csrf_token": token, "email": "new@a.test", "display_name": "Aigerim"},
    )
    assert response.status_code == 200 and response.headers["Cache-Control"] == "no-store"
    password = re.search(r'id="new-password">([^<]+)<', response.get_data(as_text=True))
    assert password is not None
    newcomer = app.test_client()
    login(newcomer, "new@a.test", password.group(1))
    # A one-time password: every page leads to choosing one's own first.
    assert newcomer.get("/terminal/").headers["Location"] == "/account/password"
    change_password(newcomer, password.group(1), "aigerim's own till phrase")
    assert newcomer.get("/terminal/").status_code == 200
    page = owner.get("/merchant/cashiers").get_data(as_text=True)
    user_id = re.search(r'id="cashier-(\d+)"><td>new@a.test', page).group(1)  # type: ignore[union-attr]
    assert _submit(owner, f"/merchant/cashiers/{user_id}/disable", {})[0] == 302
    assert newcomer.get("/terminal/").status_code == 302  # signed out at once
    actions = [a for a, _ in _audit_actions(runtime)]
    assert "user.created" in actions and "user.disabled" in actions


def test_products(owner: FlaskClient) -> None:
    status, page = _submit(owner, "/merchant/products", {"name": "Tea", "price": "free"})
    assert status == 400 and 'id="price-error"' in page
    status, page = _submit(owner, "/merchant/products", {"name": "", "price": "500"})
    assert status == 400 and 'id="name-error"' in page
    status, page = _submit(owner, "/merchant/products", {"name": "Tea", "price": "0"})
    assert status == 400 and 'id="price-error"' in page and "more than zero" in page
    assert _submit(owner, "/merchant/products", {"name": "Tea", "price": "500"})[0] == 302
    assert "Tea" in owner.get("/merchant/products").get_data(as_text=True)


def test_invoice_list_filters_export_and_timeline(
    owner: FlaskClient, make_invoice: Callable[..., str], world: dict[str, int]
) -> None:
    kzte = make_invoice(world["shop"], 250_000, PaymentMethod.KZTE, "=HYPERLINK(evil)")
    btc = make_invoice(world["shop"], 900_000, PaymentMethod.BTC, "bike")
    page = owner.get("/merchant/invoices/?method=btc").get_data(as_text=True)
    assert btc in page and kzte not in page
    page = owner.get("/merchant/invoices/?q=bike").get_data(as_text=True)
    assert btc in page and kzte not in page
    page = owner.get("/merchant/invoices/?status=settled").get_data(as_text=True)
    assert btc not in page and "No invoices match." in page
    for query, error_id in [
        ("from=yesterday", "from-error"),
        ("from=2026-02-02&to=2026-01-01", "to-error"),
    ]:
        response = owner.get(f"/merchant/invoices/?{query}")
        assert response.status_code == 400 and f'id="{error_id}"' in response.get_data(True)
    export = owner.get("/merchant/invoices/export.csv?method=kzte")
    assert export.mimetype == "text/csv" and "attachment" in export.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(export.get_data(as_text=True))))
    assert [r["id"] for r in rows] == [kzte]
    assert rows[0]["description"] == "'=HYPERLINK(evil)"  # no formula injection
    assert rows[0]["price_tiyn"] == "250000" and rows[0]["unit"] == "base_units"
    detail = owner.get(f"/merchant/invoices/{kzte}").get_data(as_text=True)
    assert 'id="timeline"' in detail and "invoice.created" in detail


def test_timeline_says_which_payments_were_not_accepted(
    owner: FlaskClient, runtime: Runtime, make_invoice: Callable[..., str], world: dict[str, int]
) -> None:
    invoice_id = make_invoice(world["shop"], 250_000, PaymentMethod.KZTE)
    with runtime.session_factory() as session:
        invoice = session.get_one(Invoice, invoice_id)
        # What the KZTE watcher records for a transfer in another token / to another wallet.
        for txid, reason in (("sig-mint", "wrong_mint"), ("sig-thief", "wrong_recipient")):
            invoices.record_rejected_payment(session, invoice, txid, reason, "detail")
        assert (
            invoices.record_rejected_payment(session, invoice, "sig-mint", "wrong_mint", "") is None
        )
        session.commit()
    detail = owner.get(f"/merchant/invoices/{invoice_id}").get_data(as_text=True)
    timeline = detail[detail.index('id="timeline"') :]
    assert timeline.count('class="rejected"') == 2
    assert "payment not accepted: paid in another token, not KZTE" in timeline
    assert "payment not accepted: paid to another account, not this shop&#39;s" in timeline
    assert "sig-mint" in timeline and "sig-thief" in timeline
    ru = owner.get(f"/merchant/invoices/{invoice_id}", headers={"Accept-Language": "ru"})
    assert "платёж не принят: оплачено другим токеном, не KZTE" in ru.get_data(True)
    kk = owner.get(f"/merchant/invoices/{invoice_id}", headers={"Accept-Language": "kk"})
    assert "төлем қабылданбады" in kk.get_data(True)
    # A rejection changes nothing else: no payment, still waiting.
    with runtime.session_factory() as session:
        invoice = session.get_one(Invoice, invoice_id)
        assert invoice.status is InvoiceStatus.NEW and invoice.amount_paid_atomic == 0


def _btc_payment(
    runtime: Runtime, invoice_id: str, seen_at: datetime, txid: str
) -> tuple[list[str], list[str]]:
    """A final Bitcoin payment the chain first knew at `seen_at`, noticed a minute later and
    re-evaluated twice (a watcher's next poll): the event types of each round."""
    window = timedelta(hours=runtime.settings.late_watch_hours)
    now = seen_at + timedelta(minutes=1)
    with runtime.session_factory() as session:
        invoice = session.get_one(Invoice, invoice_id)
        seen = Observation(
            "bitcoin", txid, 0, invoice.amount_due_atomic, PaymentStatus.FINAL, 6, seen_at=seen_at
        )
        observe_payment(session, invoice, seen, now)
        first = reevaluate(session, invoice, now, window)
        session.commit()
        again = reevaluate(session, invoice, now + timedelta(minutes=5), window)
        session.commit()
        return first, again


def _expired_btc_invoice(
    runtime: Runtime, make_invoice: Callable[..., str], merchant_id: int
) -> tuple[str, datetime]:
    """A BTC invoice that expired three days ago, unpaid; (id, end of its late window)."""
    invoice_id = make_invoice(merchant_id, 250_000, PaymentMethod.BTC)
    with runtime.session_factory() as session:
        invoice = session.get_one(Invoice, invoice_id)
        invoice.expires_at = utcnow() - timedelta(days=3)
        assert invoices.expire_due(session) == [invoice_id]
        session.commit()
        late_until = invoice.expires_at + timedelta(hours=runtime.settings.late_watch_hours)
        return invoice_id, late_until


def _rejections(runtime: Runtime, invoice_id: str) -> list[dict[str, object]]:
    with runtime.session_factory() as session:
        return [
            e.data
            for e in session.get_one(Invoice, invoice_id).events
            if e.type == EventType.PAYMENT_REJECTED.value
        ]


def test_a_payment_after_the_late_window_is_not_accepted_and_says_so_once(
    owner: FlaskClient,
    as_user: Callable[[str | None], FlaskClient],
    runtime: Runtime,
    make_invoice: Callable[..., str],
    world: dict[str, int],
) -> None:
    invoice_id, late_until = _expired_btc_invoice(runtime, make_invoice, world["shop"])
    first, again = _btc_payment(runtime, invoice_id, late_until + timedelta(minutes=1), "tx-late")
    assert first == [EventType.PAYMENT_REJECTED.value] and again == []
    rejected = _rejections(runtime, invoice_id)
    assert [(r["txid"], r["reason"]) for r in rejected] == [("tx-late", "too_late")]
    with runtime.session_factory() as session:
        invoice = session.get_one(Invoice, invoice_id)
        # It never counts: still expired, nothing paid, not "paid late".
        assert invoice.status is InvoiceStatus.EXPIRED and invoice.amount_paid_atomic == 0
        assert not invoice.paid_late and len(invoice.payments) == 1
    detail = owner.get(f"/merchant/invoices/{invoice_id}").get_data(as_text=True)
    timeline = detail[detail.index('id="timeline"') :]
    assert timeline.count('class="rejected"') == 1 and "tx-late" in timeline
    assert "payment not accepted: it arrived after the invoice had closed" in timeline
    ru = owner.get(f"/merchant/invoices/{invoice_id}", headers={"Accept-Language": "ru"})
    assert "платёж не принят: он пришёл, когда счёт был уже закрыт" in ru.get_data(True)
    # The shopper reads the same sentence on the checkout, and how the money comes back.
    checkout = as_user(None).get(f"/i/{invoice_id}").get_data(as_text=True)
    assert "payment not accepted: it arrived after the invoice had closed" in checkout
    assert 'id="too-late-refund"' in checkout and "tx-late" in checkout


def test_a_late_payment_inside_the_late_window_is_accepted(
    owner: FlaskClient,
    as_user: Callable[[str | None], FlaskClient],
    runtime: Runtime,
    make_invoice: Callable[..., str],
    world: dict[str, int],
) -> None:
    invoice_id, late_until = _expired_btc_invoice(runtime, make_invoice, world["shop"])
    first, again = _btc_payment(runtime, invoice_id, late_until - timedelta(minutes=1), "tx-ok")
    assert EventType.PAYMENT_REJECTED.value not in first + again
    assert _rejections(runtime, invoice_id) == []
    with runtime.session_factory() as session:
        invoice = session.get_one(Invoice, invoice_id)
        assert invoice.status is InvoiceStatus.SETTLED and invoice.paid_late
    detail = owner.get(f"/merchant/invoices/{invoice_id}").get_data(as_text=True)
    assert 'class="rejected"' not in detail and "payment not accepted" not in detail
    checkout = as_user(None).get(f"/i/{invoice_id}").get_data(as_text=True)
    assert 'id="rejected-payments"' not in checkout


def test_every_rejection_reason_has_words() -> None:
    assert set(REJECTION_LABELS) == set(invoices.REJECTION_REASONS)


def test_gap_limit_warning(
    owner: FlaskClient, make_invoice: Callable[..., str], world: dict[str, int]
) -> None:
    for _ in range(GAP_LIMIT - 1):
        make_invoice(world["shop"], 250_000, PaymentMethod.BTC)
    assert 'id="gap-warning"' not in owner.get("/merchant/").get_data(as_text=True)
    make_invoice(world["shop"], 250_000, PaymentMethod.BTC)
    page = owner.get("/merchant/").get_data(as_text=True)
    assert 'id="gap-warning"' in page and f"The last {GAP_LIMIT} Bitcoin addresses" in page
