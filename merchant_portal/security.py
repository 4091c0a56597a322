"""Security headers, role checks and the login rate limit."""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

from flask import Flask, Response, abort
from flask_login import current_user
from redis.exceptions import RedisError

from merchant_portal.context import coordinator, settings

log = logging.getLogger(__name__)
F = TypeVar("F", bound=Callable[..., Any])

CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)


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


# Sign-in limits: every attempt is counted *before* the password is checked, in one Lua call,
# so parallel attempts cannot all slip past a check made before any of them was counted. Past
# the free attempts, each further one must wait twice as long as the one before after the last
# attempt (2 s, 4 s, 8 s … at most 15 minutes). There is no per-IP limit: a whole zone may sit
# behind one proxy, and one person's typos or an attacker there must not lock everyone out.
ATTEMPT_DELAY_CAP_SECONDS = 15 * 60
ATTEMPT_MEMORY_SECONDS = 60 * 60  # a counter is forgotten this long after its last attempt
FREE_ATTEMPTS_PER_ACCOUNT_AND_IP = 5
# Higher: an attacker elsewhere slows the account's owner only after many more attempts.
FREE_ATTEMPTS_PER_ACCOUNT = 20
FREE_SECOND_FACTOR_ATTEMPTS = 5

_RESERVE_ATTEMPT_LUA = """
local now_ms = tonumber(ARGV[1])
local memory_s = tonumber(ARGV[2])
local cap_ms = tonumber(ARGV[3]) * 1000
local wait_ms = 0
for i, key in ipairs(KEYS) do
  local free = tonumber(ARGV[3 + i])
  local attempts = tonumber(redis.call('HGET', key, 'n') or '0')
  if attempts >= free then
    local last_ms = tonumber(redis.call('HGET', key, 't') or '0')
    local delay_ms = math.min(2 ^ (attempts - free + 1) * 1000, cap_ms)
    local left = last_ms + delay_ms - now_ms
    if left > wait_ms then wait_ms = left end
  end
end
if wait_ms > 0 then return math.ceil(wait_ms) end
for _, key in ipairs(KEYS) do
  redis.call('HINCRBY', key, 'n', 1)
  redis.call('HSET', key, 't', now_ms)
  redis.call('EXPIRE', key, memory_s)
end
return 0
"""


def _account(email: str) -> str:
    return email.strip().lower()[:254]


def login_keys(ip: str, email: str) -> list[str]:
    account = _account(email)
    return [f"cc:rl:login:acct-ip:{account}|{ip}", f"cc:rl:login:acct:{account}"]


def _reserve(keys: list[str], free: list[int], now: float | None) -> int:
    """Count one attempt on every key and return 0, or the seconds to wait (nothing counted).
    Fails open if Redis is down: a lost rate limit is better than a city's tills locked out of
    their own terminal."""
    now_ms = int((time.time() if now is None else now) * 1000)
    try:
        client = coordinator().client
        script = client.register_script(_RESERVE_ATTEMPT_LUA)
        args = [now_ms, ATTEMPT_MEMORY_SECONDS, ATTEMPT_DELAY_CAP_SECONDS, *free]
        wait_ms = int(script(keys=keys, args=args))
    except RedisError as exc:
        log.warning("sign-in rate limit unavailable: %s", exc)
        return 0
    return 0 if wait_ms <= 0 else (wait_ms + 999) // 1000


def reserve_login_attempt(ip: str, email: str, now: float | None = None) -> int:
    """Before checking a password: 0 (the attempt is counted, go on) or seconds to wait."""
    free = [FREE_ATTEMPTS_PER_ACCOUNT_AND_IP, FREE_ATTEMPTS_PER_ACCOUNT]
    return _reserve(login_keys(ip, email), free, now)


def reserve_second_factor_attempt(user_id: int, now: float | None = None) -> int:
    """Before checking a TOTP or recovery code of `user_id`: 0 or seconds to wait."""
    return _reserve([f"cc:rl:2fa:{user_id}"], [FREE_SECOND_FACTOR_ATTEMPTS], now)


def clear_attempts(keys: list[str]) -> None:
    """After a success: the counted attempts were the user's own."""
    try:
        coordinator().client.delete(*keys)
    except RedisError as exc:
        log.warning("sign-in rate limit unavailable: %s", exc)


def clear_login_attempts(ip: str, email: str) -> None:
    clear_attempts(login_keys(ip, email))


def clear_second_factor_attempts(user_id: int) -> None:
    clear_attempts([f"cc:rl:2fa:{user_id}"])
