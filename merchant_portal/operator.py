"""The city operator's console: the merchant registry (issue 7 and 8 grow this)."""

from __future__ import annotations

from flask import Blueprint, render_template
from sqlalchemy import BigInteger, cast, func, select

from merchant_portal.context import db
from merchant_portal.security import require_role
from pos import money
from pos.models import Invoice, Merchant
from pos.states import InvoiceStatus

bp = Blueprint("operator", __name__, url_prefix="/operator")


@bp.get("/")
@require_role("operator")
def index() -> str:
    session = db()
    rows = session.execute(
        select(
            Merchant,
            func.count(Invoice.id),
            # PostgreSQL's SUM(bigint) is NUMERIC; cast back so money stays an int.
            cast(
                func.coalesce(
                    func.sum(Invoice.price_tiyn).filter(Invoice.status == InvoiceStatus.SETTLED), 0
                ),
                BigInteger,
            ),
        )
        .outerjoin(Invoice, Invoice.merchant_id == Merchant.id)
        .group_by(Merchant.id)
        .order_by(Merchant.name)
    ).all()
    return render_template("operator.html", rows=rows, format_kzt=money.format_kzt)
