"""Webhooks never reach the server's own network (issue #19 item 4): refused at save in the
portal, in both modes; refused again at delivery (DNS rebinding), with a generic reason in the
delivery log; redirects not followed; the loopback receiver only with the explicit setting.

Names that resolve where we want go through the `fake_dns` fixture: a mock of DNS, since there
is no resolver here and no name of ours to point at 127.0.0.1.
"""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from pos import integrations, invoices
from pos.integrations import DeliveryStatus, Webhook, WebhookDelivery
from pos.network_policy import DELIVERY_REFUSED, AddressRefusedError
from pos.runtime import Runtime
from pos.settings import Mode
from pos.states import PaymentMethod
from settlement import webhooks
from settlement.webhooks import Sender, deliver_due, http_post, scan_outbox
from settlement.worker import WorkerState, run_pass

from factories import PASSWORD
from portal_helpers import csrf_from, login

PAGE = "/merchant/integrations/"
PUBLIC = "93.184.215.14"  # a public address for the DNS mock; nothing is sent there
# The issue's examples, and other spellings of the same places.
ISSUE_EXAMPLES = [
    "127.0.0.1",
    "[::1]",
    "2130706433",
    "localhost",
    "169.254.169.254",
    "10.0.0.1",
]
OTHER_SPELLINGS = ["0x7f.1", "017700000001", "[::ffff:127.0.0.1]", "localhost.", "LOCALHOST"]
NOT_PUBLIC = "must point to a public internet address"


def _owner(client: FlaskClient) -> str:
    login(client, "owner@a.test", PASSWORD)
    return csrf_from(client, PAGE)


def _hooks(runtime: Runtime) -> list[Webhook]:
    with runtime.session_factory() as session:
        return list(session.scalars(select(Webhook).order_by(Webhook.id)))


def _deliveries(runtime: Runtime) -> list[WebhookDelivery]:
    with runtime.session_factory() as session:
        return list(session.scalars(select(WebhookDelivery).order_by(WebhookDelivery.id)))


def _invoice(runtime: Runtime, merchant_id: int) -> None:
    with runtime.session_factory() as session:
        invoices.create_invoice(
            session,
            runtime.settings,
            runtime.rates,
            invoices.InvoiceRequest(merchant_id, 250_000, PaymentMethod.KZTE),
        )
        session.commit()


@pytest.mark.parametrize("mode", [Mode.DEMO, Mode.PRODUCTION])
def test_the_issues_examples_are_refused_at_save_in_the_portal(
    client: FlaskClient, world: dict[str, int], runtime: Runtime, fake_dns: Any, mode: Mode
) -> None:
    runtime.settings = runtime.settings.with_overrides(mode=mode)
    scheme = "http" if mode is Mode.DEMO else "https"  # production wants https, as before
    fake_dns["shop.example"] = [PUBLIC]
    token = _owner(client)
    for host in ISSUE_EXAMPLES + OTHER_SPELLINGS:
        url = f"{scheme}://{host}:8080/hook"
        response = client.post(
            f"{PAGE}webhooks",
            data={"url": url, "event_types": ["invoice.created"], "csrf_token": token},
        )
        assert response.status_code == 400, url
        assert NOT_PUBLIC in response.get_data(as_text=True), url
    assert _hooks(runtime) == []

    # Saving a public one works; editing it to an internal address is refused the same way.
    good = f"{scheme}://shop.example/hook"
    created = client.post(
        f"{PAGE}webhooks",
        data={"url": good, "event_types": ["invoice.created"], "csrf_token": token},
    )
    assert created.status_code == 302
    [hook] = _hooks(runtime)
    for host in ISSUE_EXAMPLES:
        edited = client.post(
            f"{PAGE}webhooks/{hook.id}",
            data={
                "url": f"{scheme}://{host}/hook",
                "event_types": ["invoice.created"],
                "active": "on",
                "csrf_token": token,
            },
        )
        assert edited.status_code == 400 and NOT_PUBLIC in edited.get_data(as_text=True)
    assert [h.url for h in _hooks(runtime)] == [good]


def test_the_service_refuses_them_in_both_modes(runtime: Runtime, world: dict[str, int]) -> None:
    """What every caller (the portal, scripts, a future API) goes through."""
    for mode, scheme in ((Mode.DEMO, "http"), (Mode.PRODUCTION, "https")):
        settings = runtime.settings.with_overrides(mode=mode)
        for host in ISSUE_EXAMPLES + OTHER_SPELLINGS:
            with runtime.session_factory() as session:
                with pytest.raises(AddressRefusedError) as refused:
                    integrations.create_webhook(
                        session,
                        settings,
                        world["shop"],
                        f"{scheme}://{host}/h",
                        ["invoice.created"],
                    )
                assert refused.value.code == "not_public"


def test_the_api_cannot_set_webhook_urls(client: FlaskClient) -> None:
    """Webhooks are managed in the portal only; an API route for them would need the same
    check (pos.integrations.check_webhook_url) and tests of its own."""
    spec = client.get("/api/v1/openapi.json").get_json()
    assert spec["paths"] and not [path for path in spec["paths"] if "webhook" in path.lower()]


def test_refusals_are_translated_and_unresolvable_names_are_a_clear_error(
    client: FlaskClient, world: dict[str, int], fake_dns: Any
) -> None:
    fake_dns["internal.example"] = ["10.1.2.3"]
    token = _owner(client)
    client.set_cookie("lang", "ru")
    refused = client.post(
        f"{PAGE}webhooks",
        data={
            "url": "http://internal.example/h",
            "event_types": ["invoice.created"],
            "csrf_token": token,
        },
    )
    page = refused.get_data(as_text=True)
    assert refused.status_code == 400 and "публичный адрес в интернете" in page
    assert "10.1.2.3" not in page  # what the name resolved to is not told
    client.set_cookie("lang", "en")
    unresolved = client.post(
        f"{PAGE}webhooks",
        data={
            "url": "http://no-such-host.invalid/h",
            "event_types": ["invoice.created"],
            "csrf_token": token,
        },
    )
    assert unresolved.status_code == 400
    assert "host name does not resolve" in unresolved.get_data(as_text=True)


def test_a_name_resolving_to_loopback_is_refused_at_save_and_at_delivery(
    client: FlaskClient, world: dict[str, int], runtime: Runtime, receiver: Any, fake_dns: Any
) -> None:
    port = urlsplit(receiver.url).port
    url = f"http://rebind.example:{port}/hook"
    fake_dns["rebind.example"] = ["127.0.0.1"]
    token = _owner(client)
    refused = client.post(
        f"{PAGE}webhooks",
        data={"url": url, "event_types": ["invoice.created"], "csrf_token": token},
    )
    assert refused.status_code == 400 and NOT_PUBLIC in refused.get_data(as_text=True)

    # DNS rebinding: public when saved, loopback when the worker sends.
    fake_dns["rebind.example"] = [PUBLIC]
    saved = client.post(
        f"{PAGE}webhooks",
        data={"url": url, "event_types": ["invoice.created"], "csrf_token": token},
    )
    assert saved.status_code == 302
    fake_dns["rebind.example"] = [PUBLIC, "127.0.0.1"]  # one bad answer is enough
    _invoice(runtime, world["shop"])
    assert scan_outbox(runtime.session_factory) == 1
    assert run_pass(runtime, webhooks.duty(), WorkerState(), force=True)["webhook-deliver"] == 1
    fake_dns["rebind.example"] = ["127.0.0.1"]
    [delivery] = _deliveries(runtime)
    assert deliver_due(runtime.session_factory, now=delivery.next_attempt_at) == 1

    assert receiver.requests == []  # nothing reached the loopback receiver
    [delivery] = _deliveries(runtime)
    assert delivery.status is DeliveryStatus.PENDING and delivery.attempts == 2  # retried later
    assert delivery.last_status_code is None and delivery.last_error == DELIVERY_REFUSED
    [hook] = _hooks(runtime)
    page = client.get(f"{PAGE}webhooks/{hook.id}").get_data(as_text=True)
    assert "Not sent: the URL&#39;s host is not a public internet address." in page
    assert "127.0.0.1" not in page


def test_a_webhook_saved_before_the_fix_is_not_sent_to_loopback(
    runtime: Runtime, world: dict[str, int], receiver: Any
) -> None:
    with runtime.session_factory.begin() as session:  # as an old row: no check at save
        integrations.create_webhook(
            session,
            runtime.settings.with_overrides(webhook_allow_private_networks=True),
            world["shop"],
            receiver.url,
            ["invoice.created"],
        )
    _invoice(runtime, world["shop"])
    scan_outbox(runtime.session_factory)
    run_pass(runtime, webhooks.duty(), WorkerState(), force=True)  # the worker, setting off
    assert deliver_due(runtime.session_factory) == 0  # backing off
    assert receiver.requests == []
    [delivery] = _deliveries(runtime)
    assert delivery.last_error == DELIVERY_REFUSED and delivery.last_status_code is None
    result = http_post(receiver.url, b"{}", {}, 2.0)  # the default sender, directly
    assert result.status is None and result.error == DELIVERY_REFUSED
    assert receiver.requests == []


def test_delivery_connects_to_the_checked_address_with_the_original_host(
    runtime: Runtime,
    world: dict[str, int],
    receiver: Any,
    fake_dns: Any,
    loopback_sender: Sender,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One lookup per POST; the socket goes to its answer (no second lookup to rebind), and
    the Host header names the URL's host, not the address."""
    port = urlsplit(receiver.url).port
    fake_dns["pinned.example"] = ["127.0.0.1"]  # allowed: the setting is on for this test
    lookups: list[object] = []
    resolver = socket.getaddrinfo

    def counting(host: Any, *args: Any, **kwargs: Any) -> Any:
        lookups.append(host)
        return resolver(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", counting)
    url = f"http://pinned.example:{port}/hook"
    integrations.check_webhook_url(runtime.settings, url)
    lookups.clear()
    result = loopback_sender(url, b"{}", {"Content-Type": "application/json"}, 2.0)
    assert result.ok and lookups == ["pinned.example"]
    [got] = receiver.requests
    assert got.headers["Host"] == f"pinned.example:{port}" and got.path == "/hook"


class _Redirector:
    url = ""


@pytest.fixture
def redirector(receiver: Any) -> Iterator[_Redirector]:
    """Answers every POST with a 307 to the receiver (which must never see it)."""
    state = _Redirector()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            self.send_response(307)
            self.send_header("Location", receiver.url)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/moved"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_a_redirect_is_a_failed_delivery_never_followed(
    runtime: Runtime,
    world: dict[str, int],
    receiver: Any,
    redirector: _Redirector,
    loopback_sender: Sender,
) -> None:
    with runtime.session_factory.begin() as session:
        integrations.create_webhook(
            session, runtime.settings, world["shop"], redirector.url, ["invoice.created"]
        )
    _invoice(runtime, world["shop"])
    scan_outbox(runtime.session_factory)
    assert deliver_due(runtime.session_factory, sender=loopback_sender) == 1
    assert receiver.requests == []
    [delivery] = _deliveries(runtime)
    assert delivery.status is DeliveryStatus.PENDING and delivery.last_status_code == 307
    assert delivery.last_error == "HTTP 307: redirects are not followed"


def test_the_delivery_log_shows_no_response_body(
    client: FlaskClient, runtime: Runtime, world: dict[str, int], loopback_sender: Sender
) -> None:
    """Only the status code is kept: what an internal service would answer is never shown."""
    secret = "internal-secret-answer"

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            body = secret.encode()
            self.send_response(500)
            self.send_header("X-Leak", secret)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        token = _owner(client)
        url = f"http://127.0.0.1:{server.server_address[1]}/h"
        client.post(
            f"{PAGE}webhooks",
            data={"url": url, "event_types": ["invoice.created"], "csrf_token": token},
        )
        _invoice(runtime, world["shop"])
        scan_outbox(runtime.session_factory)
        deliver_due(runtime.session_factory, sender=loopback_sender)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
    [hook] = _hooks(runtime)
    page = client.get(f"{PAGE}webhooks/{hook.id}").get_data(as_text=True)
    assert "HTTP 500" in page and secret not in page


@pytest.fixture
def tls_receiver(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """An HTTPS receiver on 127.0.0.1 with a self-signed certificate for `pinned.example`
    (made with the openssl tool); yields its port and the certificate, to trust."""
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make a certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-subj", "/CN=pinned.example", "-addext", "subjectAltName=DNS:pinned.example",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            self.send_response(200 if self.headers["Host"].startswith("pinned.example") else 400)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], cert
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_tls_to_the_pinned_address_verifies_the_urls_host_name(
    tls_receiver: tuple[int, Path],
    fake_dns: Any,
    loopback_sender: Sender,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The socket goes to the checked IP; SNI and the certificate check use the URL's name."""
    port, cert = tls_receiver
    fake_dns["pinned.example"] = ["127.0.0.1"]  # allowed: the setting is on for this test
    # Trust our self-signed certificate only (the real code uses the system's CAs).
    real_context = ssl.create_default_context
    monkeypatch.setattr(ssl, "create_default_context", lambda: real_context(cafile=cert))
    good = loopback_sender(f"https://pinned.example:{port}/h", b"{}", {}, 3.0)
    assert good.ok, good.error
    # The same server by its address: the certificate does not name 127.0.0.1, so it fails.
    by_address = loopback_sender(f"https://127.0.0.1:{port}/h", b"{}", {}, 3.0)
    assert by_address.status is None and "CERTIFICATE_VERIFY_FAILED" in (by_address.error or "")
