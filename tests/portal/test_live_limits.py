"""Live pages (SSE) under load: caps per client address and per invoice, released on close and
expiring after a crash, and the served portal (gevent workers, a real `cryptocity web`
subprocess) answering /healthz and delivering "paid" while hundreds of streams are open."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from flask import Flask
from werkzeug.test import TestResponse

from merchant_portal import live_limits
from pos import invoices
from pos.models import Invoice
from pos.runtime import Runtime
from pos.states import InvoiceStatus

InvoiceMaker = Callable[..., str]


def _app(runtime: Runtime, per_ip: int, per_invoice: int) -> Flask:
    from merchant_portal import create_app

    runtime.settings = runtime.settings.with_overrides(
        live_streams_per_ip=per_ip, live_streams_per_invoice=per_invoice
    )
    return create_app(runtime=runtime, test_config={"TESTING": True, "SSE_LIFETIME_SECONDS": 30})


def _open(app: Flask, invoice_id: str, ip: str = "127.0.0.1") -> TestResponse:
    return app.test_client().get(
        f"/i/{invoice_id}/events", buffered=False, environ_base={"REMOTE_ADDR": ip}
    )


def test_streams_over_the_per_ip_cap_get_429_and_a_closed_one_frees_its_slot(
    runtime: Runtime, make_invoice: InvoiceMaker, world: dict[str, int]
) -> None:
    app = _app(runtime, per_ip=2, per_invoice=50)
    ids = [make_invoice(world["shop"]) for _ in range(3)]
    first, second = _open(app, ids[0]), _open(app, ids[1])
    assert first.status_code == second.status_code == 200
    refused = _open(app, ids[2])
    assert refused.status_code == 429
    assert int(refused.headers["Retry-After"]) > 0
    assert refused.headers["X-Refused"] == "per_ip"
    assert _open(app, ids[2], ip="10.9.9.9").status_code == 200  # another address: its own cap
    # The polling fallback the refused page turns to still answers.
    polled = app.test_client().get(f"/i/{ids[2]}/status.json").json
    assert polled is not None and polled["status"] == "new"
    first.close()  # the page went away
    again = _open(app, ids[2])
    assert again.status_code == 200
    second.close()
    again.close()


def test_streams_over_the_per_invoice_cap_get_429_whatever_their_address(
    runtime: Runtime, make_invoice: InvoiceMaker, world: dict[str, int]
) -> None:
    app = _app(runtime, per_ip=100, per_invoice=2)
    invoice_id, other_id = make_invoice(world["shop"]), make_invoice(world["shop"])
    opened = [_open(app, invoice_id, ip=f"10.0.0.{n}") for n in (1, 2)]
    assert [r.status_code for r in opened] == [200, 200]
    refused = _open(app, invoice_id, ip="10.0.0.3")
    assert refused.status_code == 429 and refused.headers["X-Refused"] == "per_invoice"
    assert _open(app, other_id, ip="10.0.0.3").status_code == 200  # another invoice is free
    opened[0].close()
    assert _open(app, invoice_id, ip="10.0.0.3").status_code == 200


def test_a_slot_left_by_a_killed_process_expires_by_itself(runtime: Runtime) -> None:
    """No release ever runs (the process died): the member's score ends its count."""
    taken = live_limits.take_slot(runtime.coordinator, "10.1.1.1", "inv-x", 1, 10, 1, 0)
    assert isinstance(taken, live_limits.StreamSlot)
    assert (
        live_limits.take_slot(runtime.coordinator, "10.1.1.1", "inv-y", 1, 10, 1, 0)
        is live_limits.Refusal.PER_IP
    )
    deadline = time.monotonic() + 5
    while True:
        again = live_limits.take_slot(runtime.coordinator, "10.1.1.1", "inv-y", 1, 10, 1, 0)
        if isinstance(again, live_limits.StreamSlot):
            break
        assert time.monotonic() < deadline, "the dead stream's slot never expired"
        time.sleep(0.2)
    ttl = runtime.coordinator.client.ttl(live_limits.ip_key("10.1.1.1"))
    assert 0 < ttl <= 1  # the keys themselves do not outlive their members


# --- a real server ---------------------------------------------------------------------------

STREAMS = 600  # more than the 512 threads a gthread worker had: one worker, no threads
WORKERS = 1


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _get(url: str, timeout: float = 10.0) -> tuple[int, float]:
    started = time.monotonic()
    with urllib.request.urlopen(url, timeout=timeout) as response:
        response.read()
        return response.status, time.monotonic() - started


@contextmanager
def _web_server(runtime: Runtime, home: Path) -> Iterator[str]:
    settings = runtime.settings
    port = _free_port()
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("XDG_RUNTIME_DIR", "HOME")  # where gunicorn's default socket would go
    }
    env.update(
        {
            "HOME": str(home),
            "CRYPTOCITY_MODE": "demo",
            "CRYPTOCITY_DATA_DIR": str(settings.data_dir),
            "DATABASE_URL": settings.database_url,
            "REDIS_URL": settings.redis_url or "",
            "KZTE_MINT": settings.kzte_mint or "",
            "SECRET_KEY": settings.secret_key,
            "LIVE_STREAMS_PER_IP": str(STREAMS * 2),
            "LIVE_STREAMS_PER_INVOICE": str(STREAMS * 2),
        }
    )
    log_path = settings.data_dir / "web.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                *(sys.executable, "-m", "pos.cli", "web", "--workers", str(WORKERS)),
                *("--connections", "2000", "--bind", f"127.0.0.1:{port}"),
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, log_path.read_text()
            try:
                _get(f"{base}/healthz", timeout=2)
                break
            except OSError:
                assert time.monotonic() < deadline, log_path.read_text()
                time.sleep(0.2)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def _stream(port: int, invoice_id: str, opened: list[int], paid: list[int]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        f"GET /i/{invoice_id}/events HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        "Accept: text/event-stream\r\n\r\n".encode()
    )
    seen = b""
    first = True
    try:
        while True:
            chunk = await reader.read(65536)
            if not chunk:
                return
            seen = seen[-256:] + chunk
            if first and b'"status": "new"' in seen:
                first = False
                opened.append(1)
            if b'"status": "processing"' in seen:
                paid.append(1)
                return
    finally:
        writer.close()


def _settle(runtime: Runtime, invoice_ids: list[str]) -> None:
    """Every invoice paid in one commit, published as the watcher would."""
    with runtime.session_factory() as session:
        for invoice_id in invoice_ids:
            invoice = session.get(Invoice, invoice_id)
            assert invoice is not None
            invoices.set_amount_paid(session, invoice, invoice.amount_due_atomic)
            invoices.change_status(session, invoice, InvoiceStatus.PROCESSING)
        session.commit()
        invoices.publish_after_commit(runtime.session_factory, runtime.coordinator, session)


@pytest.mark.slow
def test_the_served_portal_answers_while_hundreds_of_streams_are_open(
    runtime: Runtime, make_invoice: InvoiceMaker, world: dict[str, int], tmp_path: Path
) -> None:
    invoice_ids = [make_invoice(world["shop"]) for _ in range(STREAMS // 100)]
    home = tmp_path / "home"
    home.mkdir()
    with _web_server(runtime, home) as base:
        port = int(base.rsplit(":", 1)[1])

        async def scenario() -> tuple[int, int, list[float]]:
            opened: list[int] = []
            paid: list[int] = []
            tasks = [
                asyncio.create_task(_stream(port, invoice_ids[n % len(invoice_ids)], opened, paid))
                for n in range(STREAMS)
            ]
            deadline = time.monotonic() + 60
            while len(opened) < STREAMS and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            held = len(opened)  # streams the one worker holds open at once
            health = [(await asyncio.to_thread(_get, f"{base}/healthz"))[1] for _ in range(5)]
            await asyncio.to_thread(_settle, runtime, invoice_ids)
            await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), timeout=30)
            return held, len(paid), health

        held, paid, health_s = asyncio.run(scenario())
        control_socket = runtime.settings.data_dir / "gunicorn.ctl"
        assert control_socket.is_socket()  # in the data dir while the server runs
    assert held == STREAMS
    assert max(health_s) < 5.0, health_s  # the portal kept answering meanwhile
    assert paid == STREAMS  # and every open page was told
    assert not (home / ".gunicorn").exists()  # never the per-user default shared by all


# --- what the gevent workers rely on ---------------------------------------------------------


def test_many_live_pages_wait_for_a_redis_connection_instead_of_failing(redis_url: str) -> None:
    """More callers at once than the pool has connections (a worker's live pages opening in a
    burst): each waits its turn; redis-py's default pool refused the 101st outright."""
    from concurrent.futures import ThreadPoolExecutor

    from pos.coordination import POOL_CONNECTIONS, connect

    client = connect(redis_url)
    try:
        with ThreadPoolExecutor(max_workers=POOL_CONNECTIONS + 50) as pool:
            # Each call holds its connection for 0.3 s, so they all overlap.
            results = list(
                pool.map(lambda n: client.blpop([f"cc:test:nothing:{n}"], timeout=0.3), range(150))
            )
        assert results == [None] * 150
    finally:
        client.close()


def _run_python(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_cli_imports_no_database_driver_before_the_worker_patches() -> None:
    """psycopg chooses its (blocking or cooperative) wait function when first imported: that
    must happen in the gevent worker, after gunicorn's monkey-patching, never in the master."""
    out = _run_python(
        "import sys, pos.cli, merchant_portal.server; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('psycopg', 'psycopg2')))"
    )
    assert out.strip() == "[]"


def test_scrypt_does_not_stall_a_gevent_worker() -> None:
    """A password check takes ~0.1 s of CPU; in a gevent worker it runs on a real thread, so
    the worker's other greenlets (live pages, /login GETs) keep being served meanwhile."""
    out = _run_python(
        "from gevent import monkey; monkey.patch_all()\n"
        "import time, gevent\n"
        "from pos import passwords\n"
        "stored = passwords.hash_password('a long enough password')\n"
        "gaps = []\n"
        "def tick():\n"
        "    for _ in range(60):\n"
        "        started = time.monotonic(); gevent.sleep(0.005)\n"
        "        gaps.append(time.monotonic() - started)\n"
        "ticker = gevent.spawn(tick); gevent.sleep(0)\n"
        "for _ in range(3): assert not passwords.verify_password(stored, 'wrong')\n"
        "ticker.join(); print(max(gaps))\n"
    )
    assert float(out) < 0.05, out  # inline, each check would stall the loop ~0.1 s
