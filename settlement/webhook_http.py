"""One webhook POST under a wall-clock deadline.

urllib's timeout applies to each socket read, so a receiver that trickles a byte every few
seconds holds a request open for as long as it likes. Here the deadline covers the whole
exchange: connect, TLS handshake, sending the request, and reading the answer's status line and
headers. Every socket call gets only the time that is left, so a trickling receiver is cut when
the deadline passes. Redirects are not followed (a 3xx is an answer, not a success), and the
connection is closed after each answer (`Connection: close`).

Not covered by the deadline: the DNS lookup (`getaddrinfo` cannot be interrupted).
"""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

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


@dataclass(frozen=True)
class _Target:
    tls: bool
    host: str
    port: int
    path: str  # the request target: path and query

    @classmethod
    def parse(cls, url: str) -> _Target:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url[:100]!r}")
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        if any(c in _FORBIDDEN or c.isspace() for c in path):
            raise ValueError("the URL's path contains whitespace or control characters")
        tls = parts.scheme == "https"
        return cls(tls, parts.hostname, parts.port or (443 if tls else 80), path)

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.tls else 80
        return host if self.port == default else f"{host}:{self.port}"


def _left(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise DeadlineExceededError
    return left


def _request(target: _Target, body: bytes, headers: Mapping[str, str]) -> bytes:
    lines = [
        f"POST {target.path} HTTP/1.1",
        f"Host: {target.host_header}",
        f"Content-Length: {len(body)}",
        "Connection: close",
    ]
    for name, value in headers.items():
        if any(c in _FORBIDDEN for c in name + value) or ":" in name:
            raise ValueError(f"invalid header {name!r}")
        lines.append(f"{name}: {value}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def _connect(target: _Target, deadline: float) -> socket.socket:
    sock = socket.create_connection((target.host, target.port), timeout=_left(deadline))
    if not target.tls:
        return sock
    try:
        sock.settimeout(_left(deadline))  # the handshake is one bounded call
        return ssl.create_default_context().wrap_socket(sock, server_hostname=target.host)
    except BaseException:
        sock.close()
        raise


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


def http_post(url: str, body: bytes, headers: Mapping[str, str], timeout: float) -> HttpResult:
    """POST once, all of it within `timeout` seconds of wall-clock time; never raises for
    anything the network or the receiver can do."""
    deadline = time.monotonic() + timeout
    try:
        target = _Target.parse(url)
        request = _request(target, body, headers)
        with _connect(target, deadline) as sock:
            sock.settimeout(_left(deadline))
            sock.sendall(request)  # one call: its timeout bounds the whole send
            status = _read_status(sock, deadline)
    except TimeoutError:  # our deadline, or a socket call that used up what was left of it
        return HttpResult(None, f"TimeoutError: no complete answer within {timeout:g} s")
    except (OSError, ValueError, UnicodeError) as exc:
        return HttpResult(None, f"{type(exc).__name__}: {exc}"[:500])
    return HttpResult(status) if 200 <= status < 300 else HttpResult(status, f"HTTP {status}")
