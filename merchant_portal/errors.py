"""One place that maps domain errors to HTTP answers: never a 500 for a user's mistake.

Redis trouble is never a 500 either: a request waits on Redis only within its budget
(pos.redis_guard, started here for every request), and what truly needs Redis answers 503
"try again" with `Retry-After` — JSON for the API, a page for the portal.
"""

from __future__ import annotations

import logging

from flask import Flask, abort, render_template, request
from flask.typing import ResponseReturnValue
from flask_babel import LazyString, gettext
from flask_babel import lazy_gettext as _l
from flask_wtf.csrf import CSRFError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from werkzeug.exceptions import HTTPException

from merchant_portal import labels
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
from pos.redis_guard import RETRY_AFTER_SECONDS, end_request_budget, start_request_budget

log = logging.getLogger(__name__)

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


# What a page says for an HTTP error raised without a message of its own (`abort(404)`).
HTTP_MESSAGES: dict[int, LazyString] = {
    400: _l("The request could not be understood. Check what you entered and try again."),
    401: _l("Please sign in first."),
    403: _l("You do not have access to this page."),
    404: _l("There is no such page. Check the address, or go back to the start."),
    405: _l("This action cannot be done on this page."),
    409: _l("Someone changed this at the same time. Reload the page and try again."),
    413: _l("What was sent is too large."),
    429: _l("Too many requests. Please wait a moment and try again."),
    500: _l("Something went wrong on our side. Nothing was lost: please try again."),
    503: _l("This is briefly unavailable. Please try again in a few seconds."),
}


def status_for(error: PosError) -> int:
    for error_type, status, _code in DOMAIN_ERRORS:
        if isinstance(error, error_type):
            return status
    return 400


def headers_for(error: PosError) -> dict[str, str]:
    """Extra headers of the answer: when to retry a request that needed Redis."""
    if isinstance(error, CoordinationUnavailableError):
        return {"Retry-After": str(RETRY_AFTER_SECONDS)}
    return {}


def translated(error: PosError) -> str:
    """The error's message in the reader's language.

    Messages raised in `pos/` (and `settlement/`) are marked with `N_` and keep their values
    apart, so the fixed text is looked up in the catalog and the values put in afterwards; a
    message with no translation (or one already translated by the portal) is shown as it is.
    """
    template = getattr(error, "template", "")
    if not template:
        return str(error)
    params: dict[str, object] = getattr(error, "params", {})
    if not params:
        return str(gettext(template))
    # A state passed as its enum is shown as its label ("suspended" -> "приостановлен").
    shown = {name: labels.enum_label(value) for name, value in params.items()}
    return str(gettext(template, **shown))


def message_for(error: PosError) -> str:
    """What the user reads. Redis details (hosts, timeouts) stay in the log."""
    if isinstance(error, CoordinationUnavailableError):
        log.warning("%s %s answered 503: %s", request.method, request.path, error)
        return str(
            gettext(
                "This is briefly unavailable. Nothing was lost: please try again in a few seconds."
            )
        )
    return translated(error)


def _wants_json() -> bool:
    return (
        request.path.startswith("/api/")
        or request.path.endswith(".json")
        or (request.accept_mimetypes.best == "application/json")
    )


def init_app(app: Flask) -> None:
    # A domain error held by a page (the rates board's refusals), in the reader's language.
    app.add_template_filter(translated, "translated")

    @app.before_request
    def _start_redis_budget() -> None:
        start_request_budget()

    @app.before_request
    def _refuse_nul_characters() -> None:
        # No field takes a NUL, and PostgreSQL refuses one in any text parameter (a DataError,
        # so a 500): one check here instead of one in every lookup by a path or form value.
        values = [request.path, *request.args.keys(), *request.args.values()]
        if request.mimetype in ("application/x-www-form-urlencoded", "multipart/form-data"):
            values += [*request.form.keys(), *request.form.values()]
        if any("\x00" in value for value in values):
            abort(400, description=gettext("The request contains a NUL character."))

    @app.teardown_request
    def _end_redis_budget(_exc: BaseException | None) -> None:
        end_request_budget()

    @app.errorhandler(PosError)
    def _domain_error(error: PosError) -> ResponseReturnValue:
        status = status_for(error)
        message = message_for(error)
        headers = headers_for(error)
        if _wants_json():
            return {"error": type(error).__name__, "message": message}, status, headers
        page = render_template("error.html", status=status, message=message)
        return page, status, headers

    @app.errorhandler(RedisConnectionError)
    @app.errorhandler(RedisTimeoutError)
    def _redis_error(error: RedisConnectionError | RedisTimeoutError) -> ResponseReturnValue:
        # Redis unreachable in a call that escaped its module's translation: still "try again",
        # not a 500. (Other Redis errors, e.g. a wrong type, are bugs and stay 500s.)
        wrapped = CoordinationUnavailableError(f"Redis is unavailable: {error}")
        if request.path.startswith("/api/v1/"):
            from merchant_portal.api.errors import error_response

            message = message_for(wrapped)
            return error_response(
                503, "coordination_unavailable", message, None, headers_for(wrapped)
            )
        return _domain_error(wrapped)

    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException) -> ResponseReturnValue:
        status = error.code or 500
        message = error.description or error.name
        if isinstance(error, CSRFError):
            # flask-wtf's reasons ("The CSRF token is missing.") are English and technical.
            message = gettext("This form has expired. Reload the page and send it again.")
        elif message == type(error).description and status in HTTP_MESSAGES:
            # Werkzeug's own English sentence: the page says it in the reader's language.
            message = str(HTTP_MESSAGES[status])
        if request.path.startswith("/api/v1/"):
            from merchant_portal.api.errors import error_response, http_error_code

            return error_response(status, http_error_code(status), message)
        if _wants_json():
            return {"error": error.name, "message": message}, status
        return render_template("error.html", status=status, message=message), status
