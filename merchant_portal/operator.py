"""The city operator's console: the zone overview and the merchant registry.

Registering creates a pending merchant and its owner (with a one-time password shown once);
approving activates it; suspending (a reason is required) stops new invoices at once while
open ones still settle. The operator chooses the settlement mode at registration and may change
it and the payout hold later; a change applies to invoices created afterwards (they copy the
mode). Every status or settlement change leaves an audit row. The ledger reports of the
settlement package add their own pages; the overview links every `reports.*` page it finds,
each under a readable name. The audit log reads as sentences (merchant_portal.audit_log), with
filters, pages and a CSV of the same filter.
"""

from __future__ import annotations

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    make_response,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_babel import gettext
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from sqlalchemy import BigInteger, cast, func, select
from werkzeug.wrappers import Response

from merchant_portal import audit_log
from merchant_portal.cache_control import no_store
from merchant_portal.context import db, settings
from merchant_portal.errors import translated
from merchant_portal.forms import field_error, form_values, parse_int, requested_page
from merchant_portal.labels import label
from merchant_portal.merchant_staff import one_time_password
from merchant_portal.security import require_role
from pos import accounts, business_day, csv_safe
from pos.db import utcnow
from pos.errors import PosError, ValidationError
from pos.models import Invoice, Merchant, MerchantStatus, Role, SettlementMode
from pos.states import InvoiceStatus

bp = Blueprint("operator", __name__, url_prefix="/operator")

# action -> (allowed from, to, reason required)
ACTIONS: dict[str, tuple[frozenset[MerchantStatus], MerchantStatus, bool]] = {
    "approve": (frozenset({MerchantStatus.PENDING}), MerchantStatus.ACTIVE, False),
    "suspend": (
        frozenset({MerchantStatus.PENDING, MerchantStatus.ACTIVE}),
        MerchantStatus.SUSPENDED,
        True,
    ),
    "reactivate": (frozenset({MerchantStatus.SUSPENDED}), MerchantStatus.ACTIVE, True),
}


# What a person calls each report page (the endpoint name is the fallback for a new one).
REPORT_LABELS = {
    "reports.zone": _l("Zone dashboard: volume, fees, timings"),
    "reports.payout_list": _l("Payouts to merchants"),
    "reports.reconciliation": _l("Reconciliation with the chains"),
    "reports.statement_home": _l("Merchant statements"),
    "reports.conversion_list": _l("Conversions of crypto to tenge"),
    "reports.balance_sheet": _l("Balances of every ledger account"),
}


def report_links() -> list[tuple[str, str]]:
    """(path, label) of every argument-free GET page the reports blueprint registered; CSV
    downloads are linked from their own pages."""
    links = []
    for rule in current_app.url_map.iter_rules():
        if (
            rule.endpoint.startswith("reports.")
            and not rule.arguments
            and "GET" in (rule.methods or ())
            and not rule.rule.endswith(".csv")
        ):
            fallback = rule.rule.rstrip("/").rsplit("/", 1)[-1] or "reports"
            label = REPORT_LABELS.get(rule.endpoint) or fallback.replace("_", " ")
            links.append((str(label), rule.rule))
    return [(path, label) for label, path in sorted(links)]


@bp.get("/")
@require_role("operator")
def index() -> str:
    """The zone at a glance: merchants by status, invoices by status, today's volume."""
    session = db()
    merchants_by_status = dict(
        session.execute(select(Merchant.status, func.count()).group_by(Merchant.status)).all()
    )
    settled_sum = cast(func.coalesce(func.sum(Invoice.price_tiyn), 0), BigInteger)
    invoices_by_status = {
        status: (int(count), int(total))
        for status, count, total in session.execute(
            select(Invoice.status, func.count(), settled_sum).group_by(Invoice.status)
        ).all()
    }

    return render_template(
        "operator.html",
        merchants_by_status=merchants_by_status,
        invoices_by_status=invoices_by_status,
        statuses=list(InvoiceStatus),
        merchant_statuses=list(MerchantStatus),
        lines=audit_log.recent(session),
        report_links=report_links(),
    )


def _registry(
    errors: dict[str, str] | None = None,
    form: dict[str, str] | None = None,
    shown_password: tuple[str, str] | None = None,
) -> str:
    session = db()
    paid = Invoice.status.in_([InvoiceStatus.PROCESSING, InvoiceStatus.SETTLED])
    rows = session.execute(
        select(
            Merchant,
            func.count(Invoice.id),
            # PostgreSQL's SUM(bigint) is NUMERIC; cast back so money stays an int.
            cast(func.coalesce(func.sum(Invoice.price_tiyn).filter(paid), 0), BigInteger),
        )
        .outerjoin(Invoice, Invoice.merchant_id == Merchant.id)
        .group_by(Merchant.id)
        .order_by(Merchant.name)
    ).all()
    return render_template(
        "operator_merchants.html",
        rows=rows,
        errors=errors or {},
        form=form or {},
        shown_password=shown_password,
        settlement_modes=list(SettlementMode),
    )


def _settlement_mode(text: str) -> SettlementMode:
    try:
        return SettlementMode(text or SettlementMode.TENGE.value)
    except ValueError:
        raise ValidationError(
            gettext("choose a settlement mode: tenge or direct"), field="settlement_mode"
        ) from None


@bp.get("/merchants")
@require_role("operator")
def merchants() -> str:
    return _registry()


@bp.post("/merchants")
@require_role("operator")
@no_store  # the answer shows the owner's one-time password
def register() -> Response | tuple[str, int]:
    form = form_values(("name", "owner_email", "owner_name", "settlement_mode"))
    session = db()
    password = one_time_password()
    try:
        merchant = accounts.create_merchant(
            session,
            settings(),
            form["name"],
            status=MerchantStatus.PENDING,
            settlement_mode=_settlement_mode(form["settlement_mode"]),
            actor_user_id=current_user.id,
        )
        try:
            owner = accounts.create_user(
                session,
                form["owner_email"],
                password,
                Role.OWNER,
                merchant_id=merchant.id,
                display_name=form["owner_name"][:120],
                actor_user_id=current_user.id,
                one_time_password=True,
            )
        except ValidationError as exc:
            field = "owner_email" if exc.field == "email" else exc.field
            raise ValidationError(translated(exc), field=field) from None
        session.commit()
    except PosError as exc:
        session.rollback()
        return _registry(field_error(exc), form), 400
    return make_response(_registry(shown_password=(owner.email, password)))


@bp.post("/merchants/<int:merchant_id>/settlement")
@require_role("operator")
def change_settlement(merchant_id: int) -> Response | tuple[str, int]:
    """Mode and payout hold; invoices made before keep the mode they were created with."""
    session = db()
    merchant = session.get(Merchant, merchant_id)
    if merchant is None:
        abort(404)
    form = form_values(("settlement_mode", "payout_hold_hours"))
    try:
        mode = _settlement_mode(form["settlement_mode"])
        hours = parse_int(
            form["payout_hold_hours"], "payout_hold_hours", 0, 720, gettext("The payout hold")
        )
        accounts.set_settlement_mode(session, merchant, mode, actor_user_id=current_user.id)
        accounts.set_payout_hold(session, merchant, hours, actor_user_id=current_user.id)
        session.commit()
    except PosError as exc:
        session.rollback()
        field = exc.field if isinstance(exc, ValidationError) and exc.field else "settlement_mode"
        return _registry({f"{field}-{merchant_id}": translated(exc)}), 400
    flash(
        gettext(
            "%(name)s: %(mode)s settlement, payout hold %(hours)s h; applies to invoices created "
            "from now on.",
            name=merchant.name,
            mode=label(mode, "settlement"),
            hours=hours,
        )
    )
    return redirect(url_for("operator.merchants"))


@bp.post("/merchants/<int:merchant_id>/<action>")
@require_role("operator")
def change_status(merchant_id: int, action: str) -> Response | tuple[str, int]:
    if action not in ACTIONS:
        abort(404)
    merchant = db().get(Merchant, merchant_id)
    if merchant is None:
        abort(404)
    allowed_from, target, needs_reason = ACTIONS[action]
    form = form_values(("reason",))
    reason = form["reason"][:500]
    errors: dict[str, str] = {}
    if merchant.status not in allowed_from:
        refusals = {
            "approve": gettext("A merchant who is %(state)s cannot be approved."),
            "suspend": gettext("A merchant who is %(state)s cannot be suspended."),
            "reactivate": gettext("A merchant who is %(state)s cannot be reactivated."),
        }
        errors[f"status-{merchant.id}"] = refusals[action] % {
            "state": label(merchant.status, "merchant")
        }
    elif needs_reason and not reason:
        errors[f"reason-{merchant.id}"] = gettext("give a reason; it is kept in the audit log")
    if errors:
        return _registry(errors, form), 400
    accounts.set_merchant_status(db(), merchant, target, current_user.id, reason)
    db().commit()
    flash(
        gettext("%(name)s: %(state)s. Saved.", name=merchant.name, state=label(target, "merchant"))
    )
    return redirect(url_for("operator.merchants"))


@bp.get("/audit")
@require_role("operator")
def audit() -> tuple[str, int]:
    """The whole audit log, newest first, as sentences; filtered and paged."""
    session = db()
    flt, errors = audit_log.parse_filter(request.args)
    total = audit_log.count(session, flt)
    page = requested_page()
    return render_template(
        "operator_audit.html",
        lines=audit_log.page(session, flt, page),
        flt=flt,
        errors=errors,
        page=page,
        pages=max(1, -(-total // audit_log.PAGE_SIZE)),
        total=total,
        choices=audit_log.filter_choices(session),
    ), 400 if errors else 200


@bp.get("/audit.csv")
@require_role("operator")
def audit_csv() -> Response | tuple[str, int]:
    """The audit log of the same filter as CSV (times on the zone's clock, with the offset)."""
    flt, errors = audit_log.parse_filter(request.args)
    if errors:
        return audit()
    # Names, reasons and e-mails were typed by people: the one writer neutralises formulas.
    body = csv_safe.csv_text(audit_log.CSV_COLUMNS, audit_log.csv_rows(db(), flt))
    stamp = business_day.local_time(utcnow()).strftime("%Y%m%d-%H%M")
    return Response(
        body,
        mimetype="text/csv",
        headers={
            "Content-Disposition": f'attachment; filename="audit-{stamp}.csv"',
            "Cache-Control": "no-store",
        },
    )
