"""The shopper's public checkout page `/i/<invoice id>`: QR, amount, live status."""

from __future__ import annotations

from flask import Blueprint, Response, render_template

from merchant_portal.context import coordinator, db, settings
from pos import invoices, money
from pos.invoice_view import crypto_decimals, crypto_symbol, payment_uri, remaining_atomic
from pos.qr import qr_svg

bp = Blueprint("checkout", __name__, url_prefix="/i")


@bp.get("/<invoice_id>")
def show(invoice_id: str) -> str:
    invoice = invoices.get_invoice(db(), invoice_id)
    uri = payment_uri(invoice, settings(), invoice.merchant.name)
    decimals = crypto_decimals(invoice, settings())
    return render_template(
        "checkout.html",
        invoice=invoice,
        uri=uri,
        symbol=crypto_symbol(invoice),
        due=money.format_units(invoice.amount_due_atomic, decimals),
        remaining=money.format_units(remaining_atomic(invoice), decimals),
        price=money.format_kzt(invoice.price_tiyn),
        merchant_name=invoice.merchant.name,
    )


@bp.get("/<invoice_id>/qr.svg")
def qr(invoice_id: str) -> Response:
    invoice = invoices.get_invoice(db(), invoice_id)
    svg = qr_svg(payment_uri(invoice, settings(), invoice.merchant.name))
    return Response(svg, mimetype="image/svg+xml", headers={"Cache-Control": "private, max-age=60"})


@bp.get("/<invoice_id>/status.json")
def status(invoice_id: str) -> dict[str, object]:
    live = invoices.live_view(db(), coordinator(), invoice_id)
    flags = [f for f in live.get("flags", "").split(",") if f]
    return {
        "id": invoice_id,
        "status": live["status"],
        "flags": flags,
        "paid_atomic": int(live["paid"]),
        "due_atomic": int(live["due"]),
        "expires_at": int(live["exp"]),
        "version": int(live["version"]),
    }
