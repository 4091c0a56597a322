"""Webhooks are delivered concurrently, at most a few at a time per receiver, each within a
wall-clock deadline: a receiver that trickles its answer is cut there, and delays nobody else."""

from __future__ import annotations

import select
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from sqlalchemy import select as sql_select
from worker_helpers import wait_for

from pos import integrations, invoices
from pos.integrations import DeliveryStatus, WebhookDelivery
from pos.runtime import Runtime
from pos.states import PaymentMethod
from settlement import webhook_dispatch, webhooks
from settlement.webhooks import Sender, deliver_due, scan_outbox
from settlement.worker import WorkerState, run_pass

ANSWER = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"


@dataclass
class Trickler:
    """A receiver that reads the request, then sends its answer one byte every `gap` seconds,
    noting how many bytes went out before the sender hung up."""

    gap: float
    url: str = ""
    requests: int = 0
    sent_when_cut: list[int] = field(default_factory=list)
    completed: int = 0
    stop: threading.Event = field(default_factory=threading.Event)

    def serve(self, conn: socket.socket) -> None:
        with conn:
            request = b""
            while b"\r\n\r\n" not in request and not self.stop.is_set():
                chunk = conn.recv(65536)
                if not chunk:
                    return
                request += chunk
            self.requests += 1
            sent = 0
            try:
                while sent < len(ANSWER) and not self.stop.is_set():
                    conn.sendall(ANSWER[sent : sent + 1])
                    sent += 1
                    # Wait out the gap, noticing a sender that hung up meanwhile.
                    readable, _, _ = select.select([conn], [], [], self.gap)
                    if readable and not conn.recv(65536, socket.MSG_PEEK):
                        raise ConnectionAbortedError
            except OSError:  # closed (FIN) or reset (RST): either way, cut
                self.sent_when_cut.append(sent)
                return
            if sent == len(ANSWER):
                self.completed += 1


@pytest.fixture
def trickler() -> Iterator[Trickler]:
    state = Trickler(gap=3.0)
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    state.url = f"http://127.0.0.1:{listener.getsockname()[1]}/slow"
    handlers: list[threading.Thread] = []

    def accept() -> None:
        while not state.stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            conn.settimeout(None)
            handler = threading.Thread(target=state.serve, args=(conn,), daemon=True)
            handler.start()
            handlers.append(handler)

    acceptor = threading.Thread(target=accept, daemon=True)
    acceptor.start()
    try:
        yield state
    finally:
        state.stop.set()
        acceptor.join(5)
        for handler in handlers:
            handler.join(5)
        listener.close()


@dataclass
class SlowReceiver:
    """Answers 200 after `delay` seconds; notes the most requests it had in flight at once."""

    delay: float
    url: str = ""
    received: int = 0
    in_flight: int = 0
    most_in_flight: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


@pytest.fixture
def slow_receiver() -> Iterator[SlowReceiver]:
    state = SlowReceiver(delay=0.2)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            with state.lock:
                state.in_flight += 1
                state.most_in_flight = max(state.most_in_flight, state.in_flight)
            time.sleep(state.delay)
            with state.lock:
                state.in_flight -= 1
                state.received += 1
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            return

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


def _webhook(runtime: Runtime, merchant_id: int, url: str) -> None:
    with runtime.session_factory.begin() as session:
        integrations.create_webhook(
            session, runtime.settings, merchant_id, url, ["invoice.created"]
        )


def _invoices(runtime: Runtime, merchant_id: int, count: int) -> None:
    with runtime.session_factory() as session:
        for _ in range(count):
            invoices.create_invoice(
                session,
                runtime.settings,
                runtime.rates,
                invoices.InvoiceRequest(merchant_id, 250_000, PaymentMethod.KZTE),
            )
        session.commit()


def _deliveries(runtime: Runtime, url: str) -> list[WebhookDelivery]:
    with runtime.session_factory() as session:
        return list(
            session.scalars(
                sql_select(WebhookDelivery)
                .join(integrations.Webhook)
                .where(integrations.Webhook.url == url)
            )
        )


def test_a_trickling_receiver_is_cut_at_the_deadline_and_delays_no_one_else(
    runtime: Runtime,
    world: dict[str, int],
    receiver: Any,
    trickler: Trickler,
    loopback_sender: Sender,
) -> None:
    # The slow receiver's event comes first, as it would in a one-at-a-time dispatcher's queue.
    _webhook(runtime, world["shop"], trickler.url)
    _invoices(runtime, world["shop"], 1)
    _webhook(runtime, world["other"], receiver.url)
    _invoices(runtime, world["other"], 30)

    stop = threading.Event()
    duties, state = webhooks.duty(), WorkerState()

    def work() -> None:  # the worker's passes, in a thread of their own
        while not stop.is_set():
            run_pass(runtime, duties, state)
            stop.wait(0.05)

    loop = threading.Thread(target=work, daemon=True)
    loop.start()
    try:
        wait_for(lambda: trickler.requests == 1, "the trickling receiver's request")
        # Its answer takes 3 s a byte (a minute in all); the other receiver gets everything.
        wait_for(lambda: len(receiver.requests) == 30, "the fast receiver's 30 deliveries")
        assert not trickler.sent_when_cut  # all of them while the slow answer was still coming
        wait_for(lambda: bool(trickler.sent_when_cut), "the trickling request to be cut", 30)
    finally:
        stop.set()
        loop.join(30)
        for duty in duties:
            if duty.close is not None:
                duty.close()
    # Cut at the 4 s deadline: before its third byte (due at 6 s), long before the end (3 min).
    assert len(trickler.sent_when_cut) == 1 and trickler.sent_when_cut[0] <= 2
    assert trickler.completed == 0
    [slow] = _deliveries(runtime, trickler.url)
    assert slow.status is DeliveryStatus.PENDING and slow.attempts == 1  # retried later
    assert slow.last_status_code is None and "TimeoutError" in (slow.last_error or "")
    fast = _deliveries(runtime, receiver.url)
    assert len(fast) == 30 and {d.status for d in fast} == {DeliveryStatus.DELIVERED}


def test_deliveries_to_one_receiver_run_concurrently_up_to_its_limit(
    runtime: Runtime, world: dict[str, int], slow_receiver: SlowReceiver, loopback_sender: Sender
) -> None:
    _webhook(runtime, world["shop"], slow_receiver.url)
    _invoices(runtime, world["shop"], 24)
    scan_outbox(runtime.session_factory)
    assert deliver_due(runtime.session_factory, sender=loopback_sender) == 24
    assert slow_receiver.received == 24
    assert 1 < slow_receiver.most_in_flight <= webhook_dispatch.RECEIVER_CONCURRENCY
    delivered = _deliveries(runtime, slow_receiver.url)
    assert {d.status for d in delivered} == {DeliveryStatus.DELIVERED}


def test_the_deadline_covers_the_whole_answer_not_each_read(
    trickler: Trickler, loopback_sender: Sender
) -> None:
    trickler.gap = 0.5  # each byte well inside a per-read timeout of 2 s
    result = loopback_sender(trickler.url, b"{}", {"Content-Type": "application/json"}, 2.0)
    assert result.status is None and "TimeoutError" in (result.error or "")
    wait_for(lambda: bool(trickler.sent_when_cut), "the cut to reach the receiver", 10)
    assert trickler.sent_when_cut[0] < len(ANSWER) and trickler.completed == 0
