"""The cashier's terminal: keypad or cart, tip, method, then the QR screen and "paid".

Every route is for cashiers and owners of one merchant; invoices of another merchant are 404.
The keypad is JavaScript over a plain form, so the terminal still works with scripts off.
"""

from __future__ import annotations

from datetime import datetime

from flask import Blueprint, redirect, render_template, request, url_for
from flask_babel import gettext
from flask_login import current_user
from sqlalchemy import BigInteger, cast, func, select
from werkzeug.wrappers import Response

from merchant_portal import choice
from merchant_portal.checkout import checkout_context
from merchant_portal.context import coordinator, db, runtime, settings
from merchant_portal.forms import field_error, form_values, is_whole_number, parse_tenge
from merchant_portal.labels import format_kzt, label
from merchant_portal.security import require_role
from pos import business_day, catalog, invoice_lines, invoices
from pos.errors import MerchantNotActiveError, PosError, ValidationError
from pos.models import Invoice, Merchant, MerchantStatus
from pos.settings import Settings
from pos.states import InvoiceStatus, PaymentMethod

bp = Blueprint("terminal", __name__, url_prefix="/terminal")

TIP_PRESETS_PERCENT = (0, 5, 10, 15)
CHOOSE = "choose"  # the shopper picks BTC or KZTE on their phone
FORM_FIELDS = ("amount", "description", "tip", "method", "mode")


def available_methods(merchant: Merchant) -> list[str]:
    """The methods this merchant can take now, in the order the buttons show them."""
    methods = []
    if merchant.btc_xpub:
        methods.append(PaymentMethod.BTC.value)
    if merchant.solana_wallet and settings().kzte_mint:
        methods.append(PaymentMethod.KZTE.value)
    return methods


def validate_price(cfg: Settings, price_tiyn: int) -> None:
    """The invoice service's price rule, checked early for a deferred ("shopper chooses") sale."""
    if price_tiyn <= 0:
        raise ValidationError(gettext("the amount must be more than zero"), field="amount")
    if price_tiyn < cfg.min_invoice_tiyn:
        raise ValidationError(
            gettext(
                "the smallest invoice is %(amount)s ₸", amount=format_kzt(cfg.min_invoice_tiyn)
            ),
            field="amount",
        )
    if price_tiyn > cfg.max_invoice_tiyn:
        raise ValidationError(
            gettext("the largest invoice is %(amount)s ₸", amount=format_kzt(cfg.max_invoice_tiyn)),
            field="amount",
        )


def add_tip(price_tiyn: int, tip_text: str) -> tuple[int, int]:
    """(total, tip) in tiyn for a preset tip percentage; the tip rounds down to the tiyn."""
    tip_text = tip_text or "0"
    if not is_whole_number(tip_text) or int(tip_text) not in TIP_PRESETS_PERCENT:
        raise ValidationError("choose one of the tip buttons", field="tip")
    tip_tiyn = price_tiyn * int(tip_text) // 100
    return price_tiyn + tip_tiyn, tip_tiyn


def today_totals(merchant_id: int, now: datetime | None = None) -> tuple[int, int, int]:
    """(invoices created today, paid ones, paid KZT in tiyn) for the zone's business day."""
    day = business_day.today(now)
    start, end = business_day.day_range(day, day)  # bounded: `now` may name a past day
    paid = Invoice.status.in_([InvoiceStatus.PROCESSING, InvoiceStatus.SETTLED])
    # PostgreSQL's SUM(bigint) is NUMERIC; cast back so money stays an int.
    paid_sum = cast(func.coalesce(func.sum(Invoice.price_tiyn).filter(paid), 0), BigInteger)
    row = (
        db()
        .execute(
            select(func.count(), func.count().filter(paid), paid_sum).where(
                Invoice.merchant_id == merchant_id,
                Invoice.created_at >= start,
                Invoice.created_at < end,
            )
        )
        .one()
    )
    return int(row[0]), int(row[1]), int(row[2])


def current_merchant() -> Merchant:
    merchant = db().get(Merchant, current_user.merchant_id)
    assert merchant is not None  # owners and cashiers always belong to a merchant
    return merchant


def _page(
    merchant: Merchant,
    template: str = "terminal.html",
    errors: dict[str, str] | None = None,
    form: dict[str, str] | None = None,
) -> str:
    recent = (
        db()
        .scalars(
            select(Invoice)
            .where(Invoice.merchant_id == merchant.id)
            .order_by(Invoice.created_at.desc())
            .limit(10)
        )
        .all()
    )
    created, paid_count, paid_tiyn = today_totals(merchant.id)
    items = catalog.list_items(db(), merchant.id)
    return render_template(
        template,
        merchant=merchant,
        recent=recent,
        methods=available_methods(merchant),
        items=items,
        categories=catalog.categories(items),
        # The cart's grid: by category, or one category (`?category=`, works without scripts).
        groups=catalog.group_by_category(items, request.args.get("category")),
        tips=TIP_PRESETS_PERCENT,
        today_created=created,
        today_paid=paid_count,
        today_tiyn=paid_tiyn,
        errors=errors or {},
        form=form or {"tip": "0"},
    )


@bp.get("/")
@require_role("cashier", "owner")
def index() -> str:
    return _page(current_merchant())


@bp.get("/cart")
@require_role("cashier", "owner")
def cart() -> str:
    return _page(current_merchant(), "terminal_cart.html")


def _cart(merchant: Merchant) -> list[catalog.CartLine]:
    quantities: dict[int, int] = {}
    for key, value in request.form.items():
        if key.startswith("qty-"):
            text = value.strip() or "0"
            # A product id or quantity that is no plain number is refused, never a 500.
            if not is_whole_number(key[4:]) or not is_whole_number(text):
                raise ValidationError("quantities are whole numbers", field="cart")
            quantities[int(key[4:])] = int(text)
    return catalog.build_cart(db(), merchant.id, quantities)


@bp.post("/invoices")
@require_role("cashier", "owner")
def create() -> Response | tuple[str, int]:
    merchant = current_merchant()
    form = form_values(FORM_FIELDS)
    cart_mode = form["mode"] == "cart"
    lines: list[catalog.CartLine] = []
    session = db()
    try:
        if form["method"] not in (PaymentMethod.BTC.value, PaymentMethod.KZTE.value, CHOOSE):
            raise ValidationError(gettext("choose BTC or KZTE"), field="method")
        if cart_mode:
            lines = _cart(merchant)
            base_tiyn = sum(line.total_tiyn for line in lines)
            description = catalog.cart_description(lines)
        else:
            base_tiyn, description = (
                parse_tenge(form["amount"], "amount"),
                form["description"][:200],
            )
        price_tiyn, tip_tiyn = add_tip(base_tiyn, form["tip"])
        if tip_tiyn:
            # Written in the cashier's language: the note is stored with the invoice.
            note = gettext(
                "tip %(percent)s%%: %(amount)s ₸", percent=form["tip"], amount=format_kzt(tip_tiyn)
            )
            description = f"{description} · {note}" if description else note
        description = description[:200]
        if form["method"] == CHOOSE:
            validate_price(settings(), price_tiyn)
            if merchant.status is not MerchantStatus.ACTIVE:
                raise MerchantNotActiveError(
                    gettext(
                        "merchant %(name)s is %(state)s; invoices cannot be created",
                        name=repr(merchant.name),
                        state=label(merchant.status, "merchant"),
                    )
                )
            token = choice.make_token(merchant.id, price_tiyn, description, current_user.id, lines)
            return redirect(url_for("choice.terminal_wait", t=token))
        request_ = invoices.InvoiceRequest(
            merchant_id=merchant.id,
            price_tiyn=price_tiyn,
            method=PaymentMethod(form["method"]),
            description=description,
            created_by_user_id=current_user.id,
        )
        invoice = invoices.create_invoice(session, settings(), runtime().rates, request_)
        invoice_lines.record_lines(session, invoice.id, lines)  # sales per product
        session.commit()
    except PosError as exc:
        session.rollback()
        template = "terminal_cart.html" if cart_mode else "terminal.html"
        return _page(merchant, template, field_error(exc), form), 400
    invoices.publish_after_commit(runtime().session_factory, coordinator(), session)
    return redirect(url_for("terminal.show", invoice_id=invoice.id))


@bp.get("/invoices/<invoice_id>")
@require_role("cashier", "owner")
def show(invoice_id: str) -> str:
    """The QR screen: amount in KZT and crypto, countdown, live status, then "paid"."""
    invoice = invoices.get_invoice(db(), invoice_id, merchant_id=current_user.merchant_id)
    return render_template("terminal_invoice.html", **checkout_context(invoice))
