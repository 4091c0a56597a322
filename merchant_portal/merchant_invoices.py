"""The owner's invoices: a filtered list, CSV export of the same filter, and one invoice's story.

Filters: status, method, created from / to (business days, pos.business_day) and a search on the
invoice id or description. Another merchant's invoice answers 404, like one that does not exist.
The CSV shows times on the zone's clock with their offset (2026-03-02T00:30:00+05:00).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from flask import Blueprint, Response, render_template, request
from flask_babel import gettext
from flask_login import current_user
from sqlalchemy import Select, func, or_, select

from merchant_portal.context import db, settings
from merchant_portal.errors import translated
from merchant_portal.forms import parse_optional_date, requested_page
from merchant_portal.security import require_role
from pos import business_day, csv_safe, invoices, money
from pos.db import utcnow
from pos.errors import ValidationError
from pos.invoice_view import atomic_unit, crypto_decimals, crypto_symbol
from pos.models import Invoice
from pos.states import EventType, InvoiceStatus, PaymentMethod

bp = Blueprint("merchant_invoices", __name__, url_prefix="/merchant/invoices")

PAGE_SIZE = 50
EXPORT_LIMIT = 100_000
CSV_COLUMNS = (
    "id",
    "created_at",
    "status",
    "flags",
    "method",
    "price_tiyn",
    "price_kzt",
    "amount_due_atomic",
    "amount_paid_atomic",
    "unit",
    "rate_kzt",
    "description",
    "order_id",
    "settled_at",
    "created_by_user_id",
)


@dataclass(frozen=True)
class InvoiceFilter:
    status: str = ""
    method: str = ""
    date_from: date | None = None
    date_to: date | None = None
    q: str = ""

    def args(self) -> dict[str, str]:
        """The filter as query arguments (for the export link and the pager)."""
        values = {
            "status": self.status,
            "method": self.method,
            "from": self.date_from.isoformat() if self.date_from else "",
            "to": self.date_to.isoformat() if self.date_to else "",
            "q": self.q,
        }
        return {k: v for k, v in values.items() if v}


def _parse_date(text: str, field: str) -> date | None:
    return parse_optional_date(text, field)


def parse_filter(args: dict[str, str]) -> tuple[InvoiceFilter, dict[str, str]]:
    """The filter from query arguments, and field messages for the parts that were wrong."""
    errors: dict[str, str] = {}
    status = args.get("status", "").strip()
    if status and status not in {s.value for s in InvoiceStatus}:
        errors["status"] = gettext("unknown status")
        status = ""
    method = args.get("method", "").strip()
    if method and method not in {m.value for m in PaymentMethod}:
        errors["method"] = gettext("unknown method")
        method = ""
    dates: dict[str, date | None] = {}
    for key in ("from", "to"):
        try:
            dates[key] = _parse_date(args.get(key, "").strip(), key)
        except ValidationError as exc:
            errors[key] = translated(exc)
            dates[key] = None
    if dates["from"] and dates["to"] and dates["from"] > dates["to"]:
        errors["to"] = gettext("the end date is before the start date")
    query = args.get("q", "").strip()[:64]
    return InvoiceFilter(status, method, dates["from"], dates["to"], query), errors


def filtered(merchant_id: int, flt: InvoiceFilter) -> Select[Invoice]:
    """Invoices of one merchant matching the filter, newest first."""
    query = select(Invoice).where(Invoice.merchant_id == merchant_id)
    if flt.status:
        query = query.where(Invoice.status == InvoiceStatus(flt.status))
    if flt.method:
        query = query.where(Invoice.method == PaymentMethod(flt.method))
    if flt.date_from:
        query = query.where(Invoice.created_at >= business_day.day_start(flt.date_from))
    if flt.date_to:
        query = query.where(
            Invoice.created_at < business_day.day_start(flt.date_to + timedelta(days=1))
        )
    if flt.q:
        pattern = "%" + flt.q.replace("\\", "").replace("%", "").replace("_", "") + "%"
        query = query.where(or_(Invoice.id.like(pattern), Invoice.description.like(pattern)))
    return query.order_by(Invoice.created_at.desc(), Invoice.id)


@bp.get("/")
@require_role("owner")
def index() -> tuple[str, int]:
    flt, errors = parse_filter(dict(request.args))
    page = requested_page()
    query = filtered(current_user.merchant_id, flt)
    total = db().scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = db().scalars(query.limit(PAGE_SIZE).offset((page - 1) * PAGE_SIZE)).all()
    return render_template(
        "merchant_invoices.html",
        rows=rows,
        flt=flt,
        errors=errors,
        page=page,
        pages=max(1, -(-total // PAGE_SIZE)),
        total=total,
        statuses=[s.value for s in InvoiceStatus],
        methods=[m.value for m in PaymentMethod],
    ), 400 if errors else 200


def _local_iso(moment: datetime | None) -> str:
    return business_day.local_time(moment).isoformat() if moment else ""


def _csv_rows(merchant_id: int, flt: InvoiceFilter) -> Iterator[str]:
    # Descriptions and order ids are typed by cashiers and API clients: the one writer
    # neutralises formulas (pos.csv_safe).
    yield csv_safe.row_text(CSV_COLUMNS)
    for invoice in db().scalars(filtered(merchant_id, flt).limit(EXPORT_LIMIT)):
        yield csv_safe.row_text(
            [
                invoice.id,
                _local_iso(invoice.created_at),
                invoice.status.value,
                " ".join(invoice.flags),
                invoice.method.value,
                invoice.price_tiyn,
                money.format_kzt(invoice.price_tiyn).replace("\u202f", ""),
                invoice.amount_due_atomic,
                invoice.amount_paid_atomic,
                atomic_unit(invoice),
                str(invoice.rate),
                invoice.description,
                invoice.order_id or "",
                _local_iso(invoice.settled_at),
                invoice.created_by_user_id or "",
            ]
        )


@bp.get("/export.csv")
@require_role("owner")
def export() -> Response | tuple[str, int]:
    flt, errors = parse_filter(dict(request.args))
    if errors:
        return index()
    # Build the whole file in the request: exports are bounded and the session stays simple.
    body = "".join(_csv_rows(current_user.merchant_id, flt))
    stamp = business_day.local_time(utcnow()).strftime("%Y%m%d-%H%M")
    return Response(
        body,
        mimetype="text/csv",
        headers={
            "Content-Disposition": f'attachment; filename="invoices-{stamp}.csv"',
            "Cache-Control": "no-store",
        },
    )


@bp.get("/<invoice_id>")
@require_role("owner")
def detail(invoice_id: str) -> str:
    """One invoice: amounts, payments with their txids, and the timeline of its events."""
    invoice = invoices.get_invoice(db(), invoice_id, merchant_id=current_user.merchant_id)
    decimals = crypto_decimals(invoice, settings())
    return render_template(
        "merchant_invoice.html",
        invoice=invoice,
        symbol=crypto_symbol(invoice),
        due=money.format_units(invoice.amount_due_atomic, decimals),
        paid=money.format_units(invoice.amount_paid_atomic, decimals),
        units=lambda atomic: money.format_units(atomic, decimals),
        rejected_type=EventType.PAYMENT_REJECTED.value,
    )
