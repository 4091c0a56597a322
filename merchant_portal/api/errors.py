"""API errors: `{"error": {"code": <stable code>, "message": <sentence>, "field": ...}}`.

Codes are part of the API contract: clients branch on them, so they never change meaning.
A client's mistake is always a 4xx; 503 only when a dependency (rates, Redis) is down.
"""

from __future__ import annotations

from collections.abc import Mapping

from flask import Blueprint, Response, jsonify
from werkzeug.exceptions import HTTPException

from merchant_portal.errors import DOMAIN_ERRORS, headers_for, message_for
from pos.errors import PosError, ValidationError
from pos.integrations import ApiAuthError


class ApiError(PosError):
    """An API request failed in a way the client can act on; carries status and code."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        field: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.field = field
        self.headers = dict(headers or {})


# Every code a client may see, for the docs page.
ERROR_CODES: dict[str, str] = {
    "malformed_json": "The body is not valid JSON.",
    "invalid_body": "The body is JSON but not an object.",
    "unknown_field": "The body has a field this operation does not take.",
    "unknown_parameter": "The query has a parameter this operation does not take.",
    "missing_field": "A required field is missing.",
    "invalid_type": "A field has the wrong JSON type.",
    "invalid_value": "A field has the right type but a value out of range or format.",
    "invalid_cursor": "The pagination cursor is not one we issued.",
    "validation_error": "The request is well-formed but breaks a business rule (e.g. amount).",
    "missing_api_key": "No `Authorization: Bearer` header.",
    "invalid_api_key": "The key is unknown or malformed.",
    "api_key_revoked": "The key was revoked by the merchant owner.",
    "insufficient_scope": "The key lacks the scope this operation needs.",
    "rate_limited": "Too many requests for this key; wait `Retry-After` seconds.",
    "not_found": "No such object for this merchant.",
    "merchant_not_active": "The merchant is pending or suspended.",
    "method_unavailable": "The payment method is not set up for this merchant.",
    "illegal_transition": "The invoice cannot move to that status from its current one.",
    "concurrent_update": "The invoice changed meanwhile; read it again and retry.",
    "idempotency_conflict": "The Idempotency-Key was used with a different body.",
    "payload_too_large": "The body exceeds 1 MiB.",
    "method_not_allowed": "The path exists but not with this HTTP method.",
    "rate_unavailable": "No fresh BTC/KZT rate; retry later or use KZTE.",
    "coordination_unavailable": "A dependency is briefly unavailable; retry later.",
}


def error_response(
    status: int,
    code: str,
    message: str,
    field: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    body: dict[str, object] = {"code": code, "message": message}
    if field:
        body["field"] = field
    response = jsonify({"error": body})
    response.status_code = status
    response.headers.update(dict(headers or {}))
    response.headers["Cache-Control"] = "no-store"
    return response


def http_error_code(status: int) -> str:
    """The stable code for a plain HTTP error (routing, size limits)."""
    named = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}
    return named.get(status, "bad_request" if status < 500 else "server_error")


def register(bp: Blueprint) -> None:
    """Attach the handlers to the API blueprint only (the portal keeps its HTML pages)."""

    @bp.errorhandler(ApiError)
    def _api_error(error: ApiError) -> Response:
        return error_response(error.status, error.code, str(error), error.field, error.headers)

    @bp.errorhandler(ApiAuthError)
    def _auth_error(error: ApiAuthError) -> Response:
        headers = {"WWW-Authenticate": 'Bearer realm="cryptocity"'}
        return error_response(401, error.code, str(error), headers=headers)

    @bp.errorhandler(PosError)
    def _domain_error(error: PosError) -> Response:
        for error_type, status, code in DOMAIN_ERRORS:
            if isinstance(error, error_type):
                field = error.field if isinstance(error, ValidationError) else None
                message = message_for(error)
                return error_response(status, code, message, field, headers_for(error))
        return error_response(400, "bad_request", str(error))

    @bp.errorhandler(HTTPException)
    def _http_error(error: HTTPException) -> Response:
        status = error.code or 500
        return error_response(status, http_error_code(status), error.description or error.name)
