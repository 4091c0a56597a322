"""A merchant's shop domains, and the `redirect_url` an invoice may send the shopper back to.

The owner lists their shop's domains (one per line). An invoice's `redirect_url` must be an
https URL whose host is one of them or a subdomain of one: the checkout's "Return to the shop"
link then never leads elsewhere (no open redirect through our domain, no `javascript:`). The
checkout checks again at display time, so removing a domain withdraws its links at once.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from pos.errors import ValidationError
from pos.i18n import N_

MAX_DOMAINS = 10
MAX_URL_LENGTH = 500
# One DNS label: letters, digits, inner hyphens; the name has at least two labels.
_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")


def _hostname(text: str, field: str) -> str:
    """`text` as a lower-case ASCII (IDNA) host name, or a `ValidationError`."""
    name = text.strip().rstrip(".").lower()
    try:
        ascii_name = name.encode("idna").decode("ascii")
    except UnicodeError:
        raise ValidationError(
            N_("%(text)s is not a domain name"), field=field, text=repr(text)
        ) from None
    labels = ascii_name.split(".")
    if (
        len(ascii_name) > 253
        or len(labels) < 2
        or not all(_LABEL.fullmatch(label) for label in labels)
        or labels[-1].isdigit()  # an IP address is not a shop's domain
    ):
        raise ValidationError(
            N_("%(text)s is not a domain name (like shop.example.kz, without https:// or a path)"),
            field=field,
            text=repr(text),
        )
    return ascii_name


def parse_domains(text: str) -> list[str]:
    """The owner's list (one per line, or separated by commas or spaces), normalised and
    without repeats; an empty text is an empty list."""
    found: list[str] = []
    for item in re.split(r"[\s,]+", text.strip()):
        if item and (name := _hostname(item, "shop_domains")) not in found:
            found.append(name)
    if len(found) > MAX_DOMAINS:
        raise ValidationError(
            N_("list at most %(count)d shop domains"), field="shop_domains", count=MAX_DOMAINS
        )
    return found


def stored(domains: list[str]) -> str | None:
    """The column's value: one domain per line (None: no domain)."""
    return "\n".join(domains) or None


def domains_of(column: str | None) -> list[str]:
    return [d for d in (column or "").split("\n") if d]


def redirect_problem(url: str, domains: list[str]) -> str | None:
    """Why `url` may not be a return link for a shop on `domains` (None: it may)."""
    if len(url) > MAX_URL_LENGTH:
        return f"the URL is longer than {MAX_URL_LENGTH} characters"
    if any(ord(c) < 33 or c == "\\" for c in url):
        return "the URL holds spaces, control characters or backslashes"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "the URL is malformed"
    if parts.scheme != "https":
        return "the URL must start with https://"
    if parts.username is not None or parts.password is not None:
        return "the URL must not carry a user name or password"
    if port not in (None, 443):
        return "the URL must use the standard https port"
    host = (parts.hostname or "").rstrip(".")
    if not domains:
        return "the merchant has no shop domain configured (Integrations page)"
    if not any(host == d or host.endswith("." + d) for d in domains):
        return (
            "the URL's host is not one of the merchant's shop domains (" + ", ".join(domains) + ")"
        )
    return None


def allowed_redirect(url: str | None, domains: list[str]) -> str | None:
    """`url` if it may be shown as the return link now, else None."""
    if not url or redirect_problem(url, domains) is not None:
        return None
    return url
