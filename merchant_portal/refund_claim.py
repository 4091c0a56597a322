"""The shopper's refund claim page `/r/<token>` (en/ru/kk).

The token is 192 random bits handed to the shopper by the shop; knowing it is the right to say
where the money goes, until the refund is sent. Only the shopper's own address is asked for; it
is validated for the zone's network (a KZTE wallet must be able to own the token account).
"""

from __future__ import annotations

from flask import Blueprint, render_template, request

from merchant_portal.context import db, settings
from merchant_portal.errors import translated
from merchant_portal.labels import format_kzt
from pos import money
from pos.errors import ValidationError
from pos.models import Invoice
from settlement.ledger import refunds
from settlement.ledger.models import Refund, RefundStatus

bp = Blueprint("refund_claim", __name__, url_prefix="/r")

UNITS = {"btc": ("BTC", 8)}


def _page(refund: Refund, error: str = "", value: str = "", code: int = 200) -> tuple[str, int]:
    invoice = db().get(Invoice, refund.invoice_id)
    symbol, decimals = UNITS.get(refund.method, ("KZTE", settings().kzte_decimals))
    html = render_template(
        "refund_claim.html",
        refund=refund,
        merchant_name=invoice.merchant.name if invoice else "",
        amount=money.format_units(refund.amount_atomic, decimals),
        amount_kzt=format_kzt(refund.amount_tiyn),
        symbol=symbol,
        can_claim=refund.status in (RefundStatus.CLAIMABLE, RefundStatus.CLAIMED),
        error=error,
        value=value,
    )
    return html, code


@bp.get("/<token>")
def show(token: str) -> tuple[str, int]:
    try:
        refund = refunds.by_token(db(), token)
    except refunds.RefundError:
        return render_template("refund_claim.html", refund=None), 404
    return _page(refund)


@bp.post("/<token>")
def claim(token: str) -> tuple[str, int]:
    session = db()
    try:
        refund = refunds.by_token(session, token)
    except refunds.RefundError:
        return render_template("refund_claim.html", refund=None), 404
    value = request.form.get("destination", "")[:200]
    try:
        refunds.claim(session, settings(), token, value)
    except (ValidationError, refunds.RefundError) as exc:
        session.rollback()
        refund = refunds.by_token(session, token)
        return _page(refund, translated(exc), value, 422)
    session.commit()
    return _page(refund)
