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

STATUS_FOR_ERROR: list[tuple[type[PosError], int]] = [
    (ValidationError, 400),
    (NotFoundError, 404),
    (MerchantNotActiveError, 403),
    (PaymentMethodUnavailableError, 409),
    (IllegalTransitionError, 409),
    (ConcurrentUpdateError, 409),
    (RateUnavailableError, 503),
    (CoordinationUnavailableError, 503),
]


def status_for(error: PosError) -> int:
    for error_type, status in STATUS_FOR_ERROR:
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
