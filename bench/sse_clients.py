"""Load generator for the checkout fan-out benchmark: many Server-Sent Event clients.

Run as its own process: `python -m bench.sse_clients HOST PORT IDS_FILE SETTLE_S DEADLINE_S`.
Opens one raw-socket HTTP/1.1 connection per invoice id to `/i/<id>/events` (asyncio; at most
`OPENING_AT_ONCE` opening at a time, as pages arrive over time), prints
`READY <n>` once `n` streams delivered their first state (all of them, or after SETTLE_S), waits
for a line on stdin (the parent has paid the invoices: the deadline starts now), then prints one
JSON line when every stream has seen "processing"/"settled" or DEADLINE_S passed:
{"opened", "initial", "paid": {id: CLOCK_MONOTONIC seconds}}. CLOCK_MONOTONIC is system-wide
on Linux, so the parent compares these times with its own.
"""

from __future__ import annotations

import asyncio
import json
import resource
import sys
import time
from pathlib import Path

PAID = (b'"status": "processing"', b'"status": "settled"')
# Pages arrive over time, not in one instant: at most this many are opening at once (connected,
# first state not read yet); each opens as soon as an earlier one has got its first state.
OPENING_AT_ONCE = 200
FIRST = b'"status": '


async def _client(
    host: str,
    port: int,
    invoice_id: str,
    initial: set[str],
    paid: dict[str, float],
    opened: list[int],
    opening: asyncio.Semaphore,
) -> None:
    await opening.acquire()
    holding = True
    try:
        reader, writer = await asyncio.open_connection(host, port)
    except OSError:
        opening.release()
        return
    opened.append(1)
    request = (
        f"GET /i/{invoice_id}/events HTTP/1.1\r\nHost: {host}:{port}\r\n"
        "Accept: text/event-stream\r\nUser-Agent: cryptocity-bench\r\n\r\n"
    )
    writer.write(request.encode())
    tail = b""
    try:
        while True:
            chunk = await reader.read(65536)
            if not chunk:
                return
            window = tail + chunk  # a marker may straddle two reads
            if invoice_id not in initial and FIRST in window:
                initial.add(invoice_id)
                opening.release()
                holding = False
            if any(marker in window for marker in PAID):
                paid[invoice_id] = time.monotonic()
                return
            tail = window[-64:]
    except OSError:
        return
    finally:
        if holding:
            opening.release()
        writer.close()


async def _main(host: str, port: int, ids: list[str], settle_s: float, deadline_s: float) -> None:
    initial: set[str] = set()
    paid: dict[str, float] = {}
    opened: list[int] = []
    opening = asyncio.Semaphore(OPENING_AT_ONCE)
    tasks = [
        asyncio.create_task(_client(host, port, i, initial, paid, opened, opening)) for i in ids
    ]
    settle_end = time.monotonic() + settle_s
    while len(initial) < len(ids) and time.monotonic() < settle_end:
        await asyncio.sleep(0.05)
    print(f"READY {len(initial)}", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    end = time.monotonic() + deadline_s
    while len(paid) < len(ids) and time.monotonic() < end:
        await asyncio.sleep(0.01)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    print(json.dumps({"opened": len(opened), "initial": len(initial), "paid": paid}), flush=True)


def main(argv: list[str]) -> int:
    host, port, ids_file, settle_s, deadline_s = argv
    ids = Path(ids_file).read_text().split()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, len(ids) + 256)), hard))
    asyncio.run(_main(host, int(port), ids, float(settle_s), float(deadline_s)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
