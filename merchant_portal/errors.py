"""One place that maps domain errors to HTTP answers: never a 500 for a user's mistake."""

from __future__ import annotations

from flask import Flask, render_template, request
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import HTTPException

from pos.errors import (
    ConcurrentUpdateError,
    CoordinationUnavailableError,
    IllegalTransitionError,
    MerchantNotActiveError,
    NotFoundError,
    PaymentMethodUnavailableError,
    PosError,
    RateUnavailableError,
    ValidationError,
)

# The one mapping of domain errors to HTTP: (error type, status, stable API code), first match
# wins. The pages use the status; the REST API also reports the code.
DOMAIN_ERRORS: list[tuple[type[PosError], int, str]] = [
    (ValidationError, 400, "validation_error"),
    (NotFoundError, 404, "not_found"),
    (MerchantNotActiveError, 403, "merchant_not_active"),
    (PaymentMethodUnavailableError, 409, "method_unavailable"),
    (IllegalTransitionError, 409, "illegal_transition"),
    (ConcurrentUpdateError, 409, "concurrent_update"),
    (RateUnavailableError, 503, "rate_unavailable"),
    (CoordinationUnavailableError, 503, "coordination_unavailable"),
]


def status_for(error: PosError) -> int:
    for error_type, status, _code in DOMAIN_ERRORS:
        if isinstance(error, error_type):
            return status
    return 400


def _wants_json() -> bool:
    return (
        request.path.startswith("/api/")
        or request.path.endswith(".json")
        or (request.accept_mimetypes.best == "application/json")
    )


def init_app(app: Flask) -> None:
    @app.errorhandler(PosError)
    def _domain_error(error: PosError) -> ResponseReturnValue:
        status = status_for(error)
        if _wants_json():
            return {"error": type(error).__name__, "message": str(error)}, status
        return render_template("error.html", status=status, message=str(error)), status

    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException) -> ResponseReturnValue:
        status = error.code or 500
        message = error.description or error.name
        if request.path.startswith("/api/v1/"):
            from merchant_portal.api.errors import error_response, http_error_code

            return error_response(status, http_error_code(status), message)
        if _wants_json():
            return {"error": error.name, "message": message}, status
        return render_template("error.html", status=status, message=message), status
