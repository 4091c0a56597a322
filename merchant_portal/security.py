"""Security headers, role checks and the login rate limit."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from flask import Flask, Response, abort
from flask_login import current_user
from redis.exceptions import RedisError

from merchant_portal.context import coordinator, settings
from pos.errors import CoordinationUnavailableError

log = logging.getLogger(__name__)
F = TypeVar("F", bound=Callable[..., Any])

CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
LOGIN_WINDOW_SECONDS = 15 * 60
LOGIN_MAX_FAILURES = 10


def init_app(app: Flask) -> None:
    @app.after_request
    def _headers(response: Response) -> Response:
        response.headers.setdefault("Content-Security-Policy", CSP)
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Referrer-Policy"] = "same-origin"
        if not settings().is_demo:
            response.headers["Strict-Transport-Security"] = "max-age=31536000; includeSubDomains"
        return response


def require_role(*roles: str) -> Callable[[F], F]:
    """Only signed-in users with one of `roles`; others get 403 (anonymous: the login page)."""

    def decorator(view: F) -> F:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if not current_user.is_authenticated:
                from merchant_portal.extensions import login_manager

                return login_manager.unauthorized()
            if current_user.role not in roles:
                abort(403)
            return view(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorator


def _keys(ip: str, email: str) -> list[str]:
    return [f"cc:rl:login:ip:{ip}", f"cc:rl:login:email:{email.strip().lower()[:254]}"]


def login_blocked_for(ip: str, email: str) -> int:
    """Seconds until another attempt is allowed (0: allowed). Fails open if Redis is down:
    a lost rate limit is better than a city's tills locked out of their own terminal."""
    try:
        for key in _keys(ip, email):
            failures, ttl = coordinator().window_count(key)
            if failures >= LOGIN_MAX_FAILURES:
                return max(ttl, 1)
    except CoordinationUnavailableError as exc:
        log.warning("login rate limit unavailable: %s", exc)
    return 0


def record_login_failure(ip: str, email: str) -> None:
    try:
        for key in _keys(ip, email):
            coordinator().count_in_window(key, LOGIN_WINDOW_SECONDS)
    except CoordinationUnavailableError as exc:
        log.warning("login rate limit unavailable: %s", exc)


def clear_login_failures(ip: str, email: str) -> None:
    try:
        coordinator().client.delete(*_keys(ip, email))
    except RedisError as exc:
        log.warning("login rate limit unavailable: %s", exc)
