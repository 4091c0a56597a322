"""Benchmark: checkout fan-out — many open live pages, one burst of payments, until all see it.

`clients` open KZTE invoices each get one Server-Sent Events client on `/i/<id>/events` (the
checkout page's live stream), from a separate load-generator process (`bench.sse_clients`,
asyncio raw sockets on 127.0.0.1). Once the streams are open, this process moves every invoice
to `processing` in one transaction (as a block confirming them all would), commits, and
publishes the events to Redis; the clock runs from the commit to the moment the last client
read "processing". Target: all clients within 1 s.

Two server configurations are measured: the shipped `cryptocity web` (2 gthread workers x 512
threads, so at most 1,024 streams are served at once) and gunicorn with enough threads for one
stream per client (same app, `gunicorn -k gthread --threads N`). A client closes its connection
once it has seen the payment; the server notices at its next write (the 15 s heartbeat), so in
the shipped configuration queued clients are served about every 15 s.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from typing import Any

from bench.common import (
    VENV_BIN,
    Scratch,
    open_invoices,
    percentile,
    profile_top,
    say,
    scratch,
    web_server,
)
from pos import invoices
from pos.models import Invoice
from pos.states import InvoiceStatus, PaymentMethod

TAG = "sse"
TARGET_S = 1.0
PRICE_TIYN = 1_000_00


def _raise_fd_limit() -> None:
    # Servers started from here inherit it: 1,000 streams need more than the usual 1,024 fds.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 65_536)), hard))


def _open_invoices(env: Scratch, count: int) -> list[str]:
    return [i.id for i in open_invoices(env, count, PaymentMethod.KZTE, PRICE_TIYN)]


def _pay_all(env: Scratch, ids: list[str]) -> tuple[float, float]:
    """Every invoice to `processing` in one commit, then published; (commit time, publish s)."""
    with env.rt.session_factory() as session:
        for invoice_id in ids:
            invoice = session.get(Invoice, invoice_id)
            assert invoice is not None
            invoices.set_amount_paid(session, invoice, invoice.amount_due_atomic)
            invoices.change_status(session, invoice, InvoiceStatus.PROCESSING)
        session.commit()
        committed = time.monotonic()
        invoices.publish_after_commit(env.rt.session_factory, env.rt.coordinator, session)
        return committed, time.monotonic() - committed


def _profile_publish(env: Scratch, count: int) -> list[str]:
    """cProfile of the commit + publish step for `count` more invoices (the server side is
    explained by the variants themselves: a stream holds a thread)."""
    ids = _open_invoices(env, count)
    return profile_top(lambda: _pay_all(env, ids), 15)


def _variant(
    env: Scratch, ids: list[str], argv: list[str] | None, settle_s: float, deadline_s: float
) -> dict[str, Any]:
    ids_file = env.directory / "ids.txt"
    ids_file.write_text("\n".join(ids))
    with web_server(env, argv=argv) as server:
        host, port = server.base_url.removeprefix("http://").split(":")
        command = [
            sys.executable,
            "-m",
            "bench.sse_clients",
            host,
            port,
            str(ids_file),
            str(settle_s),
            str(deadline_s),
        ]
        clients = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        try:
            assert clients.stdout is not None
            ready = clients.stdout.readline().split()
            initial = int(ready[1]) if len(ready) == 2 else 0
            say(TAG, f"  {initial}/{len(ids)} streams delivered their first state; paying all")
            committed, publish_s = _pay_all(env, ids)
            out, _err = clients.communicate(timeout=deadline_s + 60)
        finally:
            if clients.poll() is None:
                clients.kill()
                clients.wait()
    report = json.loads(out.strip().splitlines()[-1])
    delays = [seen - committed for seen in report["paid"].values()]
    all_seen = len(delays) == len(ids)
    return {
        "clients": len(ids),
        "connections_opened": report["opened"],
        "streams_served_at_payment": initial,
        "streams_served_by_end": report["initial"],
        "saw_paid": len(delays),
        "all_seen_s": round(max(delays), 3) if all_seen else None,
        "p50_s": round(percentile(delays, 50), 3) if delays else None,
        "p99_s": round(percentile(delays, 99), 3) if delays else None,
        "publish_s": round(publish_s, 3),
        "deadline_s": deadline_s,
        "met": all_seen and max(delays) < TARGET_S,
    }


def run(clients: int = 1_000, settle_s: float = 15.0, deadline_s: float = 20.0) -> dict[str, Any]:
    """Measure fan-out to `clients` live checkout streams under two server configurations."""
    _raise_fd_limit()
    # Connections are not spread evenly over the workers: each may take nearly all of them.
    threads = clients + 16
    variants: list[tuple[str, list[str] | None]] = [
        ("shipped: cryptocity web, 2 workers x 512 threads", None),
        (
            f"gunicorn -k gthread -w 2 --threads {threads}",
            [
                str(VENV_BIN / "gunicorn"),
                "-k",
                "gthread",
                "-w",
                "2",
                "--threads",
                str(threads),
                "--worker-connections",
                str(clients + 100),
                "merchant_portal:create_app()",
            ],
        ),
    ]
    results: dict[str, Any] = {"clients": clients, "target": f"all within {TARGET_S:.0f} s"}
    rows = []
    for label, argv in variants:
        with scratch(TAG) as env:
            ids = _open_invoices(env, clients)
            say(TAG, f"{label}: {clients} SSE clients (separate process)")
            row = {"server": label, **_variant(env, ids, argv, settle_s, deadline_s)}
            say(TAG, f"  {row}")
            rows.append(row)
            if not row["met"] and "profile_publish" not in results:
                results["profile_publish"] = _profile_publish(env, min(clients, 200))
    results["variants"] = rows
    results["met"] = rows[0]["met"]
    return results


if __name__ == "__main__":
    print(json.dumps(run(int(sys.argv[1]) if len(sys.argv) > 1 else 1_000), indent=2))
