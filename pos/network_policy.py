"""Where the server may send webhooks: public internet addresses only (an SSRF guard).

A webhook URL is typed by a merchant, and the server POSTs to it. Without a guard a merchant
could make the server reach its own loopback services, the cloud metadata service
(169.254.169.254) or the private network it runs in, and read what answered from the delivery
log. So a webhook host must resolve to globally routable addresses only, checked twice:

- at save (`check_webhook_url`): the URL is parsed strictly, the host resolved, and every
  address it resolves to checked; a refusal or a name that does not resolve is a field error;
- at connect (`resolve` again, from settlement.webhook_http): resolved and checked
  again, and the request goes to exactly the addresses checked (pinned), so a name that
  changes its answer after the save (DNS rebinding) cannot slip a private address in.

Numeric host forms that the C resolver accepts (`2130706433`, `0x7f.1`, `017700000001`) are
read here the same way, so they are judged as the address they really are. An IPv6 address
that embeds an IPv4 one (IPv4-mapped, 6to4, NAT64, Teredo) is judged by both.

`WEBHOOK_ALLOW_PRIVATE_NETWORKS=1` (Settings.webhook_allow_private_networks, off by default in
every mode) lifts the address check only: tests and benchmarks with a receiver on loopback.

No Flask import: the portal translates the errors by their `code`.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import socket
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from pos.errors import ValidationError

log = logging.getLogger(__name__)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
MAX_URL_LENGTH = 500

# Not reachable on the public internet, or not meant to be, beyond what `ipaddress` flags (its
# flags differ between Python versions: 3.11 calls 192.0.0.8 and multicast "global").
_BLOCKED_V4 = tuple(
    ipaddress.IPv4Network(net)
    for net in (
        "0.0.0.0/8",  # "this network"
        "10.0.0.0/8",
        "100.64.0.0/10",  # carrier-grade NAT
        "127.0.0.0/8",
        "169.254.0.0/16",  # link-local, the cloud metadata service
        "172.16.0.0/12",
        "192.0.0.0/24",  # IETF protocol assignments
        "192.0.2.0/24",  # documentation
        "192.88.99.0/24",  # 6to4 relay anycast
        "192.168.0.0/16",
        "198.18.0.0/15",  # benchmarking
        "198.51.100.0/24",
        "203.0.113.0/24",
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved, and the broadcast address
    )
)
_BLOCKED_V6 = tuple(
    ipaddress.IPv6Network(net)
    for net in (
        "::/96",  # unspecified, loopback and the old IPv4-compatible form
        "::ffff:0:0/96",  # IPv4-mapped (judged by its IPv4 too)
        "64:ff9b:1::/48",  # local-use NAT64
        "100::/64",  # discard
        "2001::/23",  # IETF protocol assignments, Teredo among them
        "2001:db8::/32",  # documentation
        "fc00::/7",  # unique local
        "fe80::/10",  # link-local
        "fec0::/10",  # site-local (deprecated, still routed by some)
        "ff00::/8",  # multicast
    )
)
# The delivery log's reason when a POST was not sent (settlement.webhook_http): generic, so it
# names neither the address the host resolved to nor what listens there.
DELIVERY_REFUSED = "not sent: the URL's host is not a public internet address"
DELIVERY_UNRESOLVED = "not sent: the URL's host name does not resolve"
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")  # well-known prefix: the low 32 bits are IPv4
_HOST_LABEL = re.compile(r"^[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?$")
_NUMERIC_PART = re.compile(r"^(0x[0-9a-f]*|[0-9]+)$")


class AddressRefusedError(ValidationError):
    """A webhook URL or its host is not allowed; `code` names the rule (the portal translates
    by it): too_long, malformed, scheme, credentials, https_required, host, not_public,
    unresolvable."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message, field="url")
        self.code = code


@dataclass(frozen=True)
class WebhookUrl:
    """A parsed webhook URL: what to connect to and what to ask for."""

    tls: bool
    host: str  # lower case, no trailing dot, IDNA-encoded; an IP address in its usual form
    port: int
    path: str  # the request target: path and query
    address: IPAddress | None  # set when the host is a numeric address (in any form)


def parse_webhook_url(url: str, *, require_https: bool) -> WebhookUrl:
    """Parse strictly; raise `AddressRefusedError` for anything we would not send to."""
    url = url.strip()
    if len(url) > MAX_URL_LENGTH:
        raise AddressRefusedError("the URL is longer than 500 characters", "too_long")
    try:
        parts = urlsplit(url)
        port = parts.port
        hostname = parts.hostname
    except ValueError:
        raise AddressRefusedError("the URL is malformed", "malformed") from None
    if parts.scheme not in ("http", "https") or not hostname:
        raise AddressRefusedError("the URL must be a full http(s) address", "scheme")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise AddressRefusedError(
            "put no credentials in the URL; verify our signature", "credentials"
        )
    if require_https and parts.scheme != "https":
        raise AddressRefusedError("webhook URLs must use https", "https_required")
    tls = parts.scheme == "https"
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    if any(c in "\r\n\0" or c.isspace() for c in path):
        raise AddressRefusedError("the URL contains spaces or control characters", "malformed")
    host, address = _parse_host(hostname)
    return WebhookUrl(tls, host, port or (443 if tls else 80), path, address)


def _parse_host(raw: str) -> tuple[str, IPAddress | None]:
    """The host in canonical form, and its address if it is numeric."""
    host = raw.lower()
    if "[" in host or "]" in host:
        raise AddressRefusedError("the URL's host is malformed", "host")
    if ":" in host:  # urlsplit took it from [...]: only an IPv6 address may be there
        try:
            v6 = ipaddress.IPv6Address(host)
        except ValueError:
            raise AddressRefusedError("the URL's host is malformed", "host") from None
        return str(v6), v6
    host = host.removesuffix(".")  # `localhost.` is `localhost`
    v4 = _numeric_ipv4(host)
    if v4 is not None:
        return str(v4), v4
    try:
        ascii_host = host.encode("idna").decode("ascii")
    except UnicodeError:
        raise AddressRefusedError("the URL's host is malformed", "host") from None
    labels = ascii_host.split(".")
    if len(ascii_host) > 253 or not all(_HOST_LABEL.match(label) for label in labels):
        raise AddressRefusedError("the URL's host is malformed", "host")
    return ascii_host, None


def _numeric_ipv4(host: str) -> ipaddress.IPv4Address | None:
    """An IPv4 address in any form inet_aton reads (decimal, octal, hex, 1 to 4 parts), None
    for a name; a number that is no address is malformed, never sent to the resolver."""
    parts = host.split(".")
    if not all(_NUMERIC_PART.match(part) for part in parts):
        return None  # a name (a label with a letter that is not a hex prefix)
    if len(parts) > 4:
        raise AddressRefusedError("the URL's host is malformed", "host")
    try:
        values = [_inet_aton_part(part) for part in parts]
    except ValueError:
        raise AddressRefusedError("the URL's host is malformed", "host") from None
    *leading, last = values
    if any(value > 0xFF for value in leading) or last >= 1 << (8 * (4 - len(leading))):
        raise AddressRefusedError("the URL's host is malformed", "host")
    number = last
    for index, value in enumerate(leading):
        number |= value << (8 * (3 - index))
    return ipaddress.IPv4Address(number)


def _inet_aton_part(part: str) -> int:
    if part.startswith("0x"):
        return int(part[2:] or "0", 16)
    if len(part) > 1 and part.startswith("0"):
        return int(part, 8)  # ValueError for 8 or 9: not a number inet_aton reads
    return int(part)


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one carries and may be routed to, if any."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    return None


def is_public(address: IPAddress) -> bool:
    """True only for a globally routable unicast address (and what it embeds, if anything)."""
    if isinstance(address, ipaddress.IPv6Address) and address in _NAT64:
        # DNS64 networks give IPv4-only hosts these; judged by the IPv4 address (3.11's
        # `is_reserved` would refuse them all).
        return is_public(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    if (
        not address.is_global
        or address.is_loopback
        or address.is_private
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
    ):
        return False
    if isinstance(address, ipaddress.IPv4Address):
        return not any(address in net for net in _BLOCKED_V4)
    if any(address in net for net in _BLOCKED_V6):
        return False
    embedded = _embedded_ipv4(address)
    return embedded is None or is_public(embedded)


# One resolved, checked destination: the family and the sockaddr to connect to (as
# getaddrinfo gives it: (host, port) for IPv4, (host, port, flowinfo, scope_id) for IPv6).
SockAddr = tuple[Any, ...]
Destination = tuple[socket.AddressFamily, SockAddr]


def resolve(target: WebhookUrl, *, allow_private_networks: bool) -> list[Destination]:
    """Every address the host resolves to, each checked; raise `AddressRefusedError` if the
    name does not resolve or ANY of its addresses is not public (unless the setting is on)."""
    local_name = target.host == "localhost" or target.host.endswith(".localhost")
    if local_name and not allow_private_networks:  # RFC 6761: this machine, whatever DNS says
        raise _not_public()
    try:
        infos = socket.getaddrinfo(
            target.host,
            target.port,
            type=socket.SOCK_STREAM,
            proto=socket.IPPROTO_TCP,
        )
    except (OSError, UnicodeError):
        raise AddressRefusedError(
            "the URL's host name does not resolve; check it for typos", "unresolvable"
        ) from None
    destinations: list[Destination] = []
    for family, _type, _proto, _name, sockaddr in infos:
        if family not in (socket.AF_INET, socket.AF_INET6):
            continue
        if not allow_private_networks and not is_public(address_of(sockaddr)):
            raise _not_public()
        destination = (family, sockaddr)
        if destination not in destinations:
            destinations.append(destination)
    if not destinations:
        raise AddressRefusedError(
            "the URL's host name does not resolve; check it for typos", "unresolvable"
        )
    return destinations


def address_of(sockaddr: SockAddr) -> IPAddress:
    """The IP address of a getaddrinfo sockaddr (an IPv6 zone id dropped); an unreadable one
    reads as the unspecified address, which is never public."""
    try:
        return ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
    except ValueError:
        return ipaddress.IPv4Address(0)


def _not_public() -> AddressRefusedError:
    # The resolved address is not named: it may be an internal one the merchant must not learn.
    return AddressRefusedError(
        "webhook URLs must point to a public internet address, not a local, private or "
        "reserved one",
        "not_public",
    )


def check_webhook_url(url: str, *, require_https: bool, allow_private_networks: bool) -> str:
    """The URL, stripped, if the server may send to it now; else `AddressRefusedError`."""
    target = parse_webhook_url(url, require_https=require_https)
    destinations = resolve(target, allow_private_networks=allow_private_networks)
    if not all(is_public(address_of(sockaddr)) for _family, sockaddr in destinations):
        log.warning(
            "WEBHOOK_ALLOW_PRIVATE_NETWORKS is on: accepted a webhook to a non-public "
            "address (%s); never leave it on in production",
            target.host,
        )
    return url.strip()
