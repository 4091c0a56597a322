"""Fee invoices of `direct` merchants: the operator issues and marks them paid; an owner sees
their own (another merchant's do not exist for them)."""

from __future__ import annotations

from flask import Blueprint, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext, ngettext
from flask_login import current_user

from merchant_portal.context import db
from merchant_portal.forms import form_action
from merchant_portal.security import require_role
from pos import business_day
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
    )


@bp.post("/issue")
@require_role("operator")
def issue() -> ResponseReturnValue:
    def work() -> str:
        month = request.form.get("month", "")
        created = fee_invoices.issue_month(db(), month)
        return str(
            ngettext(
                "%(num)d fee invoice issued for %(month)s",
                "%(num)d fee invoices issued for %(month)s",
                len(created),
                month=month,
            )
        )

    return form_action(work, (fee_invoices.FeeInvoiceError,), url_for("fees.index"))


@bp.post("/<int:fee_invoice_id>/mark-paid")
@require_role("operator")
def mark_paid(fee_invoice_id: int) -> ResponseReturnValue:
    def work() -> str:
        reference = request.form.get("bank_reference", "")
        bill = fee_invoices.mark_paid(db(), fee_invoice_id, reference, current_user.id)
        return str(gettext("Fee invoice #%(id)s marked paid", id=bill.id))

    return form_action(work, (fee_invoices.FeeInvoiceError,), url_for("fees.index"))
