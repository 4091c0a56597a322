"""API views for invoices and the merchant profile; each route declares its schemas here."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from datetime import datetime
from typing import Any

from flask import Response, jsonify, request, url_for
from sqlalchemy import and_, or_, select
from sqlalchemy.exc import IntegrityError

from merchant_portal.api import bp
from merchant_portal.api.auth import api_route, current_key, current_merchant_id
from merchant_portal.api.errors import ApiError
from merchant_portal.api.schema import (
    Field,
    Operation,
    load_json_body,
    parse_query,
)
from merchant_portal.api.schema import Response as Doc
from merchant_portal.api.schemas import (
    ERROR_RESPONSES,
    INVOICE,
    INVOICE_CREATE,
    INVOICE_LIST,
    INVOICE_MARK,
    MERCHANT,
)
from merchant_portal.context import coordinator, db, runtime, settings
from pos import catalog, invoice_lines, invoices, shop_domains
from pos.accounts import audit
from pos.errors import NotFoundError, ValidationError
from pos.integrations import ApiInvoiceExtra, IdempotencyKey, Scope, find_idempotent
from pos.invoice_view import invoice_as_dict
from pos.models import Invoice, Merchant
from pos.states import InvoiceStatus, PaymentMethod

MAX_PAGE = 100
_INVOICE_ID = re.compile(r"^[0-9a-z]{1,32}$")

INVOICE_ID = Field("invoice_id", "string", "The invoice id.", required=True, max_length=32)
IDEMPOTENCY_KEY = Field(
    "Idempotency-Key",
    "string",
    "Any unique string (e.g. a UUID) per logical create. A retry with the same key and body "
    "returns the first answer; the same key with another body is a 409. Kept at least 24 h.",
    min_length=1,
    max_length=255,
    pattern=r"^[\x21-\x7e]+$",
)
LIST_QUERY = (
    Field("status", "string", "Only invoices in this status.", enum=tuple(InvoiceStatus)),
    Field("method", "string", "Only this payment method.", enum=tuple(PaymentMethod)),
    Field("order_id", "string", "Only invoices with this order id.", max_length=64),
    Field("created_from", "string", "Created at or after (ISO 8601).", format="date-time"),
    Field("created_to", "string", "Created before (ISO 8601).", format="date-time"),
    Field("limit", "integer", "Page size (default 20).", minimum=1, maximum=MAX_PAGE),
    Field("cursor", "string", "`next_cursor` from the previous page.", max_length=200),
)


def _json(payload: dict[str, Any], status: int = 200) -> Response:
    response = jsonify(payload)
    response.status_code = status
    response.headers["Cache-Control"] = "no-store"
    return response


def _invoice_json(
    invoice: Invoice,
    merchant_name: str,
    extra: ApiInvoiceExtra | None,
    history: bool,
    lines: list[invoice_lines.InvoiceLine] | None = None,
) -> dict[str, Any]:
    """The invoice as the API shows it; `lines` None: read them (a page passes its own)."""
    data = invoice_as_dict(invoice, settings(), merchant_name, with_history=history)
    data["metadata"] = dict(extra.meta) if extra else {}
    data["redirect_url"] = extra.redirect_url if extra else None
    data["checkout_url"] = url_for("checkout.show", invoice_id=invoice.id, _external=True)
    if lines is None:
        lines = invoice_lines.lines_of(db(), [invoice.id]).get(invoice.id, [])
    data["lines"] = [
        {
            "product_id": line.catalog_item_id,
            "name": line.name,
            "quantity": line.quantity,
            "unit_price_tiyn": line.unit_price_tiyn,
            "total_tiyn": line.total_tiyn,
        }
        for line in lines
    ]
    return data


def _sold_lines(merchant_id: int, wanted: list[dict[str, Any]]) -> list[catalog.CartLine]:
    """The body's lines as sold, through the catalog's rules (the terminal's cart's too).

    A product id that is not this merchant's sellable product gets one answer, whether it is
    unknown, inactive or another merchant's: nothing about other shops leaks.
    """
    sold: list[catalog.CartLine] = []
    for number, line in enumerate(wanted):
        at = f"lines[{number}]"
        if "product_id" not in line:
            sold.append(
                catalog.free_line(line["name"], line["unit_price_tiyn"], line["quantity"], at)
            )
            continue
        try:
            sold.append(
                catalog.product_line(db(), merchant_id, line["product_id"], line["quantity"])
            )
        except ValidationError:
            field = f"{at}.product_id"
            raise ApiError(
                400,
                "validation_error",
                f"{field}: you have no product {line['product_id']} for sale",
                field,
            ) from None
    return sold


def _load_invoice(invoice_id: str) -> Invoice:
    if not _INVOICE_ID.match(invoice_id):
        raise NotFoundError("no such invoice")  # could never exist; same answer as unknown
    return invoices.get_invoice(db(), invoice_id, current_merchant_id())


def _request_sha256(body: dict[str, Any]) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _replay(stored: IdempotencyKey, request_sha256: str) -> Response:
    if stored.request_sha256 != request_sha256:
        raise ApiError(
            409,
            "idempotency_conflict",
            "this Idempotency-Key was already used with a different request body",
        )
    response = _json(dict(stored.response_body), stored.response_status)
    response.headers["Idempotent-Replayed"] = "true"
    return response


def _check_redirect(merchant: Merchant | None, url: str | None) -> None:
    """A return link leads only to the merchant's own shop domains (422 otherwise)."""
    if url is None or merchant is None:
        return
    problem = shop_domains.redirect_problem(url, shop_domains.domains_of(merchant.shop_domains))
    if problem is not None:
        raise ApiError(422, "redirect_url_not_allowed", f"redirect_url: {problem}", "redirect_url")


CREATE = Operation(
    "create_invoice",
    "Create an invoice",
    "Quote the KZT price in BTC or KZTE at a locked rate and open the payment window. "
    "Amounts are integers in tiyn (1 ₸ = 100 tiyn).",
    scope=Scope.INVOICES_WRITE,
    body=INVOICE_CREATE,
    headers=(IDEMPOTENCY_KEY,),
    responses={201: Doc("The new invoice (or the first answer, replayed).", INVOICE)}
    | ERROR_RESPONSES,
)


@api_route(bp, "/invoices", "POST", CREATE)
def create_invoice() -> Response:
    body = INVOICE_CREATE.parse(load_json_body(request.get_data(cache=False)))
    raw_key = request.headers.get("Idempotency-Key")
    idem_key = None if raw_key is None else IDEMPOTENCY_KEY.parse(raw_key, "Idempotency-Key")
    request_sha256 = _request_sha256(body)
    merchant_id = current_merchant_id()
    session = db()
    if idem_key is not None:
        stored = find_idempotent(session, merchant_id, idem_key)
        if stored is not None:
            return _replay(stored, request_sha256)
    _check_redirect(session.get(Merchant, merchant_id), body.get("redirect_url"))
    lines = _sold_lines(merchant_id, body["lines"]) if "lines" in body else []
    if lines:
        price_tiyn = invoice_lines.lines_price(lines, body.get("price_tiyn"))
    elif "price_tiyn" in body:
        price_tiyn = body["price_tiyn"]
    else:
        raise ApiError(400, "missing_field", "price_tiyn is required (or lines)", "price_tiyn")
    invoice = invoices.create_invoice(
        session,
        settings(),
        runtime().rates,
        invoices.InvoiceRequest(
            merchant_id=merchant_id,
            price_tiyn=price_tiyn,
            method=PaymentMethod(body["method"]),
            description=body.get("description") or catalog.cart_description(lines),
            order_id=body.get("order_id"),
        ),
    )
    invoice_lines.record_lines(session, invoice.id, lines)  # sales per product
    extra = ApiInvoiceExtra(
        invoice_id=invoice.id,
        api_key_id=current_key().id,
        meta=body.get("metadata") or {},
        redirect_url=body.get("redirect_url"),
    )
    session.add(extra)
    payload = _invoice_json(invoice, invoice.merchant.name, extra, history=True)
    if idem_key is not None:
        session.add(
            IdempotencyKey(
                merchant_id=merchant_id,
                key=idem_key,
                request_sha256=request_sha256,
                response_status=201,
                response_body=payload,
            )
        )
    try:
        session.commit()
    except IntegrityError:
        # A concurrent request with the same key won the race: answer as it did.
        session.rollback()
        stored = None if idem_key is None else find_idempotent(session, merchant_id, idem_key)
        if stored is None:
            raise
        return _replay(stored, request_sha256)
    invoices.publish_after_commit(runtime().session_factory, coordinator(), session)
    response = _json(payload, 201)
    response.headers["Location"] = url_for("api.get_invoice", invoice_id=invoice.id)
    return response


GET = Operation(
    "get_invoice",
    "Get an invoice",
    "The invoice with its payments and events.",
    scope=Scope.INVOICES_READ,
    path_params=(INVOICE_ID,),
    responses={200: Doc("The invoice.", INVOICE)} | ERROR_RESPONSES,
)


@api_route(bp, "/invoices/<invoice_id>", "GET", GET)
def get_invoice(invoice_id: str) -> Response:
    invoice = _load_invoice(invoice_id)
    extra = db().get(ApiInvoiceExtra, invoice.id)
    return _json(_invoice_json(invoice, invoice.merchant.name, extra, history=True))


def _decode_cursor(raw: str) -> tuple[datetime, str]:
    try:
        created_at, invoice_id = json.loads(base64.urlsafe_b64decode(raw.encode("ascii")))
        when = datetime.fromisoformat(created_at)
        if when.tzinfo is None or not _INVOICE_ID.match(invoice_id):
            raise ValueError("bad cursor")
    except (ValueError, TypeError, UnicodeError):
        raise ApiError(400, "invalid_cursor", "the cursor is not one we issued", "cursor") from None
    return when, invoice_id


def _encode_cursor(invoice: Invoice) -> str:
    raw = json.dumps([invoice.created_at.isoformat(), invoice.id]).encode()
    return base64.urlsafe_b64encode(raw).decode()


LIST = Operation(
    "list_invoices",
    "List invoices",
    "Newest first. Follow `next_cursor` until it is null.",
    scope=Scope.INVOICES_READ,
    query=LIST_QUERY,
    responses={200: Doc("A page of invoices.", INVOICE_LIST)} | ERROR_RESPONSES,
)


@api_route(bp, "/invoices", "GET", LIST)
def list_invoices() -> Response:
    query = parse_query(LIST_QUERY, request.args)
    merchant_id = current_merchant_id()
    session = db()
    stmt = select(Invoice).where(Invoice.merchant_id == merchant_id)
    if "status" in query:
        stmt = stmt.where(Invoice.status == InvoiceStatus(query["status"]))
    if "method" in query:
        stmt = stmt.where(Invoice.method == PaymentMethod(query["method"]))
    if "order_id" in query:
        stmt = stmt.where(Invoice.order_id == query["order_id"])
    if "created_from" in query:
        stmt = stmt.where(Invoice.created_at >= query["created_from"])
    if "created_to" in query:
        stmt = stmt.where(Invoice.created_at < query["created_to"])
    if "cursor" in query:
        when, last_id = _decode_cursor(query["cursor"])
        stmt = stmt.where(
            or_(Invoice.created_at < when, and_(Invoice.created_at == when, Invoice.id < last_id))
        )
    limit = query.get("limit", 20)
    rows = session.scalars(
        stmt.order_by(Invoice.created_at.desc(), Invoice.id.desc()).limit(limit + 1)
    ).all()
    page = list(rows[:limit])
    extras = {
        e.invoice_id: e
        for e in session.scalars(
            select(ApiInvoiceExtra).where(ApiInvoiceExtra.invoice_id.in_([i.id for i in page]))
        )
    }
    merchant = session.get(Merchant, merchant_id)
    name = merchant.name if merchant else ""
    lines = invoice_lines.lines_of(session, [i.id for i in page])
    return _json(
        {
            "data": [
                _invoice_json(i, name, extras.get(i.id), False, lines.get(i.id, [])) for i in page
            ],
            "next_cursor": _encode_cursor(page[-1]) if len(rows) > limit else None,
        }
    )


MARK = Operation(
    "mark_invoice",
    "Mark an invoice settled or invalid",
    "For what happened outside the chain (e.g. paid in cash). The reason is kept and audited.",
    scope=Scope.INVOICES_WRITE,
    path_params=(INVOICE_ID,),
    body=INVOICE_MARK,
    responses={200: Doc("The invoice after the mark.", INVOICE)} | ERROR_RESPONSES,
)


@api_route(bp, "/invoices/<invoice_id>/mark", "POST", MARK)
def mark_invoice(invoice_id: str) -> Response:
    body = INVOICE_MARK.parse(load_json_body(request.get_data(cache=False)))
    session = db()
    invoice = _load_invoice(invoice_id)
    reason = body["reason"].strip()
    invoices.mark(session, invoice, InvoiceStatus(body["status"]), reason, None)
    audit(
        session,
        "invoice.marked",
        merchant_id=invoice.merchant_id,
        ip=request.remote_addr,
        detail={
            "invoice_id": invoice.id,
            "status": body["status"],
            "reason": reason,
            "api_key_id": current_key().id,
        },
    )
    session.commit()
    invoices.publish_after_commit(runtime().session_factory, coordinator(), session)
    extra = session.get(ApiInvoiceExtra, invoice.id)
    return _json(_invoice_json(invoice, invoice.merchant.name, extra, history=True))


PROFILE = Operation(
    "get_merchant",
    "The key's merchant",
    "Name, status and payment setup of the merchant the key belongs to (any scope).",
    scope=None,
    responses={200: Doc("The merchant profile.", MERCHANT)} | ERROR_RESPONSES,
    tag="merchant",
)


@api_route(bp, "/merchant", "GET", PROFILE)
def get_merchant() -> Response:
    merchant = db().get(Merchant, current_merchant_id())
    if merchant is None:
        raise NotFoundError("no such merchant")
    methods = [
        m.value
        for m, ready in (
            (PaymentMethod.BTC, bool(merchant.btc_xpub)),
            (PaymentMethod.KZTE, bool(merchant.solana_wallet) and bool(settings().kzte_mint)),
        )
        if ready
    ]
    return _json(
        {
            "id": merchant.id,
            "name": merchant.name,
            "status": merchant.status.value,
            "methods": methods,
            "confirmations_required": merchant.confirmations_required,
            "expiry_minutes": merchant.expiry_minutes,
            "tolerance_bp": merchant.tolerance_bp,
            "created_at": merchant.created_at.isoformat(),
            "api_key": {"prefix": current_key().prefix, "scopes": sorted(current_key().scope_set)},
        }
    )
