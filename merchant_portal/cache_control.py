"""`no_store`: pages that show a secret once must stay out of every cache and the history.

A one-time password, a new API token or a webhook signing secret on a page that a proxy, the
browser's disk cache or the back button could serve again would outlive the moment it was
shown for.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from flask import make_response
from werkzeug.wrappers import Response

F = TypeVar("F", bound=Callable[..., Any])


def forbid_caching(response: Response) -> Response:
    """Mark `response` as never to be stored (HTTP/1.1 `no-store`, HTTP/1.0 `Pragma`)."""
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"
    return response


def no_store(view: F) -> F:
    """A view decorator: whatever the view answers (page, error page, redirect) is `no-store`."""

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Response:
        return forbid_caching(make_response(view(*args, **kwargs)))

    return wrapper  # type: ignore[return-value]
