"""Fee invoices of `direct` merchants: the operator issues and marks them paid; an owner sees
their own (another merchant's do not exist for them)."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user

from merchant_portal.context import db
from merchant_portal.security import require_role
from pos import business_day, money
from settlement.ledger import fee_invoices

bp = Blueprint("fees", __name__, url_prefix="/fees")


def _last_month() -> str:
    first = business_day.today().replace(day=1)
    return f"{first.year - (first.month == 1)}-{(first.month - 2) % 12 + 1:02d}"


@bp.get("/")
@require_role("operator", "owner")
def index() -> str:
    merchant_id = None if current_user.role == "operator" else current_user.merchant_id
    rows = fee_invoices.list_fee_invoices(db(), merchant_id)
    return render_template(
        "fees.html",
        rows=rows,
        operator=current_user.role == "operator",
        last_month=_last_month(),
        kzt=money.format_kzt,
    )


@bp.post("/issue")
@require_role("operator")
def issue() -> ResponseReturnValue:
    session = db()
    month = request.form.get("month", "")
    try:
        created = fee_invoices.issue_month(session, month)
    except fee_invoices.FeeInvoiceError as exc:
        session.rollback()
        flash(str(exc))
        return redirect(url_for("fees.index")), 303
    session.commit()
    flash(f"{len(created)} fee invoices issued for {month}")
    return redirect(url_for("fees.index")), 303


@bp.post("/<int:fee_invoice_id>/mark-paid")
@require_role("operator")
def mark_paid(fee_invoice_id: int) -> ResponseReturnValue:
    session = db()
    try:
        bill = fee_invoices.mark_paid(
            session, fee_invoice_id, request.form.get("bank_reference", ""), current_user.id
        )
    except fee_invoices.FeeInvoiceError as exc:
        session.rollback()
        flash(str(exc))
        return redirect(url_for("fees.index")), 303
    session.commit()
    flash(f"fee invoice #{bill.id} marked paid")
    return redirect(url_for("fees.index")), 303
