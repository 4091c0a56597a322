"""Refunds in the portal: owners and operators create claim links (for money owed back, or for
a settled sale the owner returns), record what was sent, and cancel unsent ones. The zone sends
`tenge` refunds (an operator records them); a `direct` merchant sends their own (the owner
records them). An owner sees only their merchant's."""

from __future__ import annotations

from collections.abc import Callable

from flask import Blueprint, abort, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext
from flask_login import current_user

from merchant_portal.context import db, settings
from merchant_portal.forms import form_action, parse_tenge
from merchant_portal.labels import format_kzt
from merchant_portal.security import require_role
from pos.errors import PosError, ValidationError
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
        base=request.host_url.rstrip("/"),
    )


def _act(work: Callable[[], str], *errors: type[PosError]) -> ResponseReturnValue:
    return form_action(work, errors or (refunds.RefundError,), url_for("refunds.index"))


@bp.post("/")
@require_role("operator", "owner")
def create() -> ResponseReturnValue:
    def work() -> str:
        refund = refunds.create(
            db(),
            settings(),
            request.form.get("invoice_id", "").strip(),
            merchant_id=_scope(),
            user_id=current_user.id,
        )
        link = f"/r/{refund.token}"
        return str(
            gettext(
                "Refund #%(id)s created: give the shopper the claim link %(link)s",
                id=refund.id,
                link=link,
            )
        )

    return _act(work)


@bp.post("/return")
@require_role("operator", "owner")
def create_return() -> ResponseReturnValue:
    """The owner returns a settled sale: all of it, or the amount in tenge given."""

    def work() -> str:
        amount = request.form.get("amount", "").strip()
        refund = refunds.create_return(
            db(),
            settings(),
            request.form.get("invoice_id", "").strip(),
            amount_tiyn=parse_tenge(amount, "amount") if amount else None,
            merchant_id=_scope(),
            user_id=current_user.id,
        )
        link = f"/r/{refund.token}"
        return str(
            gettext(
                "Sale returned: refund #%(id)s of %(amount)s ₸. Give the shopper the claim link"
                " %(link)s",
                id=refund.id,
                amount=format_kzt(refund.amount_tiyn),
                link=link,
            )
        )

    return _act(work, refunds.RefundError, ValidationError)


@bp.post("/<int:refund_id>/sent")
@require_role("operator", "owner")
def record_sent(refund_id: int) -> ResponseReturnValue:
    def work() -> str:
        refund = refunds.get(db(), refund_id, _scope())
        if refund.settlement_mode == "tenge" and current_user.role != "operator":
            abort(403)  # the zone holds the crypto: only the zone records what it sent
        refunds.record_sent(
            db(),
            refund_id,
            request.form.get("txid", ""),
            merchant_id=_scope(),
            user_id=current_user.id,
        )
        return str(
            gettext(
                "Refund #%(id)s recorded as sent; it is posted once the network confirms it",
                id=refund_id,
            )
        )

    return _act(work, refunds.RefundError, ValidationError)


@bp.post("/<int:refund_id>/cancel")
@require_role("operator", "owner")
def cancel(refund_id: int) -> ResponseReturnValue:
    def work() -> str:
        refunds.cancel(db(), refund_id, merchant_id=_scope(), user_id=current_user.id)
        return str(gettext("Refund #%(id)s cancelled", id=refund_id))

    return _act(work)
