"""Settlement reports in the portal: the operator's zone dashboard, payouts and reconciliation;
a merchant owner's statement. Every table has a CSV export; numbers are those of
`cryptocity report … --json` (the same service functions).

Access: operators see the whole zone; an owner sees only their own merchant's statement, and
another merchant's statement is simply not found (404).
"""

from __future__ import annotations

from datetime import date
from typing import Any

from flask import Blueprint, Response, abort, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user
from sqlalchemy import select

from merchant_portal.context import client_ip, db, settings
from merchant_portal.security import require_role
from pos import business_day, money
from pos.errors import ValidationError
from pos.models import Merchant, Role
from settlement.ledger import payouts, reconcile, reports, statements
from settlement.ledger.charts import stacked_bars
from settlement.ledger.errors import PayoutError
from settlement.ledger.models import PayoutStatus

bp = Blueprint("reports", __name__, url_prefix="/reports")


def _period() -> reports.DateRange:
    return reports.parse_range(
        request.args.get("from") or None, request.args.get("to") or None, business_day.today()
    )


def _csv(table: reports.Table, name: str) -> Response:
    return Response(
        reports.csv_text(table),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{name}.csv"'},
    )


def _kzt(tiyn: int) -> str:
    return money.format_kzt(tiyn)


def _duration(seconds: int | None) -> str:
    if seconds is None:
        return "—"
    minutes, secs = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min {secs:02d} s"


# --- operator: zone dashboard ----------------------------------------------------------------


@bp.get("/zone")
@require_role("operator")
def zone() -> str:
    period = _period()
    board = reports.zone_dashboard(db(), period)
    chart = stacked_bars(
        [(d.strftime("%d.%m"), v) for d, v in board.volume_by_day],
        reports.METHODS,
        lambda tiyn: f"{tiyn // money.TIYN_PER_KZT:,}".replace(",", "\u202f") + " ₸",
    )
    return render_template(
        "reports/zone.html",
        board=board,
        period=period,
        chart=chart,
        kzt=_kzt,
        duration=_duration,
    )


@bp.get("/zone/<table>.csv")
@require_role("operator")
def zone_csv(table: str) -> Response:
    period = _period()
    tables = reports.zone_dashboard(db(), period).tables()
    if table not in tables:
        abort(404)
    return _csv(tables[table], f"zone-{table}-{period.start}-{period.end}")


# --- operator: payouts -----------------------------------------------------------------------


def _payout_filters() -> tuple[PayoutStatus | None, date | None]:
    raw_status = request.args.get("status") or None
    raw_date = request.args.get("date") or None
    try:
        status = None if raw_status is None else PayoutStatus(raw_status)
        day = None if raw_date is None else date.fromisoformat(raw_date)
    except ValueError:
        raise ValidationError("unknown status or malformed date", field="status") from None
    return status, day


@bp.get("/payouts")
@require_role("operator")
def payout_list() -> str:
    status, day = _payout_filters()
    rows = payouts.list_payouts(db(), status, day)
    return render_template(
        "reports/payouts.html",
        rows=rows,
        status=status.value if status else "",
        day=day.isoformat() if day else "",
        today=business_day.today().isoformat(),
        kzt=_kzt,
    )


@bp.get("/payouts.csv")
@require_role("operator")
def payout_csv() -> Response:
    status, day = _payout_filters()
    text = payouts.bank_export_csv(payouts.list_payouts(db(), status, day))
    return Response(
        text,
        mimetype="text/csv",
        headers={"Content-Disposition": 'attachment; filename="payouts-bank-export.csv"'},
    )


@bp.post("/payouts/run")
@require_role("operator")
def payout_run() -> ResponseReturnValue:
    try:
        day = date.fromisoformat(request.form.get("date", ""))
    except ValueError:
        raise ValidationError("choose the business date to batch", field="date") from None
    session = db()
    created = payouts.run_payouts(session, day)
    session.commit()
    flash(f"{len(created)} payouts created for {day.isoformat()}")
    return redirect(url_for("reports.payout_list", date=day.isoformat()))


@bp.post("/payouts/<int:payout_id>/mark-paid")
@require_role("operator")
def payout_mark_paid(payout_id: int) -> ResponseReturnValue:
    session = db()
    try:
        payout = payouts.mark_paid(
            session,
            payout_id,
            request.form.get("bank_reference", ""),
            user_id=current_user.id,
            ip=client_ip(),
        )
    except PayoutError as exc:
        session.rollback()
        flash(str(exc))
        return redirect(url_for("reports.payout_list")), 303
    session.commit()
    flash(f"payout #{payout.id} marked paid ({payout.bank_reference})")
    return redirect(url_for("reports.payout_list")), 303


# --- operator: reconciliation ----------------------------------------------------------------


def _reconciliation() -> reconcile.Reconciliation:
    return reconcile.reconcile(db(), settings(), _period(), reconcile.default_verifiers(settings()))


@bp.get("/reconcile")
@require_role("operator")
def reconciliation() -> str:
    result = _reconciliation()
    return render_template("reports/reconcile.html", result=result, period=result.range, kzt=_kzt)


@bp.get("/reconcile/<table>.csv")
@require_role("operator")
def reconciliation_csv(table: str) -> Response:
    result = _reconciliation()
    tables = result.tables()
    if table not in tables:
        abort(404)
    return _csv(tables[table], f"reconcile-{table}-{result.range.start}-{result.range.end}")


# --- statements: owners (their own) and operators (any) --------------------------------------


def _statement_merchant(merchant_id: int) -> Merchant:
    """The merchant whose statement may be shown; anyone else's is not found."""
    if current_user.role == Role.OWNER and current_user.merchant_id != merchant_id:
        abort(404)
    merchant = db().get(Merchant, merchant_id)
    if merchant is None:
        abort(404)
    return merchant


@bp.get("/statement")
@require_role("owner", "operator")
def statement_home() -> ResponseReturnValue:
    if current_user.role == Role.OWNER:
        query: dict[str, Any] = {k: v for k, v in request.args.items() if k in ("from", "to")}
        return redirect(url_for("reports.statement", merchant_id=current_user.merchant_id, **query))
    rows = db().scalars(select(Merchant).order_by(Merchant.name)).all()
    return render_template("reports/statement_pick.html", merchants=rows)


@bp.get("/merchants/<int:merchant_id>/statement")
@require_role("owner", "operator")
def statement(merchant_id: int) -> str:
    merchant = _statement_merchant(merchant_id)
    result = statements.merchant_statement(db(), merchant.id, _period())
    return render_template(
        "reports/statement.html", statement=result, period=result.range, kzt=_kzt
    )


@bp.get("/merchants/<int:merchant_id>/statement.csv")
@require_role("owner", "operator")
def statement_csv(merchant_id: int) -> Response:
    merchant = _statement_merchant(merchant_id)
    result = statements.merchant_statement(db(), merchant.id, _period())
    return _csv(
        result.tables()["statement"],
        f"statement-{merchant.id}-{result.range.start}-{result.range.end}",
    )
