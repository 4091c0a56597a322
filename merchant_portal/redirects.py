"""The one check of a `next=` target before the portal redirects to it (sign-in, language switch).

Only a path on this site passes. Browsers drop tabs and newlines inside a URL and read a backslash
as a slash, so `/\t/evil.example` or `/\\evil.example` would become `//evil.example`, another site:
any control character, whitespace or backslash refuses the target (newlines also could not be
sent in a `Location` header at all).
"""

from __future__ import annotations

from urllib.parse import urlsplit

MAX_NEXT_LENGTH = 2048


def safe_next(target: str | None) -> str | None:
    """`target` when it is a local path (`/…`, not `//…`); otherwise None."""
    if not target or len(target) > MAX_NEXT_LENGTH:
        return None
    if any(char.isspace() or not char.isprintable() or char == "\\" for char in target):
        return None
    if not target.startswith("/") or target.startswith("//"):
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return None
    return target
