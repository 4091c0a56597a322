"""Fixtures for the API and webhook tests: the app with the API mounted, merchants, keys, and a
real HTTP receiver on loopback."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

import pytest
from flask import Flask

from pos import integrations  # also puts our tables on Base.metadata for the cleanup
from pos.models import Role
from pos.runtime import Runtime
from settlement.webhook_http import Sender, sender_for

import factories

ALL_SCOPES = ("invoices:read", "invoices:write", "reports:read")


@pytest.fixture
def app(runtime: Runtime) -> Flask:
    from merchant_portal import api, create_app
    from merchant_portal import integrations as pages

    app = create_app(runtime=runtime, test_config={"TESTING": True})
    api.init_app(app)  # a no-op once create_app mounts it itself
    if pages.bp.name not in app.blueprints:
        app.register_blueprint(pages.bp)
    return app


@pytest.fixture
def world(runtime: Runtime) -> dict[str, int]:
    with runtime.session_factory.begin() as session:
        shop = factories.merchant(session, runtime.settings, "Shop A", "a")
        other = factories.merchant(session, runtime.settings, "Shop B", "b")
        factories.user(session, "owner@a.test", Role.OWNER, shop.id)
        factories.user(session, "cashier@a.test", Role.CASHIER, shop.id)
        factories.user(session, "owner@b.test", Role.OWNER, other.id)
        return {"shop": shop.id, "other": other.id}


class KeyMaker(Protocol):
    def __call__(
        self, merchant_id: int, scopes: tuple[str, ...] = ..., rate_limit_per_minute: int = ...
    ) -> str: ...


@pytest.fixture
def make_key(runtime: Runtime) -> KeyMaker:
    """Create an API key through the service; returns the bearer token."""

    def make(
        merchant_id: int, scopes: tuple[str, ...] = ALL_SCOPES, rate_limit_per_minute: int = 1000
    ) -> str:
        with runtime.session_factory.begin() as session:
            _key, token = integrations.create_api_key(
                session, merchant_id, "till", scopes, rate_limit_per_minute
            )
        return token

    return make


@pytest.fixture
def token(make_key: KeyMaker, world: dict[str, int]) -> str:
    return make_key(world["shop"])


@pytest.fixture
def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@dataclass
class Received:
    path: str
    headers: Message  # case-insensitive, as HTTP headers are
    body: bytes


@dataclass
class Receiver:
    """A webhook endpoint: answers with `statuses` in turn (then 200) and records requests."""

    url: str
    requests: list[Received] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            state.requests.append(Received(self.path, self.headers, body))
            status = state.statuses.pop(0) if state.statuses else 200
            self.send_response(status)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format: str, *args: object) -> None:
            return  # keep test output clean

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def loopback_sender(runtime: Runtime) -> Sender:
    """Turn WEBHOOK_ALLOW_PRIVATE_NETWORKS on for this test (off by default in every mode):
    the `receiver` listens on 127.0.0.1, which webhooks may not reach otherwise. Returns the
    sender that honours the setting, for `deliver_due(..., sender=...)`; the worker's duty and
    the portal read it from `runtime.settings`."""
    runtime.settings = runtime.settings.with_overrides(webhook_allow_private_networks=True)
    return sender_for(runtime.settings)


FakeDns = dict[str, list[str]]


@pytest.fixture
def fake_dns(monkeypatch: pytest.MonkeyPatch) -> FakeDns:
    """A mock of DNS (there is no resolver here, and no name of ours to point anywhere): names
    put in the returned dict resolve to their addresses; any other name goes to the real
    `socket.getaddrinfo` (numeric addresses, /etc/hosts). Change an entry mid-test to rebind."""
    names: FakeDns = {}
    real = socket.getaddrinfo

    def getaddrinfo(
        host: str | bytes | None, port: str | int | None, *args: Any, **kwargs: Any
    ) -> list[Any]:
        name = host.decode() if isinstance(host, bytes) else host
        if name not in names:
            return real(host, port, *args, **kwargs)
        port_number = int(port or 0)
        return [
            (socket.AF_INET6, socket.SOCK_STREAM, 6, "", (address, port_number, 0, 0))
            if ":" in address
            else (socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port_number))
            for address in names[name]
        ]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return names
