"""The shopper's public checkout `/i/<invoice id>`: QR, amounts, live status and the receipt.

The invoice id is 100 random bits, so knowing it is the shopper's right to see the page; the
pages show nothing a receipt would not.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, current_app, render_template, request, url_for
from flask_babel import gettext as _
from sqlalchemy import select

from merchant_portal import live_limits
from merchant_portal.branding import use_store_language
from merchant_portal.context import client_ip, coordinator, db, runtime, settings
from merchant_portal.i18n import status_label
from merchant_portal.labels import format_kzt
from merchant_portal.live import LIFETIME_SECONDS, invoice_events, live_payload
from pos import invoices, money, shop_domains
from pos.errors import CoordinationUnavailableError
from pos.integrations import ApiInvoiceExtra
from pos.invoice_view import amount_to_request, crypto_decimals, crypto_symbol, payment_uri
from pos.models import Invoice, MerchantStatus
from pos.qr import qr_svg
from pos.states import EventType, InvoiceStatus, PaymentMethod
from settlement.ledger.models import Refund, RefundStatus

bp = Blueprint("checkout", __name__, url_prefix="/i")

RECEIPT_WIDTHS = ("58", "80")
LIVE_RETRY_AFTER_SECONDS = 30  # a refused page polls meanwhile; streams free up as pages leave


def is_partly_paid(invoice: Invoice) -> bool:
    return invoice.status is InvoiceStatus.NEW and invoice.amount_paid_atomic > 0


def sale_status_label(invoice: Invoice) -> str:
    """The status as people read it: an open invoice with some money in is "partly paid"."""
    return _("partly paid") if is_partly_paid(invoice) else status_label(invoice.status)


def refund_notice(invoice: Invoice) -> dict[str, str] | None:
    """How the shopper gets the extra of an overpaid invoice back, or None when nothing is over.

    The way back is the refund claim link (merchant_portal.refund_claim): once the shop or the
    zone has created it, the checkout shows it, since knowing the invoice id is already the
    shopper's right here; before that the shopper is told the shop will hand it over."""
    extra = invoice.amount_paid_atomic - invoice.amount_due_atomic
    if not invoice.paid_over or extra <= 0:
        return None
    refund = db().scalar(
        select(Refund)
        .where(Refund.invoice_id == invoice.id, Refund.status != RefundStatus.CANCELLED)
        .order_by(Refund.id.desc())
        .limit(1)
    )
    notice = {
        "extra": money.format_units(extra, crypto_decimals(invoice, settings())),
        "claim_url": "",
        "refund_status": refund.status.value if refund else "",
    }
    if refund is not None and refund.status in (RefundStatus.CLAIMABLE, RefundStatus.CLAIMED):
        notice["claim_url"] = url_for("refund_claim.show", token=refund.token)
    return notice


def checkout_context(invoice: Invoice) -> dict[str, Any]:
    """Everything the checkout and terminal QR screens show about an invoice."""
    cfg = settings()
    decimals = crypto_decimals(invoice, cfg)
    address = invoice.btc_address if invoice.method is PaymentMethod.BTC else invoice.kzte_recipient
    return {
        "invoice": invoice,
        "uri": payment_uri(invoice, cfg, invoice.merchant.name),
        "address": address or "",
        "symbol": crypto_symbol(invoice),
        "due": money.format_units(invoice.amount_due_atomic, decimals),
        "paid": money.format_units(invoice.amount_paid_atomic, decimals),
        # The same amount the QR asks for (never below the BTC dust limit).
        "remaining": money.format_units(amount_to_request(invoice), decimals),
        "partly_paid": is_partly_paid(invoice),
        "status_text": sale_status_label(invoice),
        "refund_notice": refund_notice(invoice),
        # Open invoices of a suspended shop still settle (pos.models.MerchantStatus); the
        # shopper is told the shop is suspended before paying, never left to find out.
        "shop_suspended": invoice.merchant.status is MerchantStatus.SUSPENDED
        and invoice.status is InvoiceStatus.NEW,
        "price": format_kzt(invoice.price_tiyn),
        "rate": invoice.rate,
        "merchant_name": invoice.merchant.name,
        "expires_ts": int(invoice.expires_at.timestamp()),
        "is_paid": invoice.status in (InvoiceStatus.PROCESSING, InvoiceStatus.SETTLED),
        "return_url": return_url(invoice),
    }


def return_url(invoice: Invoice) -> str | None:
    """The API client's `redirect_url`, if it still leads to one of the merchant's shop
    domains now (the owner may have removed the domain since the invoice was made)."""
    extra = db().get(ApiInvoiceExtra, invoice.id)
    if extra is None:
        return None
    domains = shop_domains.domains_of(invoice.merchant.shop_domains)
    return shop_domains.allowed_redirect(extra.redirect_url, domains)


def rejected_payments(invoice: Invoice) -> list[dict[str, Any]]:
    """The data of the invoice's payment_rejected events: transfers the shopper made that do
    not count (another token, after the invoice closed...), so they learn why here."""
    return [e.data for e in invoice.events if e.type == EventType.PAYMENT_REJECTED.value]


@bp.get("/<invoice_id>")
def show(invoice_id: str) -> str:
    invoice = invoices.get_invoice(db(), invoice_id)
    brand = use_store_language(invoice.merchant_id)
    return render_template(
        "checkout.html",
        brand=brand,
        rejections=rejected_payments(invoice),
        **checkout_context(invoice),
    )


@bp.get("/<invoice_id>/qr.svg")
def qr(invoice_id: str) -> Response:
    invoice = invoices.get_invoice(db(), invoice_id)
    svg = qr_svg(payment_uri(invoice, settings(), invoice.merchant.name))
    # The URI changes after a partial payment (it asks for the rest): never cache it long.
    return Response(svg, mimetype="image/svg+xml", headers={"Cache-Control": "no-cache"})


@bp.get("/<invoice_id>/status.json")
def status(invoice_id: str) -> dict[str, object]:
    """The polling fallback of the live pages."""
    return live_payload(runtime().session_factory, coordinator(), invoice_id)


@bp.get("/<invoice_id>/events")
def events(invoice_id: str) -> Response:
    """Server-Sent Events: the invoice's live state now and after each of its events.

    Open streams are capped per client address and per invoice (`live_limits`); over a cap
    the answer is 429 and the page polls status.json instead.
    """
    invoices.get_invoice(db(), invoice_id)  # 404 before the stream opens
    db().close()  # the stream may last minutes: give the connection back to the pool
    rt = runtime()
    cfg = settings()
    lifetime = float(current_app.config.get("SSE_LIFETIME_SECONDS", LIFETIME_SECONDS))
    try:
        slot = live_limits.take_slot(
            rt.coordinator,
            client_ip(),
            invoice_id,
            cfg.live_streams_per_ip,
            cfg.live_streams_per_invoice,
            lifetime,
        )
    except CoordinationUnavailableError:
        # Nothing to count with, and nothing to stream from either: the stream below sends
        # the state the database knows and tells the page to poll, so it cannot pile up.
        slot = None
    if isinstance(slot, live_limits.Refusal):
        message = _("Too many live pages are open; this page checks for updates instead.")
        return Response(
            message,
            status=429,
            mimetype="text/plain",
            headers={"Retry-After": str(LIVE_RETRY_AFTER_SECONDS), "X-Refused": slot.value},
        )
    stream = invoice_events(rt.session_factory, rt.coordinator, invoice_id, lifetime)
    response = Response(
        stream,
        mimetype="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
    if slot is not None:
        response.call_on_close(slot.release)  # the stream ended or the page went away
    return response


@bp.get("/<invoice_id>/receipt")
def receipt(invoice_id: str) -> str:
    """A printable receipt (58 or 80 mm thermal paper) with the transaction ids."""
    invoice = invoices.get_invoice(db(), invoice_id)
    brand = use_store_language(invoice.merchant_id)
    width = request.args.get("width", "80")
    context = checkout_context(invoice)
    decimals = crypto_decimals(invoice, settings())
    payments = [
        {
            "txid": p.txid,
            "output_index": p.output_index,
            "chain": p.chain,
            "amount": money.format_units(p.amount_atomic, decimals),
            "status": p.status.value,
            "confirmations": p.confirmations,
        }
        for p in invoice.payments
    ]
    return render_template(
        "receipt.html",
        payments=payments,
        width=width if width in RECEIPT_WIDTHS else "80",
        widths=RECEIPT_WIDTHS,
        brand=brand,
        **context,
    )
