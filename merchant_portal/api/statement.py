"""API view of the merchant's ledger statement (scope `reports:read`)."""

from __future__ import annotations

from flask import Response, jsonify

from merchant_portal.api import bp
from merchant_portal.api.auth import api_route, current_merchant_id
from merchant_portal.api.schema import Field, Operation, Schema, parse_query
from merchant_portal.api.schema import Response as Doc
from merchant_portal.api.schemas import ERROR_RESPONSES
from merchant_portal.context import db
from pos import business_day
from pos.integrations import Scope
from settlement.ledger import reports, statements

STATEMENT_QUERY = (
    Field("from", "string", "First day (YYYY-MM-DD, UTC); default 30 days ago.", format="date"),
    Field("to", "string", "Last day, included (YYYY-MM-DD, UTC); default today.", format="date"),
)
STATEMENT_LINE = {
    "type": "object",
    "properties": {
        "at": {"type": "string", "format": "date-time"},
        "transaction_id": {"type": "integer"},
        "kind": {"type": "string"},
        "invoice_id": {"type": ["string", "null"]},
        "description": {"type": "string"},
        "debit_tiyn": {"type": "integer"},
        "credit_tiyn": {"type": "integer"},
        "balance_tiyn": {"type": "integer"},
    },
}
STATEMENT = Schema(
    "Statement",
    (
        Field("merchant_id", "integer", required=True),
        Field("merchant_name", "string", required=True),
        Field(
            "range",
            "object",
            required=True,
            extra={"properties": {"from": {"type": "string"}, "to": {"type": "string"}}},
        ),
        Field("opening_tiyn", "integer", "What the zone owed the merchant before.", True),
        Field("closing_tiyn", "integer", "What the zone owes the merchant after.", True),
        Field("debits_tiyn", "integer", required=True),
        Field("credits_tiyn", "integer", required=True),
        Field("lines", "array", required=True, extra={"items": STATEMENT_LINE}),
    ),
    "The merchant's payable account in tiyn: settlements credit it, payouts and reversals "
    "debit it.",
    closed=False,
)
GET_STATEMENT = Operation(
    "get_statement",
    "Ledger statement",
    "Opening balance, every ledger entry of the period with a running balance, closing "
    "balance, for the key's merchant.",
    scope=Scope.REPORTS_READ.value,
    query=STATEMENT_QUERY,
    responses={200: Doc("The statement.", STATEMENT)} | ERROR_RESPONSES,
    tag="reports",
)


@api_route(bp, "/statement", "GET", GET_STATEMENT)
def get_statement() -> Response:
    from flask import request

    query = parse_query(STATEMENT_QUERY, request.args)
    period = reports.parse_range(query.get("from"), query.get("to"), business_day.today())
    statement = statements.merchant_statement(db(), current_merchant_id(), period)
    response = jsonify(statement.as_dict())
    response.headers["Cache-Control"] = "no-store"
    return response
