"""Refunds in the portal: owners and operators create claim links, record what was sent, and
cancel unsent ones. The zone sends `tenge` refunds (an operator records them); a `direct`
merchant sends their own (the owner records them). An owner sees only their merchant's."""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user

from merchant_portal.context import db, settings
from merchant_portal.security import require_role
from pos import money
from pos.errors import ValidationError
from settlement.ledger import refunds

bp = Blueprint("refunds", __name__, url_prefix="/refunds")


def _scope() -> int | None:
    return None if current_user.role == "operator" else int(current_user.merchant_id)


@bp.get("/")
@require_role("operator", "owner")
def index() -> str:
    rows = refunds.list_refunds(db(), _scope())
    return render_template(
        "refunds.html",
        rows=rows,
        operator=current_user.role == "operator",
        kzt=money.format_kzt,
        base=request.host_url.rstrip("/"),
    )


def _back() -> ResponseReturnValue:
    return redirect(url_for("refunds.index")), 303


@bp.post("/")
@require_role("operator", "owner")
def create() -> ResponseReturnValue:
    session = db()
    try:
        refund = refunds.create(
            session,
            settings(),
            request.form.get("invoice_id", "").strip(),
            merchant_id=_scope(),
            user_id=current_user.id,
        )
    except refunds.RefundError as exc:
        session.rollback()
        flash(str(exc))
        return _back()
    session.commit()
    flash(f"refund #{refund.id} created: give the shopper the claim link /r/{refund.token}")
    return _back()


@bp.post("/<int:refund_id>/sent")
@require_role("operator", "owner")
def record_sent(refund_id: int) -> ResponseReturnValue:
    session = db()
    try:
        refund = refunds.get(session, refund_id, _scope())
        if refund.settlement_mode == "tenge" and current_user.role != "operator":
            abort(403)  # the zone holds the crypto: only the zone records what it sent
        refunds.record_sent(
            session,
            refund_id,
            request.form.get("txid", ""),
            merchant_id=_scope(),
            user_id=current_user.id,
        )
    except (refunds.RefundError, ValidationError) as exc:
        session.rollback()
        flash(str(exc))
        return _back()
    session.commit()
    flash(f"refund #{refund_id} recorded as sent; it is posted once the network confirms it")
    return _back()


@bp.post("/<int:refund_id>/cancel")
@require_role("operator", "owner")
def cancel(refund_id: int) -> ResponseReturnValue:
    session = db()
    try:
        refunds.cancel(session, refund_id, merchant_id=_scope(), user_id=current_user.id)
    except refunds.RefundError as exc:
        session.rollback()
        flash(str(exc))
        return _back()
    session.commit()
    flash(f"refund #{refund_id} cancelled")
    return _back()
