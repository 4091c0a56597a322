"""The cashier's terminal: keypad or cart, tip, method, then the QR screen and "paid".

Every route is for cashiers and owners of one merchant; invoices of another merchant are 404.
The keypad is JavaScript over a plain form, so the terminal still works with scripts off.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from flask import Blueprint, jsonify, redirect, render_template, request, url_for
from flask_babel import gettext
from flask_login import current_user
from sqlalchemy import BigInteger, cast, func, select
from werkzeug.wrappers import Response

from merchant_portal import choice
from merchant_portal.checkout import checkout_context, sale_status_label
from merchant_portal.context import coordinator, db, runtime, settings
from merchant_portal.errors import translated
from merchant_portal.forms import field_error, form_values, is_whole_number, parse_tenge
from merchant_portal.labels import format_kzt, format_number, label
from merchant_portal.security import require_role
from pos import business_day, catalog, invoice_lines, invoices, money, tips
from pos.errors import MerchantNotActiveError, PosError, ValidationError
from pos.models import Invoice, Merchant, MerchantStatus
from pos.settings import Settings
from pos.states import InvoiceStatus, PaymentMethod
from settlement.ledger import refunds

bp = Blueprint("terminal", __name__, url_prefix="/terminal")

CHOOSE = "choose"  # the shopper picks BTC or KZTE on their phone
# shown_total: the total with the tip the cashier was shown (pos.tips); charging needs it.
FORM_FIELDS = ("amount", "description", "tip", "method", "mode", "shown_total")
RECENT_LIMIT = 10


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


def tip_percent(tip_text: str) -> int:
    """The tip radio's value as a percentage (empty is no tip); pos.tips checks the preset."""
    tip_text = tip_text or "0"
    if not is_whole_number(tip_text):
        raise ValidationError("choose one of the tip buttons", field="tip")
    return int(tip_text)


def format_exact_kzt(exact_tiyn: Decimal) -> str:
    """An unrounded amount of tiyn as tenge with as many decimals as it has (at least two), in
    the reader's format: Decimal('23455.5') -> '234.555' (en), '234,555' (ru, kk). Only for
    showing how a tip was rounded."""
    amount = (Decimal(exact_tiyn) / money.TIYN_PER_KZT).normalize()
    exponent = amount.as_tuple().exponent
    if not isinstance(exponent, int) or exponent > -2:
        amount = amount.quantize(Decimal("0.01"))
    return format_number(amount)


def tip_lines(tip: tips.Tip) -> dict[str, str]:
    """What the terminal shows before charging: the total with the tip, and the rounding."""
    price, tip_kzt = format_kzt(tip.price_tiyn), format_kzt(tip.tip_tiyn)
    total = format_kzt(tip.total_tiyn)
    lines = {
        "total": total,
        "total_tiyn": str(tip.total_tiyn),
        "summary": gettext(
            "%(price)s ₸ + tip %(percent)d %% %(tip)s ₸ = %(total)s ₸",
            price=price,
            percent=tip.percent,
            tip=tip_kzt,
            total=total,
        ),
        "rounding": "",
    }
    if tip.rounded:
        lines["rounding"] = gettext(
            "%(percent)d %% of %(price)s ₸ is %(exact)s ₸, rounded half up to %(tip)s ₸.",
            percent=tip.percent,
            price=price,
            exact=format_exact_kzt(tip.exact_tip_tiyn),
            tip=tip_kzt,
        )
    return lines


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


def recent_sales(user_id: int, now: datetime | None = None) -> list[Invoice]:
    """The last RECENT_LIMIT invoices this person created at the till today (business day).

    A till has no identity of its own: the signed-in cashier is the terminal, so two cashiers
    at one shop each see their own sales (the "Today" totals stay the shop's)."""
    day = business_day.today(now)
    start, end = business_day.day_range(day, day)
    return list(
        db()
        .scalars(
            select(Invoice)
            .where(
                Invoice.created_by_user_id == user_id,
                Invoice.created_at >= start,
                Invoice.created_at < end,
            )
            .order_by(Invoice.created_at.desc(), Invoice.id)
            .limit(RECENT_LIMIT)
        )
        .all()
    )


def refundable_tiyn(invoice: Invoice) -> int:
    """What a settled sale still owes back (paid over or late), in tiyn; 0 when nothing is.

    The refund flow (refunds_pages) refunds money owed back: a sale paid exactly owes nothing.
    Starting it is the owner's (and the operator's), as on the refunds page; the terminal
    shows a cashier what is owed and that the owner refunds it."""
    if invoice.status is not InvoiceStatus.SETTLED:
        return 0
    owed_tiyn, owed_atomic = refunds.available(db(), settings(), invoice)
    return owed_tiyn if owed_atomic > 0 else 0


def returnable_tiyn(invoice: Invoice) -> int:
    """What of a settled sale its owner can still return (the sale less returns made)."""
    if current_user.role != "owner" or invoice.status is not InvoiceStatus.SETTLED:
        return 0
    return refunds.returnable(db(), settings(), invoice)


def _page(
    merchant: Merchant,
    template: str = "terminal.html",
    errors: dict[str, str] | None = None,
    form: dict[str, str] | None = None,
    review: tips.Tip | None = None,
) -> str:
    recent = recent_sales(current_user.id)
    created, paid_count, paid_tiyn = today_totals(merchant.id)
    items = catalog.list_items(db(), merchant.id)
    return render_template(
        template,
        merchant=merchant,
        recent=recent,
        refundable={inv.id: refundable_tiyn(inv) for inv in recent},
        returnable={inv.id: returnable_tiyn(inv) for inv in recent},
        can_refund=current_user.role == "owner",
        methods=available_methods(merchant),
        items=items,
        categories=catalog.categories(items),
        # The cart's grid: by category, or one category (`?category=`, works without scripts).
        groups=catalog.group_by_category(items, request.args.get("category")),
        tips=tips.PRESETS_PERCENT,
        today_created=created,
        today_paid=paid_count,
        today_tiyn=paid_tiyn,
        errors=errors or {},
        form=form or {"tip": "0"},
        review=tip_lines(review) if review else None,
        sale_status_label=sale_status_label,
    )


@bp.get("/")
@require_role("cashier", "owner")
def index() -> str:
    return _page(current_merchant())


@bp.get("/cart")
@require_role("cashier", "owner")
def cart() -> str:
    return _page(current_merchant(), "terminal_cart.html")


@bp.get("/quote")
@require_role("cashier", "owner")
def quote() -> tuple[Response, int]:
    """The total with the tip for terminal.js to show before charging (the server's rule).

    `amount` as typed, or `tiyn` (the cart's running total, recomputed at charge time)."""
    try:
        tiyn_text = request.args.get("tiyn", "")
        if tiyn_text:
            if not is_whole_number(tiyn_text):
                raise ValidationError("the cart total is a whole number of tiyn", field="amount")
            base_tiyn = int(tiyn_text)
        else:
            base_tiyn = parse_tenge(request.args.get("amount", ""), "amount")
        tip = tips.add_tip(base_tiyn, tip_percent(request.args.get("tip", "0")))
    except ValidationError as exc:
        return jsonify(error=translated(exc), field=exc.field), 400
    return jsonify(tip_lines(tip)), 200


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
        tip = tips.add_tip(base_tiyn, tip_percent(form["tip"]))
        price_tiyn = tip.total_tiyn
        if tip.tip_tiyn and form["shown_total"] != str(price_tiyn):
            # The cashier has not seen this total yet (no JavaScript, or the amount changed
            # after the last quote): show it with the rounding and let them charge it.
            template = "terminal_cart.html" if cart_mode else "terminal.html"
            return _page(merchant, template, form=form, review=tip), 200
        if tip.tip_tiyn:
            # Written in the cashier's language: the note is stored with the invoice.
            note = gettext(
                "tip %(percent)s%%: %(amount)s ₸",
                percent=tip.percent,
                amount=format_kzt(tip.tip_tiyn),
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
    return render_template(
        "terminal_invoice.html",
        refundable_tiyn=refundable_tiyn(invoice),
        returnable_tiyn=returnable_tiyn(invoice),
        can_refund=current_user.role == "owner",
        **checkout_context(invoice),
    )
