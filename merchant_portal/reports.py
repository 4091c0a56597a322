"""Settlement reports in the portal: the operator's zone dashboard, payouts, reconciliation,
conversions and account balances; a merchant owner's statement. Every table has a CSV export;
numbers are those of `cryptocity report … --json` (the same service functions).

Access: operators see the whole zone; an owner sees only their own merchant's statement, and
another merchant's statement is simply not found (404).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Any

from flask import Blueprint, Response, abort, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext
from flask_login import current_user
from sqlalchemy import select
from werkzeug.exceptions import RequestEntityTooLarge

from merchant_portal import ledger_pages
from merchant_portal.context import client_ip, db, settings
from merchant_portal.errors import translated
from merchant_portal.forms import parse_date, parse_optional_date
from merchant_portal.labels import format_kzt, format_whole_kzt
from merchant_portal.security import require_role
from pos import business_day
from pos.errors import ValidationError
from pos.models import Merchant, Role
from settlement.ledger import balances, conversions, payouts, reconcile, reports, statements
from settlement.ledger.charts import stacked_bars
from settlement.ledger.errors import ConversionError, PayoutError
from settlement.ledger.models import PayoutStatus

bp = Blueprint("reports", __name__, url_prefix="/reports")


def _period() -> reports.DateRange:
    # Checked here first: a year-1 or year-9999 date would overflow the day-range arithmetic.
    first = parse_optional_date(request.args.get("from"), "from")
    last = parse_optional_date(request.args.get("to"), "to")
    return reports.parse_range(
        first.isoformat() if first else None,
        last.isoformat() if last else None,
        business_day.today(),
    )


def _csv(table: reports.Table, name: str) -> Response:
    return Response(
        reports.csv_text(table),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{name}.csv"'},
    )


def _kzt(tiyn: int) -> str:
    return format_kzt(tiyn)


def _duration(seconds: int | None) -> str:
    if seconds is None:
        return "—"
    minutes, secs = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return str(gettext("%(hours)d h %(minutes)02d min", hours=hours, minutes=minutes))
    return str(gettext("%(minutes)d min %(seconds)02d s", minutes=minutes, seconds=secs))


# --- operator: zone dashboard ----------------------------------------------------------------


@bp.get("/zone")
@require_role("operator")
def zone() -> str:
    period = _period()
    board = reports.zone_dashboard(db(), period)
    chart = stacked_bars(
        [(d.strftime("%d.%m"), v) for d, v in board.volume_by_day],
        reports.METHODS,
        lambda tiyn: f"{format_whole_kzt(tiyn)} ₸",
    )
    return render_template(
        "reports/zone.html",
        board=board,
        period=period,
        chart=chart,
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
    except ValueError:
        raise ValidationError(gettext("Unknown status."), field="status") from None
    return status, parse_optional_date(raw_date, "date")


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
    day = parse_date(request.form.get("date", ""), "date")
    session = db()
    created = payouts.run_payouts(session, day)
    session.commit()
    flash(
        gettext("%(count)d payouts created for %(day)s.", count=len(created), day=day.isoformat())
    )
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
        flash(translated(exc))
        return redirect(url_for("reports.payout_list")), 303
    session.commit()
    flash(
        gettext(
            "Payout #%(id)s marked paid (%(reference)s).",
            id=payout.id,
            reference=payout.bank_reference,
        )
    )
    return redirect(url_for("reports.payout_list")), 303


# --- operator: reconciliation ----------------------------------------------------------------


def _reconciliation() -> reconcile.Reconciliation:
    return reconcile.reconcile_with_nodes(db(), settings(), _period())


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


# --- operator: conversions (DESIGN §7, `tenge` mode) -----------------------------------------


def _conversions_page(
    status: int = 200, error: str | None = None, form: Mapping[str, str] | None = None
) -> ResponseReturnValue:
    session = db()
    page = render_template(
        "reports/conversions.html",
        clearing=ledger_pages.clearing_rows(session, settings().kzte_decimals),
        rows=conversions.list_conversions(session),
        units=conversions.UNIT,
        csv_example=ledger_pages.CSV_EXAMPLE,
        upload_limit=ledger_pages.CSV_UPLOAD_LIMIT_TEXT,
        error=error,
        form=form or {},
    )
    return page, status


def _refused(error: ValidationError | ConversionError) -> ResponseReturnValue:
    """Nothing of the request stays; the page says why (400 bad input, 422 refused by the
    ledger's rules)."""
    db().rollback()
    status = 422 if isinstance(error, ConversionError) else 400
    return _conversions_page(status, translated(error), request.form)


@bp.get("/conversions")
@require_role("operator")
def conversion_list() -> ResponseReturnValue:
    return _conversions_page()


@bp.get("/conversions.csv")
@require_role("operator")
def conversion_csv() -> Response:
    return _csv(ledger_pages.conversions_table(conversions.list_conversions(db())), "conversions")


@bp.post("/conversions")
@require_role("operator")
def conversion_record() -> ResponseReturnValue:
    session = db()
    try:
        wanted = ledger_pages.parse_conversion_form(request.form)
        conversion, new = conversions.record(session, wanted, user_id=current_user.id)
    except (ValidationError, ConversionError) as exc:
        return _refused(exc)
    session.commit()
    fx = _kzt(conversion.proceeds_tiyn - conversion.book_value_tiyn)
    if new:
        flash(
            gettext(
                "Conversion #%(id)s recorded: book value %(book)s ₸, FX result %(fx)s ₸.",
                id=conversion.id,
                book=_kzt(conversion.book_value_tiyn),
                fx=fx,
            )
        )
    else:
        flash(
            gettext(
                "Conversion #%(id)s (%(reference)s) was already recorded.",
                id=conversion.id,
                reference=conversion.reference,
            )
        )
    return redirect(url_for("reports.conversion_list")), 303


@bp.post("/conversions/import")
@require_role("operator")
def conversion_import() -> ResponseReturnValue:
    upload = request.files.get("file")
    if upload is None or not upload.filename:
        return _refused(ValidationError(gettext("choose a CSV file to upload"), field="file"))
    data = upload.stream.read(ledger_pages.CSV_UPLOAD_MAX_BYTES + 1)
    if len(data) > ledger_pages.CSV_UPLOAD_MAX_BYTES:
        return _too_large_page()
    session = db()
    try:
        text = ledger_pages.decode_upload(data)
        lines = len(conversions.parse_csv(text))
        created = conversions.import_csv(session, text, user_id=current_user.id)
    except (ValidationError, ConversionError) as exc:
        return _refused(exc)  # all or nothing: the lines before the bad one are undone too
    session.commit()
    flash(
        gettext(
            "%(count)d conversions recorded from %(file)s; %(before)d of its %(lines)d lines "
            "were recorded before.",
            count=len(created),
            file=upload.filename,
            before=lines - len(created),
            lines=lines,
        )
    )
    return redirect(url_for("reports.conversion_list")), 303


def _too_large_page() -> ResponseReturnValue:
    db().rollback()
    return _conversions_page(
        413,
        gettext(
            "the file is larger than %(limit)s; nothing was recorded. Split it into smaller "
            "files (a re-import of lines already recorded is safe).",
            limit=ledger_pages.CSV_UPLOAD_LIMIT_TEXT,
        ),
    )


@bp.errorhandler(RequestEntityTooLarge)
def _request_too_large(error: RequestEntityTooLarge) -> ResponseReturnValue:
    # The app's MAX_CONTENT_LENGTH refuses the body before the view runs (CSRF reads the form
    # first), so the role is checked here: only an operator sees the conversions page.
    is_operator = current_user.is_authenticated and current_user.role == Role.OPERATOR
    if request.endpoint == "reports.conversion_import" and is_operator:
        return _too_large_page()
    return render_template("error.html", status=413, message=error.description), 413


# --- operator: every account's balance -------------------------------------------------------


@bp.get("/balances")
@require_role("operator")
def balance_sheet() -> str:
    session = db()
    rows = balances.account_balances(session)
    return render_template(
        "reports/balances.html",
        groups=ledger_pages.balance_groups(session, rows),
        balanced=balances.ledger_balances(session),
    )


@bp.get("/balances.csv")
@require_role("operator")
def balance_csv() -> Response:
    return _csv(ledger_pages.balances_table(balances.account_balances(db())), "balances")
