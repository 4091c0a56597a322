""" "Shopper chooses": a signed, expiring offer the shopper opens on their phone to pick a method.

The terminal signs {merchant, price, description, cashier} with the app's SECRET_KEY
(itsdangerous); the public page `/c/<token>` creates the invoice only when the shopper picks
BTC or KZTE, so the rate is locked at the pick. A Redis key makes each offer create at most one
invoice and tells the waiting terminal which invoice that was.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from flask import Blueprint, abort, current_app, redirect, render_template, request, url_for
from flask_login import current_user
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from redis.exceptions import RedisError
from werkzeug.wrappers import Response

from merchant_portal.branding import use_store_language
from merchant_portal.context import coordinator, db, runtime, settings
from merchant_portal.labels import format_kzt
from merchant_portal.security import require_role
from pos import catalog, invoice_lines, invoices
from pos.catalog import CartLine
from pos.errors import CoordinationUnavailableError, PosError, ValidationError
from pos.models import Merchant
from pos.qr import qr_svg
from pos.states import PaymentMethod

bp = Blueprint("choice", __name__)

SALT = "cryptocity.choice.v1"
MAX_AGE_SECONDS = 15 * 60
PENDING = "pending"


class ChoiceExpiredError(ValidationError):
    """The payment link is too old or was tampered with."""


@dataclass(frozen=True)
class Offer:
    merchant_id: int
    price_tiyn: int
    description: str
    cashier_id: int
    # A cart sale's (catalog item id, quantity, unit price in tiyn), stored with the invoice.
    lines: tuple[tuple[int, int, int], ...] = ()


def _serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt=SALT)


def make_token(
    merchant_id: int,
    price_tiyn: int,
    description: str,
    cashier_id: int,
    lines: Sequence[CartLine] = (),
) -> str:
    """Sign an offer; it is valid for MAX_AGE_SECONDS. A cart's lines ride along without their
    names (the link is a QR code: the shorter, the easier to scan)."""
    payload: dict[str, object] = {
        "m": merchant_id,
        "p": price_tiyn,
        "d": description,
        "c": cashier_id,
    }
    if lines:
        payload["l"] = [[line.item_id, line.quantity, line.price_tiyn] for line in lines]
    return str(_serializer().dumps(payload))


def read_token(token: str) -> Offer:
    """The offer in a token, or ChoiceExpiredError for an expired, forged or mangled one."""
    try:
        data = _serializer().loads(token, max_age=MAX_AGE_SECONDS)
    except SignatureExpired:
        raise ChoiceExpiredError(
            "this payment link has expired; ask the cashier for a new one"
        ) from None
    except BadSignature:
        raise ChoiceExpiredError("this payment link is not valid; ask the cashier") from None
    lines = tuple((int(i), int(q), int(p)) for i, q, p in data.get("l", []))
    return Offer(int(data["m"]), int(data["p"]), str(data["d"]), int(data["c"]), lines)


def _cart_lines(merchant_id: int, offer: Offer) -> list[CartLine]:
    """The offer's lines with their products' names (as sold: the price is the token's)."""
    names = {item.id: item.name for item in catalog.list_items(db(), merchant_id, False)}
    return [
        CartLine(item_id, names.get(item_id, f"#{item_id}"), quantity, price)
        for item_id, quantity, price in offer.lines
        if item_id in names  # a product of another shop never comes from our own signature
    ]


def _key(token: str) -> str:
    return "cc:choice:" + hashlib.sha256(token.encode()).hexdigest()[:40]


def picked_invoice(token: str) -> str | None:
    """The invoice this offer created, if the shopper has picked already."""
    try:
        value = coordinator().client.get(_key(token))
    except RedisError as exc:
        raise CoordinationUnavailableError(f"Redis is unavailable: {exc}") from exc
    return None if value in (None, PENDING) else str(value)


def _reserve(token: str) -> str | None:
    """Claim the offer; None if we may create its invoice, else what holds it already."""
    client = coordinator().client
    try:
        if client.set(_key(token), PENDING, nx=True, ex=MAX_AGE_SECONDS * 2):
            return None
        return str(client.get(_key(token)) or PENDING)
    except RedisError as exc:
        raise CoordinationUnavailableError(f"Redis is unavailable: {exc}") from exc


def _finish(token: str, invoice_id: str | None) -> None:
    client = coordinator().client
    try:
        if invoice_id is None:
            client.delete(_key(token))  # creation failed: the shopper may try again
        else:
            client.set(_key(token), invoice_id, ex=MAX_AGE_SECONDS * 2)
    except RedisError as exc:
        raise CoordinationUnavailableError(f"Redis is unavailable: {exc}") from exc


def _methods(merchant: Merchant) -> list[str]:
    from merchant_portal.terminal import available_methods

    return available_methods(merchant)


@bp.route("/c/<token>", methods=["GET", "POST"])
def pick(token: str) -> Response | str | tuple[str, int]:
    """Public: the shopper sees the amount and picks the currency; the invoice is made then."""
    offer = read_token(token)
    existing = picked_invoice(token)
    if existing:
        return redirect(url_for("checkout.show", invoice_id=existing))
    merchant = db().get(Merchant, offer.merchant_id)
    if merchant is None:
        abort(404)
    methods = _methods(merchant)
    context = {
        # The shop's look and language, as on the checkout this page leads to.
        "brand": use_store_language(merchant.id),
        "merchant": merchant,
        "merchant_name": merchant.name,
        "price": format_kzt(offer.price_tiyn),
        "offer": offer,
        "methods": methods,
        "token": token,
    }
    if request.method == "GET":
        return render_template("choice.html", **context)
    method = request.form.get("method", "")
    if method not in methods:
        return render_template("choice.html", error_method=True, **context), 400
    held = _reserve(token)
    if held is not None:
        if held == PENDING:
            return render_template("choice.html", busy=True, **context), 409
        return redirect(url_for("checkout.show", invoice_id=held))
    session = db()
    try:
        invoice = invoices.create_invoice(
            session,
            settings(),
            runtime().rates,
            invoices.InvoiceRequest(
                merchant_id=offer.merchant_id,
                price_tiyn=offer.price_tiyn,
                method=PaymentMethod(method),
                description=offer.description,
                created_by_user_id=offer.cashier_id,
            ),
        )
        invoice_lines.record_lines(session, invoice.id, _cart_lines(offer.merchant_id, offer))
        session.commit()
    except PosError:
        session.rollback()
        _finish(token, None)
        raise
    _finish(token, invoice.id)
    invoices.publish_after_commit(runtime().session_factory, coordinator(), session)
    return redirect(url_for("checkout.show", invoice_id=invoice.id))


def _own_offer(token: str) -> Offer:
    offer = read_token(token)
    if offer.merchant_id != current_user.merchant_id:
        abort(404)  # another merchant's offer: we never say whose
    return offer


@bp.get("/terminal/choice")
@require_role("cashier", "owner")
def terminal_wait() -> Response | str:
    """The terminal shows a QR of the choice page and waits for the shopper's pick."""
    token = request.args.get("t", "")
    offer = _own_offer(token)
    invoice_id = picked_invoice(token)
    if invoice_id:
        return redirect(url_for("terminal.show", invoice_id=invoice_id))
    return render_template(
        "terminal_choice.html",
        offer=offer,
        price=format_kzt(offer.price_tiyn),
        token=token,
        choice_url=url_for("choice.pick", token=token, _external=True),
    )


@bp.get("/terminal/choice/status.json")
@require_role("cashier", "owner")
def terminal_wait_status() -> dict[str, str | None]:
    token = request.args.get("t", "")
    _own_offer(token)
    invoice_id = picked_invoice(token)
    return {
        "invoice": invoice_id,
        "terminal_url": url_for("terminal.show", invoice_id=invoice_id) if invoice_id else None,
    }


@bp.get("/terminal/choice/qr.svg")
@require_role("cashier", "owner")
def terminal_wait_qr() -> Response:
    token = request.args.get("t", "")
    _own_offer(token)
    svg = qr_svg(url_for("choice.pick", token=token, _external=True))
    return Response(svg, mimetype="image/svg+xml", headers={"Cache-Control": "no-store"})
