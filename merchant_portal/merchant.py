"""The owner's pages: profile, payment setup and recent invoices (issue 7 grows this)."""

from __future__ import annotations

from flask import Blueprint, render_template
from flask_login import current_user
from sqlalchemy import select

from merchant_portal.context import db, settings
from merchant_portal.security import require_role
from pos import money
from pos.methods.bitcoin import first_addresses
from pos.models import Invoice, Merchant

bp = Blueprint("merchant", __name__, url_prefix="/merchant")


@bp.get("/")
@require_role("owner")
def index() -> str:
    session = db()
    merchant = session.get(Merchant, current_user.merchant_id)
    assert merchant is not None
    addresses = (
        first_addresses(merchant.btc_xpub, settings().bitcoin_network) if merchant.btc_xpub else []
    )
    recent = session.scalars(
        select(Invoice)
        .where(Invoice.merchant_id == merchant.id)
        .order_by(Invoice.created_at.desc())
        .limit(25)
    ).all()
    return render_template(
        "merchant.html",
        merchant=merchant,
        addresses=addresses,
        recent=recent,
        format_kzt=money.format_kzt,
    )
