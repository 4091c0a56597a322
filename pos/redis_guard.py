"""Failing fast on a hung Redis: a per-request budget for Redis waits and a circuit breaker.

A stopped (SIGSTOPped, swapped-out, partitioned) Redis does not refuse connections: the kernel
accepts them and every call waits out its socket timeout. Two guards keep that from stalling
the web tier, both applied to the client's sockets so every path (commands, pipelines, Lua
scripts, pub/sub, the connection handshake) obeys them:

- **Budget**: a web request may wait on Redis for `REQUEST_REDIS_SECONDS` in all. The clock
  runs only while a socket waits on Redis, so a slow database query never eats it. Outside a
  request (workers, CLI) each call keeps the plain socket timeout.
- **Breaker**: after a timeout, calls are refused at once (`CircuitOpenError`, a redis
  `ConnectionError`, so every `except RedisError` already handles it) for a short cool-down;
  then one call probes, and a reply closes the breaker. A refused connection is not a reason
  to open it: it fails in microseconds anyway, and a restarted Redis must be usable at once.

Whatever Redis does not answer for waits in the database (the event outbox, pos.invoices).
"""

from __future__ import annotations

import math
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import redis
from redis.connection import AbstractConnection
from redis.exceptions import ConnectionError as RedisConnectionError

REQUEST_REDIS_SECONDS = 1.0  # all the Redis waiting one web request may do
BREAKER_COOLDOWN_SECONDS = 2.0  # how long calls skip Redis after a timeout
RETRY_AFTER_SECONDS = math.ceil(BREAKER_COOLDOWN_SECONDS)  # what a 503 tells the client


class CircuitOpenError(RedisConnectionError):
    """Redis timed out moments ago: calls are skipped until the breaker's cool-down ends."""


class CircuitBreaker:
    """Closed (calls go through) or open until a moment; thread-safe, one per Redis client."""

    def __init__(
        self,
        cooldown_seconds: float = BREAKER_COOLDOWN_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.cooldown_seconds = cooldown_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._open_until = 0.0  # 0: closed
        self._prober: int | None = None  # the thread whose call tests Redis after a cool-down
        self.trips = 0  # how many times a timeout opened it (for tests and logs)

    @property
    def is_open(self) -> bool:
        return self._open_until > 0.0

    def check(self) -> None:
        """Raise `CircuitOpenError` while open; after the cool-down let one probe through."""
        if not self._open_until:
            return
        with self._lock:
            now = self._clock()
            if not self._open_until or self._prober == threading.get_ident():
                return
            if now < self._open_until:
                left = self._open_until - now
                raise CircuitOpenError(f"Redis timed out just now; skipped for {left:.1f} s")
            # Half-open: this thread's call probes (its connect, handshake and command);
            # others keep failing fast while it waits. A probe that never ends is replaced
            # after another cool-down.
            self._open_until = now + self.cooldown_seconds
            self._prober = threading.get_ident()

    def record_failure(self) -> None:
        with self._lock:
            self._open_until = self._clock() + self.cooldown_seconds
            self._prober = None
            self.trips += 1

    def record_success(self) -> None:
        if self._open_until:  # no lock on the hot path: closed stays closed
            with self._lock:
                self._open_until = 0.0
                self._prober = None


@dataclass
class _Budget:
    remaining: float


_budget: ContextVar[_Budget | None] = ContextVar("cc_redis_budget", default=None)


def start_request_budget(seconds: float = REQUEST_REDIS_SECONDS) -> None:
    """From now on, this context's Redis calls may wait `seconds` in all (a web request)."""
    _budget.set(_Budget(seconds))


def end_request_budget() -> None:
    _budget.set(None)


@contextmanager
def redis_budget(seconds: float) -> Iterator[None]:
    """Bound the Redis waiting inside the block (outside a request, e.g. a probe)."""
    previous = _budget.get()
    _budget.set(_Budget(seconds))
    try:
        yield
    finally:
        _budget.set(previous)


def _cap(timeout: float | None, budget: _Budget | None) -> tuple[float | None, bool]:
    """The timeout for one wait and whether the budget (not the caller) set it."""
    if budget is None or timeout == 0:  # 0: a non-blocking poll, never waits
        return timeout, False
    if budget.remaining <= 0:
        raise TimeoutError("this request's time for Redis is used up")
    if timeout is None or budget.remaining < timeout:
        return budget.remaining, True
    return timeout, False


class _GuardedSocket:
    """A Redis connection's socket: each wait obeys the budget and tells the breaker."""

    def __init__(
        self, sock: socket.socket, breaker: CircuitBreaker, base_timeout: float | None
    ) -> None:
        self._sock = sock
        self._breaker = breaker
        self._base = base_timeout  # the connection's own timeout: hitting it is a failure
        self._timeout = sock.gettimeout()  # what redis-py asked for last

    def settimeout(self, value: float | None) -> None:
        self._timeout = value
        self._sock.settimeout(value)

    def gettimeout(self) -> float | None:
        return self._timeout

    def sendall(self, data: Any, flags: int = 0) -> None:
        self._breaker.check()
        self._wait(lambda: self._sock.sendall(data, flags))

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        data: bytes = self._wait(lambda: self._sock.recv(bufsize, flags))
        if data:
            self._breaker.record_success()
        return data

    def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
        count: int = self._wait(lambda: self._sock.recv_into(buffer, nbytes, flags))
        if count:
            self._breaker.record_success()
        return count

    def __getattr__(self, name: str) -> Any:  # close, shutdown, fileno, setsockopt, …
        return getattr(self._sock, name)

    def _wait(self, operation: Callable[[], Any]) -> Any:
        budget = _budget.get()
        timeout, capped = _cap(self._timeout, budget)
        if capped:
            self._sock.settimeout(timeout)
        started = time.monotonic()
        try:
            return operation()
        except TimeoutError:
            # A caller's own short poll (pub/sub, can_read) timing out is not a failure.
            if capped or self._timeout == self._base:
                self._breaker.record_failure()
            raise
        finally:
            if budget is not None and timeout != 0:
                budget.remaining -= time.monotonic() - started
            if capped:
                self._sock.settimeout(self._timeout)


def _guarded_connect(
    conn: AbstractConnection, breaker: CircuitBreaker, connect: Callable[[], socket.socket]
) -> _GuardedSocket:
    breaker.check()
    budget = _budget.get()
    configured = conn.socket_connect_timeout
    timeout, _capped = _cap(configured, budget)
    conn.socket_connect_timeout = timeout  # a connection is used by one thread at a time
    started = time.monotonic()
    try:
        sock = connect()
    except TimeoutError:
        breaker.record_failure()
        raise
    finally:
        conn.socket_connect_timeout = configured
        if budget is not None:
            budget.remaining -= time.monotonic() - started
    return _GuardedSocket(sock, breaker, conn.socket_timeout)


class GuardedConnection(redis.Connection):
    """TCP (`redis://`)."""

    def __init__(self, *, cc_breaker: CircuitBreaker | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)  # type: ignore[no-untyped-call]  # redis-py leaves it untyped
        self.cc_breaker = cc_breaker or CircuitBreaker()

    def _connect(self) -> Any:
        return _guarded_connect(self, self.cc_breaker, super()._connect)


class GuardedSSLConnection(redis.SSLConnection):
    """TLS (`rediss://`)."""

    def __init__(self, *, cc_breaker: CircuitBreaker | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.cc_breaker = cc_breaker or CircuitBreaker()

    def _connect(self) -> Any:
        return _guarded_connect(self, self.cc_breaker, super()._connect)


class GuardedUnixConnection(redis.UnixDomainSocketConnection):
    """Unix socket (`unix://`, the embedded Redis of demo mode)."""

    def __init__(self, *, cc_breaker: CircuitBreaker | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)  # type: ignore[no-untyped-call]  # redis-py leaves it untyped
        self.cc_breaker = cc_breaker or CircuitBreaker()

    def _connect(self) -> Any:
        return _guarded_connect(self, self.cc_breaker, super()._connect)


def guarded_connection_class(url: str) -> type[AbstractConnection]:
    """Our connection class for the URL's scheme (the schemes redis-py's `from_url` knows)."""
    scheme = urlsplit(url).scheme.lower()
    if scheme == "unix":
        return GuardedUnixConnection
    if scheme == "rediss":
        return GuardedSSLConnection
    return GuardedConnection


def breaker_of(client: redis.Redis) -> CircuitBreaker | None:
    """The breaker a client made by `pos.coordination.connect` shares across its connections."""
    breaker = client.connection_pool.connection_kwargs.get("cc_breaker")
    return breaker if isinstance(breaker, CircuitBreaker) else None
