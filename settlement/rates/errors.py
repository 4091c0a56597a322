"""Errors of the rate feeds: every way a provider can fail to give us a usable quote.

All are `RateUnavailableError`s (a feed without a quote is a source without a rate), and all
are *unknown*, not verdicts: the refresher backs off and asks again.
"""

from __future__ import annotations

from pos.errors import RateUnavailableError


class RateFeedError(RateUnavailableError):
    """Base of the rate feed errors; `str()` names the feed and what went wrong."""


class FeedTimeoutError(RateFeedError):
    """The provider did not answer within RATE_HTTP_TIMEOUT_SECONDS."""


class FeedUnreachableError(RateFeedError):
    """The connection failed (refused, reset, DNS): the provider may be down or blocked."""


class FeedHttpError(RateFeedError):
    """The provider answered with an HTTP error status (5xx: its trouble; 4xx: our request)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class FeedRateLimitedError(FeedHttpError):
    """HTTP 429 (or Binance's 418 ban): wait at least `retry_after_seconds` before asking."""

    def __init__(self, message: str, status: int, retry_after_seconds: float | None) -> None:
        super().__init__(message, status)
        self.retry_after_seconds = retry_after_seconds


class FeedMalformedError(RateFeedError):
    """The answer is not the shape the provider documents (or holds no usable rate)."""
