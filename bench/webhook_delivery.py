"""Benchmark: webhook deliveries per second to a fast loopback receiver, through the worker's own
duty (settlement.webhooks run by settlement.duty_runner, as `cryptocity worker` runs it).

The receiver is a separate process on 127.0.0.1 (a threading HTTP server answering 200 at
once). `count` invoices of the scratch merchant each have one pending `invoice.created`
delivery (the outbox scan runs before the clock starts: it is not what is measured); the clock
runs from the worker's start until the database holds every delivery as `delivered`. Three runs:

  concurrent      the dispatcher as shipped (RECEIVER_CONCURRENCY POSTs in flight per receiver)
  with trickler   the same, while a second receiver trickles its answers (1 byte / 3 s) to
                  `slow` deliveries of another merchant: it must cost the fast receiver nothing
  one at a time   the same dispatcher limited to one POST in flight: the old sequential pace
                  without its 20-per-pass cap (the old dispatcher measured ~10/s)

Target: at least 200 deliveries/s to the fast receiver.
"""

from __future__ import annotations

import contextlib
import select
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

from sqlalchemy import func, update
from sqlalchemy import select as sql_select

from bench.common import Scratch, free_port, say, scratch
from pos import accounts, integrations, invoices
from pos.db import utcnow
from pos.demo_wallets import demo_solana_wallet
from pos.integrations import DeliveryStatus, Webhook, WebhookDelivery
from pos.runtime import Runtime
from pos.states import PaymentMethod
from settlement import webhook_dispatch, webhooks
from settlement.duty_runner import DutyRunner
from settlement.webhook_dispatch import Dispatcher
from settlement.worker import Duty, WorkerState

TAG = "webhooks"
TARGET_PER_S = 200.0
WAIT_S = 300.0
TRICKLE_GAP_S = 3.0

_RECEIVER = """
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")
    def log_message(self, *args):
        pass

server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
server.daemon_threads = True
server.request_queue_size = 128
server.serve_forever()
"""


@contextlib.contextmanager
def _fast_receiver() -> Iterator[str]:
    port = free_port()
    process = subprocess.Popen([sys.executable, "-c", _RECEIVER, str(port)])
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("the loopback receiver did not start") from None
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}/hook"
    finally:
        process.terminate()
        process.wait(10)


@contextlib.contextmanager
def _trickler() -> Iterator[str]:
    """Reads each request, then answers one byte every few seconds until cut off."""
    listener = socket.create_server(("127.0.0.1", 0), backlog=128)
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve(conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):
            conn.recv(65536)
            for byte in b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n":
                conn.sendall(bytes([byte]))
                readable, _, _ = select.select([conn], [], [], TRICKLE_GAP_S)
                if stop.is_set() or (readable and not conn.recv(1, socket.MSG_PEEK)):
                    return

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    acceptor = threading.Thread(target=accept, daemon=True)
    acceptor.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/slow"
    finally:
        stop.set()
        acceptor.join(5)
        listener.close()


def _pending(env: Scratch, url: str, merchant_id: int, count: int) -> None:
    """`count` invoices of the merchant, and one scanned, pending delivery each to `url`."""
    rt = env.rt
    with rt.session_factory.begin() as session:
        integrations.create_webhook(session, rt.settings, merchant_id, url, ["invoice.created"])
    with rt.session_factory() as session:
        for _ in range(count):
            request = invoices.InvoiceRequest(merchant_id, 100_000, PaymentMethod.KZTE)
            invoices.create_invoice(session, rt.settings, rt.rates, request)
        session.commit()
    while webhooks.scan_outbox(rt.session_factory):
        pass


def _delivered(env: Scratch, url: str) -> int:
    with env.rt.session_factory() as session:
        return int(
            session.scalar(
                sql_select(func.count())
                .select_from(WebhookDelivery)
                .join(Webhook, Webhook.id == WebhookDelivery.webhook_id)
                .where(Webhook.url == url, WebhookDelivery.status == DeliveryStatus.DELIVERED)
            )
            or 0
        )


def _reset(env: Scratch) -> None:
    """Every delivery pending and due again, for the next run."""
    with env.rt.session_factory.begin() as session:
        session.execute(
            update(WebhookDelivery).values(
                status=DeliveryStatus.PENDING,
                attempts=0,
                next_attempt_at=utcnow() - timedelta(seconds=1),
                delivered_at=None,
            )
        )


def _one_at_a_time() -> list[Duty]:
    """The webhook-deliver duty with its dispatcher limited to one POST in flight."""
    dispatcher: list[Dispatcher] = []

    def deliver(rt: Runtime) -> int:
        if not dispatcher:
            dispatcher.append(
                Dispatcher(rt.session_factory, webhooks.sender_for(rt.settings), per_receiver=1)
            )
        return dispatcher[0].pump()

    def close() -> None:
        for made in dispatcher:
            made.close()

    return [Duty("webhook-deliver", 1.0, deliver, leader_only=True, close=close)]


def _run(env: Scratch, url: str, count: int, duties: list[Duty]) -> dict[str, Any]:
    """Run the duties in worker threads until `count` deliveries to `url` are delivered."""
    runner = DutyRunner(env.rt, duties, WorkerState())
    thread = threading.Thread(target=runner.run, name="bench-worker", daemon=True)
    began = time.perf_counter()
    thread.start()
    try:
        deadline = time.monotonic() + WAIT_S
        while (done := _delivered(env, url)) < count:
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {done}/{count} delivered within {WAIT_S:.0f} s")
            time.sleep(0.02)
        elapsed = time.perf_counter() - began
    finally:
        runner.stop()
        thread.join(30)
        runner.close_duties()
    return {"deliveries": count, "seconds": round(elapsed, 2), "per_s": round(count / elapsed, 1)}


def run(count: int = 5_000, slow: int = 20) -> dict[str, Any]:
    """Deliver `count` webhooks three ways (see the module docstring)."""
    say(TAG, f"{count} deliveries to a fast loopback receiver (a separate process)")
    with scratch(TAG) as env, _fast_receiver() as fast_url:
        # The receivers are on loopback: WEBHOOK_ALLOW_PRIVATE_NETWORKS, explicitly (a warning).
        env.settings = env.settings.with_overrides(webhook_allow_private_networks=True)
        env.rt.settings = env.settings
        with env.rt.session_factory() as session:
            other = accounts.create_merchant(
                session, env.settings, "Slow Shop", solana_wallet=demo_solana_wallet("slow")
            )
            session.commit()
            other_id = other.id
        _pending(env, fast_url, env.merchant_id, count)
        concurrent = _run(env, fast_url, count, webhooks.duty())
        say(TAG, f"  concurrent: {concurrent['per_s']:,.0f}/s")
        with _trickler() as slow_url:
            _reset(env)
            _pending(env, slow_url, other_id, slow)
            trickling = _run(env, fast_url, count, webhooks.duty())
            trickling["slow_deliveries"] = slow
        say(TAG, f"  with a trickling receiver alongside: {trickling['per_s']:,.0f}/s")
        with env.rt.session_factory.begin() as session:  # the slow webhook off again
            session.execute(update(Webhook).where(Webhook.url == slow_url).values(active=False))
        _reset(env)
        sample = min(count, 500)
        _only_first(env, sample)
        sequential = _run(env, fast_url, sample, _one_at_a_time())
        say(TAG, f"  one at a time: {sequential['per_s']:,.0f}/s")
    return {
        "receiver": "loopback, separate process (ThreadingHTTPServer)",
        "per_receiver_limit": webhook_dispatch.RECEIVER_CONCURRENCY,
        "deadline_s": webhook_dispatch.DEADLINE_SECONDS,
        "concurrent": concurrent,
        "with_trickler": trickling,
        "one_at_a_time": sequential,
        "target": f">= {TARGET_PER_S:.0f}/s",
        "met": concurrent["per_s"] >= TARGET_PER_S and trickling["per_s"] >= TARGET_PER_S,
    }


def _only_first(env: Scratch, keep: int) -> None:
    """Leave only the first `keep` deliveries due (the rest delivered already)."""
    with env.rt.session_factory.begin() as session:
        ids = session.scalars(sql_select(WebhookDelivery.id).order_by(WebhookDelivery.id)).all()
        session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id.in_(ids[keep:]))
            .values(status=DeliveryStatus.FAILED)
        )
