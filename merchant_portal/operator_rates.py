"""The operator's Rates page: the alarms, every rate source and feed with its last value, age
and status, and the alarm history from the audit log.

Sources are judged by the same RateBook an invoice uses, at the moment the page is drawn;
feeds show what the worker's `refresh-rates` duty last stored (pos.rate_store).
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from flask import Blueprint, render_template
from flask_babel import gettext
from sqlalchemy import select

from merchant_portal.context import coordinator, db, runtime
from merchant_portal.labels import format_number
from merchant_portal.security import require_role
from pos.db import utcnow
from pos.models import AuditLog
from pos.rate_board import rate_board
from pos.rate_store import RateStore

bp = Blueprint("operator_rates", __name__, url_prefix="/operator/rates")


def age_text(age: timedelta | None) -> str:
    """A short age: 42 s, 7 min, 3 h 05 min, 2 d 04 h."""
    if age is None:
        return "—"
    seconds = int(age.total_seconds())
    if seconds < 0:
        return str(gettext("in %(seconds)d s", seconds=-seconds))
    if seconds < 120:
        return str(gettext("%(seconds)d s", seconds=seconds))
    minutes = seconds // 60
    if minutes < 120:
        return str(gettext("%(minutes)d min", minutes=minutes))
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return str(gettext("%(hours)d h %(minutes)02d min", hours=hours, minutes=minutes))
    days, hours = divmod(hours, 24)
    return str(gettext("%(days)d d %(hours)02d h", days=days, hours=hours))


def percent(bp: int | None) -> str:
    return "—" if bp is None else f"{format_number(Decimal(bp).scaleb(-2))} %"


@bp.get("/")
@require_role("operator")
def index() -> str:
    rt = runtime()
    board = rate_board(rt.settings, rt.rates, RateStore(coordinator()), utcnow())
    history = (
        db()
        .scalars(
            select(AuditLog)
            .where(AuditLog.action.in_(("rates.alarm_raised", "rates.alarm_cleared")))
            .order_by(AuditLog.id.desc())
            .limit(20)
        )
        .all()
    )
    return render_template(
        "operator_rates.html",
        board=board,
        history=history,
        age_text=age_text,
        percent=percent,
    )
