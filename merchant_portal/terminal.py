"""The cashier's terminal: key in a KZT amount, pick the method, show the QR."""

from __future__ import annotations

from datetime import datetime, time

from flask import Blueprint, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import BigInteger, cast, func, select
from werkzeug.wrappers import Response

from merchant_portal.context import coordinator, db, runtime, settings
from merchant_portal.security import require_role
from pos import invoices, money
from pos.db import utcnow
from pos.errors import PosError, ValidationError
from pos.models import Invoice, Merchant
from pos.states import InvoiceStatus, PaymentMethod

bp = Blueprint("terminal", __name__, url_prefix="/terminal")


def _page(
    merchant: Merchant, errors: dict[str, str] | None = None, form: dict[str, str] | None = None
) -> str:
    session = db()
    start = datetime.combine(utcnow().date(), time.min, tzinfo=utcnow().tzinfo)
    recent = session.scalars(
        select(Invoice)
        .where(Invoice.merchant_id == merchant.id)
        .order_by(Invoice.created_at.desc())
        .limit(10)
    ).all()
    settled_sum = cast(func.coalesce(func.sum(Invoice.price_tiyn), 0), BigInteger)
    settled_today = session.execute(
        select(func.count(), settled_sum).where(
            Invoice.merchant_id == merchant.id,
            Invoice.status == InvoiceStatus.SETTLED,
            Invoice.created_at >= start,
        )
    ).one()
    methods = [
        m.value
        for m, ok in (
            (PaymentMethod.BTC, merchant.btc_xpub),
            (PaymentMethod.KZTE, merchant.solana_wallet),
        )
        if ok
    ]
    return render_template(
        "terminal.html",
        merchant=merchant,
        recent=recent,
        methods=methods,
        today_count=settled_today[0],
        today_tiyn=int(settled_today[1]),
        errors=errors or {},
        form=form or {},
        format_kzt=money.format_kzt,
    )


def _merchant() -> Merchant:
    merchant = db().get(Merchant, current_user.merchant_id)
    assert merchant is not None  # owners and cashiers always belong to a merchant
    return merchant


@bp.get("/")
@require_role("cashier", "owner")
def index() -> str:
    return _page(_merchant())


@bp.post("/invoices")
@require_role("cashier", "owner")
def create() -> Response | tuple[str, int]:
    merchant = _merchant()
    form = {key: request.form.get(key, "") for key in ("amount", "method", "description")}
    try:
        if form["method"] not in (PaymentMethod.BTC.value, PaymentMethod.KZTE.value):
            raise ValidationError("choose BTC or KZTE", field="method")
        request_ = invoices.InvoiceRequest(
            merchant_id=merchant.id,
            price_tiyn=money.parse_kzt(form["amount"]),
            method=PaymentMethod(form["method"]),
            description=form["description"].strip()[:200],
            created_by_user_id=current_user.id,
        )
        session = db()
        invoice = invoices.create_invoice(session, settings(), runtime().rates, request_)
        session.commit()
    except PosError as exc:
        db().rollback()
        field = exc.field if isinstance(exc, ValidationError) and exc.field else "form"
        return _page(merchant, {field: str(exc)}, form), 400
    invoices.publish_after_commit(runtime().session_factory, coordinator(), session)
    return redirect(url_for("checkout.show", invoice_id=invoice.id))
