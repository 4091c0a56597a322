"""The owner's pages: the dashboard and the onboarding wizard (profile, BTC, Solana, policies).

The dashboard shows today's, this week's and this month's sales, fees and net (Asia/Almaty
days, the week from Monday), what is waiting to be paid out and owed back to shoppers, a chart
of this month's sales per day (inline SVG, with the same numbers in a table), and sales per
cashier and per product; every table downloads as CSV. All of it comes from the ledger
(settlement.ledger.merchant_dashboard), for the signed-in owner's own merchant only.

The profile step also holds the bank account that `tenge` payouts are transferred to.

Every change of a key or policy leaves an audit row. Keys are validated by the domain parsers,
and the owner sees the first BIP84 addresses before an account key is saved, to compare them
with the wallet that will receive the money.
"""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from sqlalchemy import exists, select
from sqlalchemy.exc import IntegrityError
from werkzeug.wrappers import Response

from merchant_portal.context import client_ip, db, settings
from merchant_portal.errors import translated
from merchant_portal.forms import (
    field_error,
    form_values,
    parse_int,
    parse_percent_bp,
    parse_tenge,
)
from merchant_portal.security import require_role
from pos import accounts, bank_details, business_day, csv_safe, money
from pos.db import utcnow
from pos.errors import PosError, ValidationError
from pos.methods import bitcoin
from pos.models import ALLOWED_CONFIRMATIONS, Invoice, Merchant, Payment
from pos.states import PaymentMethod
from settlement import wallet_check
from settlement.ledger import merchant_dashboard
from settlement.ledger.charts import stacked_bars
from settlement.ledger.reports import METHODS

bp = Blueprint("merchant", __name__, url_prefix="/merchant")

STEPS = ("profile", "bitcoin", "solana", "policies")
# The confirmation shown after a step is saved (the page moves on to the next step).
STEP_SAVED = {
    "profile": _l("Profile saved."),
    "bitcoin": _l("Bitcoin account key saved."),
    "solana": _l("Solana wallet saved."),
    "policies": _l("Payment policies saved."),
}
GAP_SCAN = 500  # how far back the gap check looks; a wallet only needs the top 20


def own_merchant() -> Merchant:
    merchant = db().get(Merchant, current_user.merchant_id)
    assert merchant is not None  # owners always belong to a merchant
    return merchant


def unpaid_gap(merchant_id: int) -> int:
    """How many of the newest derived BTC addresses in a row never received anything.

    Wallets stop looking after GAP_LIMIT (20) unused addresses, so past that the owner's wallet
    may not show money sent to newer ones until its gap limit is raised.
    """
    has_payment = exists().where(Payment.invoice_id == Invoice.id)
    rows = (
        db()
        .execute(
            select(Invoice.btc_derivation_index, has_payment)
            .where(
                Invoice.merchant_id == merchant_id,
                Invoice.method == PaymentMethod.BTC,
                Invoice.btc_derivation_index.is_not(None),
            )
            .order_by(Invoice.btc_derivation_index.desc())
            .limit(GAP_SCAN)
        )
        .all()
    )
    gap = 0
    for _index, paid in rows:
        if paid:
            break
        gap += 1
    return gap


def _audit(action: str, merchant: Merchant, detail: dict[str, object]) -> None:
    accounts.audit(
        db(),
        action,
        actor_user_id=current_user.id,
        merchant_id=merchant.id,
        ip=client_ip(),
        detail=detail,
    )


PERIOD_LABELS = {"today": _l("Today"), "week": _l("This week"), "month": _l("This month")}


def _dashboard(merchant: Merchant) -> merchant_dashboard.MerchantDashboard:
    # An unknown ?period= is the month (the tables' default), never an error.
    period = request.args.get("period", "month")
    return merchant_dashboard.dashboard(
        db(), merchant.id, merchant.settlement_mode, business_day.today(), period
    )


def _whole_tenge(tiyn: int) -> str:
    return f"{tiyn // money.TIYN_PER_KZT:,}".replace(",", "\u202f") + " ₸"


@bp.get("/")
@require_role("owner")
def index() -> str:
    merchant = own_merchant()
    board = _dashboard(merchant)
    chart = stacked_bars(
        [(d.strftime("%d.%m"), values) for d, values in board.by_day], METHODS, _whole_tenge
    )
    addresses = (
        bitcoin.first_addresses(merchant.btc_xpub, settings().bitcoin_network)
        if merchant.btc_xpub
        else []
    )
    gap = unpaid_gap(merchant.id) if merchant.btc_xpub else 0
    return render_template(
        "merchant.html",
        merchant=merchant,
        addresses=addresses,
        gap=gap,
        gap_limit=bitcoin.GAP_LIMIT,
        steps=STEPS,
        board=board,
        chart=chart,
        period_labels=PERIOD_LABELS,
    )


@bp.get("/dashboard/<table>.csv")
@require_role("owner")
def dashboard_csv(table: str) -> Response:
    """One table of the dashboard (summary, days, cashiers, products) of the owner's merchant."""
    board = _dashboard(own_merchant())
    tables = board.tables()
    if table not in tables:
        abort(404)
    header, rows = merchant_dashboard.with_tenge(tables[table])
    stamp = business_day.local_time(utcnow()).strftime("%Y%m%d-%H%M")
    name = f"dashboard-{table}-{board.period}-{stamp}.csv"
    # Cashier and product names were typed by people: the one writer neutralises formulas.
    return Response(
        csv_safe.csv_text(header, rows),
        mimetype="text/csv",
        headers={
            "Content-Disposition": f'attachment; filename="{name}"',
            "Cache-Control": "no-store",
        },
    )


@bp.get("/setup")
@require_role("owner")
def setup() -> Response:
    merchant = own_merchant()
    if not merchant.btc_xpub:
        return redirect(url_for("merchant.step", step="bitcoin"))
    if not merchant.solana_wallet:
        return redirect(url_for("merchant.step", step="solana"))
    return redirect(url_for("merchant.step", step="profile"))


def _next(step: str) -> str:
    position = STEPS.index(step)
    if position + 1 < len(STEPS):
        return url_for("merchant.step", step=STEPS[position + 1])
    return url_for("merchant.index")


def _stored_bank_form(merchant: Merchant) -> dict[str, str]:
    return {
        "bank_holder": merchant.bank_holder or "",
        "bank_iban": bank_details.format_iban(merchant.bank_iban or ""),
        "bank_bic": merchant.bank_bic or "",
    }


def _render_step(
    step: str,
    merchant: Merchant,
    errors: dict[str, str] | None = None,
    form: dict[str, str] | None = None,
    preview: list[str] | None = None,
) -> str:
    return render_template(
        "merchant_setup.html",
        step=step,
        steps=STEPS,
        merchant=merchant,
        errors=errors or {},
        # The bank form sits on the profile step: stored values unless the owner just typed some.
        form={**_stored_bank_form(merchant), **(form or {})},
        preview=preview or [],
        confirmations=ALLOWED_CONFIRMATIONS,
        network=settings().bitcoin_network.value,
    )


@bp.get("/setup/<step>")
@require_role("owner")
def step(step: str) -> str:
    if step not in STEPS:
        abort(404)
    merchant = own_merchant()
    form = {
        "name": merchant.name,
        "btc_xpub": merchant.btc_xpub or "",
        "solana_wallet": merchant.solana_wallet or "",
        "confirmations_required": str(merchant.confirmations_required),
        "expiry_minutes": str(merchant.expiry_minutes),
        "tolerance_percent": f"{merchant.tolerance_bp / 100:g}",
        "zero_conf_limit": money.format_kzt(merchant.zero_conf_limit_tiyn).replace("\u202f", ""),
    }
    return _render_step(step, merchant, form=form)


BANK_FIELDS = ("bank_holder", "bank_iban", "bank_bic")


@bp.post("/bank")
@require_role("owner")
def save_bank() -> Response | tuple[str, int]:
    """The bank account for payouts; every field is checked and each error shown beside it."""
    merchant = own_merchant()
    session = db()
    form = form_values(BANK_FIELDS)
    problems = bank_details.field_problems(form["bank_holder"], form["bank_iban"], form["bank_bic"])
    errors = {field: translated(exc) for field, exc in problems.items()}
    if not errors:
        try:
            accounts.set_bank_details(
                session,
                merchant,
                form["bank_holder"],
                form["bank_iban"],
                form["bank_bic"],
                actor_user_id=current_user.id,
            )
            session.commit()
        except PosError as exc:
            errors = field_error(exc)
    if errors:
        session.rollback()
        merchant = own_merchant()
        return _render_step("profile", merchant, errors, {"name": merchant.name, **form}), 400
    flash(gettext("Bank account for payouts saved."))
    return redirect(url_for("merchant.step", step="profile"))


@bp.post("/setup/<step>")
@require_role("owner")
def save_step(step: str) -> Response | tuple[str, int] | str:
    if step not in STEPS:
        abort(404)
    merchant = own_merchant()
    session = db()
    form = form_values(
        (
            "name",
            "btc_xpub",
            "confirm",
            "action",
            "solana_wallet",
            "confirmations_required",
            "expiry_minutes",
            "tolerance_percent",
            "zero_conf_limit",
        )
    )
    try:
        if step == "profile":
            _save_profile(merchant, form)
        elif step == "bitcoin":
            key = bitcoin.parse_account_xpub(form["btc_xpub"], settings().bitcoin_network)
            if form["action"] != "save" or form["confirm"] != "yes":
                preview = bitcoin.first_addresses(key.text, settings().bitcoin_network)
                errors = {}
                if form["action"] == "save":
                    errors["confirm"] = gettext("tick the box once the addresses match your wallet")
                session.rollback()
                status = 400 if errors else 200
                return _render_step(step, merchant, errors, form, preview), status
            if key.text != merchant.btc_xpub:
                accounts.set_btc_account_key(session, merchant, key)
                _audit("merchant.btc_xpub_set", merchant, {"kind": key.kind})
        elif step == "solana":
            wallet = accounts.check_solana_wallet(
                session, settings(), form["solana_wallet"], merchant.id
            )
            if wallet != merchant.solana_wallet:
                wallet_check.check_wallet_on_chain(settings().solana_rpc_url, wallet)
                merchant.solana_wallet = wallet
                _audit("merchant.solana_wallet_set", merchant, {"wallet": wallet})
        else:
            _save_policies(merchant, form)
        session.commit()
    except PosError as exc:
        session.rollback()
        return _render_step(step, own_merchant(), field_error(exc), form), 400
    except IntegrityError as exc:
        # Another merchant saved the same wallet between our check and our commit.
        session.rollback()
        taken = accounts.destination_taken(exc)
        if taken is None:
            raise
        return _render_step(step, own_merchant(), field_error(taken), form), 400
    flash(str(STEP_SAVED[step]))
    return redirect(_next(step))


def _save_profile(merchant: Merchant, form: dict[str, str]) -> None:
    name = form["name"]
    if not 2 <= len(name) <= 120:
        raise ValidationError(gettext("the merchant name needs 2 to 120 characters"), field="name")
    if name != merchant.name:
        _audit("merchant.profile_changed", merchant, {"from": merchant.name, "to": name})
        merchant.name = name


def _save_policies(merchant: Merchant, form: dict[str, str]) -> None:
    confirmations = parse_int(
        form["confirmations_required"],
        "confirmations_required",
        0,
        6,
        gettext("Confirmations"),
    )
    expiry = parse_int(form["expiry_minutes"], "expiry_minutes", 1, 1440, gettext("The expiry"))
    tolerance_bp = parse_percent_bp(form["tolerance_percent"], "tolerance_bp", 1000)
    # Above the largest invoice a 0-conf limit means nothing; beyond it is a typo (or a 500).
    zero_conf_tiyn = parse_tenge(
        form["zero_conf_limit"] or "0", "zero_conf_limit_tiyn", settings().max_invoice_tiyn
    )
    accounts.set_policies(
        db(),
        merchant,
        confirmations_required=confirmations,
        expiry_minutes=expiry,
        tolerance_bp=tolerance_bp,
        zero_conf_limit_tiyn=zero_conf_tiyn,
        actor_user_id=current_user.id,
    )
