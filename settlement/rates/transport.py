"""One bounded HTTP GET for the rate feeds, with the failures mapped to typed errors."""

from __future__ import annotations

import socket
import urllib.request
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from http.client import HTTPException
from urllib.error import HTTPError, URLError

from settlement.rates.errors import (
    FeedHttpError,
    FeedRateLimitedError,
    FeedTimeoutError,
    FeedUnreachableError,
)

MAX_BODY_BYTES = 2 * 1024 * 1024  # EXMO's all-pairs ticker is ~100 kB; anything huge is wrong
USER_AGENT = "cryptocity-pay rate feed (+https://github.com/cryptocity)"


def get(feed: str, url: str, timeout_seconds: float, accept: str = "application/json") -> bytes:
    """The body of a 200 answer, or a `RateFeedError` saying what happened."""
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT, "Accept": accept})
    try:
        with urllib.request.urlopen(request, timeout=timeout_seconds) as answer:
            body: bytes = answer.read(MAX_BODY_BYTES + 1)
    except HTTPError as exc:
        detail = exc.read(300).decode("utf-8", "replace").strip()
        exc.close()
        if exc.code in (418, 429):
            raise FeedRateLimitedError(
                f"{feed}: rate limited (HTTP {exc.code}) {detail}".strip(),
                exc.code,
                _retry_after(exc.headers.get("Retry-After")),
            ) from None
        raise FeedHttpError(f"{feed}: HTTP {exc.code} {detail}".strip(), exc.code) from None
    except TimeoutError as exc:
        raise FeedTimeoutError(f"{feed}: no answer within {timeout_seconds:g} s") from exc
    except URLError as exc:
        if isinstance(exc.reason, (TimeoutError, socket.timeout)):
            raise FeedTimeoutError(f"{feed}: no answer within {timeout_seconds:g} s") from exc
        raise FeedUnreachableError(f"{feed}: unreachable: {exc.reason}") from exc
    except (HTTPException, ConnectionError, OSError) as exc:
        raise FeedUnreachableError(f"{feed}: connection failed: {exc}") from exc
    if len(body) > MAX_BODY_BYTES:
        raise FeedUnreachableError(f"{feed}: answer larger than {MAX_BODY_BYTES} bytes")
    return body


def _retry_after(raw: str | None) -> float | None:
    """Retry-After as seconds: either a number of seconds or an HTTP date."""
    if not raw:
        return None
    raw = raw.strip()
    if raw.isdigit():
        return float(raw)
    try:
        when = parsedate_to_datetime(raw)
        return max((when - datetime.now(UTC)).total_seconds(), 0.0)
    except (TypeError, ValueError):
        return None
