"""One webhook POST under a wall-clock deadline.

urllib's timeout applies to each socket read, so a receiver that trickles a byte every few
seconds holds a request open for as long as it likes. Here the deadline covers the whole
exchange: connect, TLS handshake, sending the request, and reading the answer's status line and
headers. Every socket call gets only the time that is left, so a trickling receiver is cut when
the deadline passes. Redirects are not followed (a 3xx is a failed attempt, never a request to
its Location), and the connection is closed after each answer (`Connection: close`).

Before connecting, the host is resolved and every address checked (pos.network_policy: public
internet addresses only, unless WEBHOOK_ALLOW_PRIVATE_NETWORKS is on); the socket then goes to
exactly those checked addresses, never a second lookup, so DNS rebinding gains nothing. The
Host header, SNI and the certificate check still use the URL's host name. A refused address is
a failed attempt with a generic reason: what (if anything) listens there is never learnt.

Not covered by the deadline: the DNS lookup (`getaddrinfo` cannot be interrupted).
"""

from __future__ import annotations

import functools
import logging
import socket
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from pos.network_policy import (
    DELIVERY_REFUSED,
    DELIVERY_UNRESOLVED,
    AddressRefusedError,
    Destination,
    WebhookUrl,
    parse_webhook_url,
    resolve,
)
from pos.settings import Settings

log = logging.getLogger(__name__)

MAX_HEAD_BYTES = 64 * 1024  # status line and headers; the body is not needed
_FORBIDDEN = frozenset("\r\n\0")


@dataclass(frozen=True)
class HttpResult:
    """What came back: a status code, or an error when no answer arrived (timeout, refused)."""

    status: int | None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


# (url, body, headers, deadline in seconds) -> result; never raises for the network's doing.
Sender = Callable[[str, bytes, Mapping[str, str], float], HttpResult]


class DeadlineExceededError(TimeoutError):
    """The receiver did not answer completely within the delivery's deadline."""


def _host_header(target: WebhookUrl) -> str:
    host = f"[{target.host}]" if ":" in target.host else target.host
    default = 443 if target.tls else 80
    return host if target.port == default else f"{host}:{target.port}"


def _left(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise DeadlineExceededError
    return left


def _request(target: WebhookUrl, body: bytes, headers: Mapping[str, str]) -> bytes:
    lines = [
        f"POST {target.path} HTTP/1.1",
        f"Host: {_host_header(target)}",
        f"Content-Length: {len(body)}",
        "Connection: close",
    ]
    for name, value in headers.items():
        if any(c in _FORBIDDEN for c in name + value) or ":" in name:
            raise ValueError(f"invalid header {name!r}")
        lines.append(f"{name}: {value}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def _connect(target: WebhookUrl, destinations: list[Destination], deadline: float) -> socket.socket:
    """A connection to one of the checked addresses, in the resolver's order (no new lookup);
    TLS verifies the certificate for the URL's host name, sent as SNI."""
    sock = _open(destinations, deadline)
    if not target.tls:
        return sock
    try:
        sock.settimeout(_left(deadline))  # the handshake is one bounded call
        return ssl.create_default_context().wrap_socket(sock, server_hostname=target.host)
    except BaseException:
        sock.close()
        raise


def _open(destinations: list[Destination], deadline: float) -> socket.socket:
    error: OSError = ConnectionError("no address to connect to")
    for family, sockaddr in destinations:
        left = _left(deadline)  # raises once the deadline has passed
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        try:
            sock.settimeout(left)
            sock.connect(sockaddr)
        except OSError as exc:
            sock.close()
            error = exc
            continue
        return sock
    raise error


def _read_status(sock: socket.socket, deadline: float) -> int:
    """The status code of the final answer (1xx interim answers are skipped)."""
    buffer = b""
    while True:
        end = buffer.find(b"\r\n\r\n")
        if end >= 0:
            head, buffer = buffer[:end], buffer[end + 4 :]
            status = _status_of(head.split(b"\r\n", 1)[0])
            if not 100 <= status < 200:
                return status
            continue
        if len(buffer) > MAX_HEAD_BYTES:
            raise ValueError("the answer's headers are too long")
        sock.settimeout(_left(deadline))
        chunk = sock.recv(16384)
        if not chunk:
            line = buffer.split(b"\r\n", 1)[0]
            if b"\r\n" in buffer or (buffer and not line.startswith(b"HTTP/")):
                return _status_of(line)  # headers cut short, the status line is there
            raise ConnectionResetError("the receiver closed the connection without an answer")
        buffer += chunk


def _status_of(line: bytes) -> int:
    parts = line.split(None, 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
        raise ValueError(f"not an HTTP status line: {line[:80]!r}")
    status = int(parts[1])
    if not 100 <= status <= 999:
        raise ValueError(f"not an HTTP status: {status}")
    return status


def http_post(
    url: str,
    body: bytes,
    headers: Mapping[str, str],
    timeout: float,
    *,
    allow_private_networks: bool = False,
) -> HttpResult:
    """POST once, all of it within `timeout` seconds of wall-clock time, to a checked public
    address (any address with `allow_private_networks`); never raises for anything the
    network or the receiver can do."""
    deadline = time.monotonic() + timeout
    try:
        target = parse_webhook_url(url, require_https=False)
        request = _request(target, body, headers)
        destinations = resolve(target, allow_private_networks=allow_private_networks)
    except AddressRefusedError as exc:
        if exc.code == "unresolvable":
            return HttpResult(None, DELIVERY_UNRESOLVED)
        if exc.code == "not_public":
            return HttpResult(None, DELIVERY_REFUSED)
        return HttpResult(None, f"not sent: {exc}"[:500])
    except ValueError as exc:
        return HttpResult(None, f"not sent: {exc}"[:500])
    try:
        with _connect(target, destinations, deadline) as sock:
            sock.settimeout(_left(deadline))
            sock.sendall(request)  # one call: its timeout bounds the whole send
            status = _read_status(sock, deadline)
    except TimeoutError:  # our deadline, or a socket call that used up what was left of it
        return HttpResult(None, f"TimeoutError: no complete answer within {timeout:g} s")
    except (OSError, ValueError, UnicodeError) as exc:
        return HttpResult(None, f"{type(exc).__name__}: {exc}"[:500])
    if 300 <= status < 400:
        return HttpResult(status, f"HTTP {status}: redirects are not followed")
    return HttpResult(status) if 200 <= status < 300 else HttpResult(status, f"HTTP {status}")


def sender_for(settings: Settings) -> Sender:
    """The sender the settings ask for: `http_post`, or (WEBHOOK_ALLOW_PRIVATE_NETWORKS on) one
    that may reach loopback and private addresses, with a warning."""
    if not settings.webhook_allow_private_networks:
        return http_post
    log.warning(
        "WEBHOOK_ALLOW_PRIVATE_NETWORKS is on: webhooks are delivered to loopback and private "
        "addresses too (tests and benchmarks only)"
    )
    return functools.partial(http_post, allow_private_networks=True)
