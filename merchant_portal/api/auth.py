"""Bearer-key authentication, scopes and the per-key rate limit for API views."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar

from flask import Blueprint, g, request

from merchant_portal.api.errors import ApiError
from merchant_portal.api.schema import Operation, operation
from merchant_portal.context import coordinator, db
from pos.db import utcnow
from pos.errors import CoordinationUnavailableError
from pos.integrations import ApiKey, authenticate_bearer

log = logging.getLogger(__name__)
F = TypeVar("F", bound=Callable[..., Any])

RATE_WINDOW_SECONDS = 60
TOUCH_EVERY = timedelta(minutes=1)  # last_used_at is informative; no write per request


def current_key() -> ApiKey:
    key: ApiKey = g.api_key
    return key


def current_merchant_id() -> int:
    return current_key().merchant_id


def _check_rate(key: ApiKey) -> None:
    """Fixed one-minute window per key in Redis. Fails open when Redis is down: a lost limit
    is better than every till in the city refused."""
    redis_key = f"cc:rl:api:{key.id}"
    try:
        hits = coordinator().count_in_window(redis_key, RATE_WINDOW_SECONDS)
        if hits <= key.rate_limit_per_minute:
            return
        _hits, ttl = coordinator().window_count(redis_key)
    except CoordinationUnavailableError as exc:
        log.warning("API rate limit unavailable: %s", exc)
        return
    raise ApiError(
        429,
        "rate_limited",
        f"this key allows {key.rate_limit_per_minute} requests a minute",
        headers={"Retry-After": str(max(ttl, 1))},
    )


def _guard(view: F, scope: str | None) -> F:
    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        session = db()
        key = authenticate_bearer(session, request.headers.get("Authorization"))
        _check_rate(key)
        if scope and scope not in key.scope_set:
            raise ApiError(403, "insufficient_scope", f"this key lacks the {scope} scope")
        now = utcnow()
        if key.last_used_at is None or now - key.last_used_at > TOUCH_EVERY:
            key.last_used_at = now
            session.commit()
        g.api_key = key
        return view(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def api_route(bp: Blueprint, rule: str, method: str, spec: Operation) -> Callable[[F], F]:
    """Register an API view: documented by `spec`, guarded by a key with `spec.scope`.

    `spec.scope` "" means public (no key), None means any valid key of the merchant.
    """

    def decorator(view: F) -> F:
        guarded = view if spec.scope == "" else _guard(view, spec.scope)
        return operation(bp, rule, method, spec)(guarded)

    return decorator
