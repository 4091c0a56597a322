"""The drills: each one a fault (or a load) while invoices are created and paid, bounded in time
and count. What they leave behind is judged at the end against the chains (drills.audit); the
checks made in the middle of a drill (a reorged invoice must reopen, a double-spent one turn
invalid) are counted as wrong states when they fail."""

from __future__ import annotations

import contextlib
import os
import queue
import random
import shutil
import signal
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

from drills.context import WAIT_SECONDS, Ctx, Params
from drills.reorgs import reorgs
from drills.stack import Stack
from drills.traffic import Flow, Record, price, set_expiry
from pos.states import InvoiceStatus, PaymentMethod

__all__ = ["DRILLS", "Ctx", "Params"]

BTC, KZTE = PaymentMethod.BTC, PaymentMethod.KZTE


# --- the drills -----------------------------------------------------------------------------


def worker_kills(ctx: Ctx) -> None:
    """The worker SIGKILLed at random moments (at least `kills` times) while payments flow;
    a new one starts at once, so it dies while booting, scanning or posting alike."""
    drill = "worker kill -9"
    p, stack = ctx.params, ctx.stack
    kills = 0
    # Bounded: each payment takes well under 3 s, even while a worker is booting.
    deadline = time.monotonic() + p.kill_payments * (p.flow_every + 3.0) + WAIT_SECONDS
    with Flow(drill, ctx.api, ctx.shopper, p.flow_every, limit=p.kill_payments) as flow:
        while (kills < p.kills or flow.running) and time.monotonic() < deadline:
            time.sleep(random.uniform(*p.kill_gap))
            for worker in stack.live_workers():
                worker.kill()
            kills += 1
            stack.start_worker()
    ctx.book.note(drill, f"{kills} kills during {flow.count} payments")


def redis_faults(ctx: Ctx) -> None:
    drill = "redis FLUSHALL x2, kill -9"
    p, stack = ctx.params, ctx.stack
    with Flow(drill, ctx.api, ctx.shopper, p.flow_every), _healthz(stack) as health:
        for _ in range(2):
            time.sleep(p.redis_gap)
            stack.runtime.coordinator.client.flushall()
        time.sleep(p.redis_gap)
        pid = stack.redis_server.pid()
        assert pid is not None, "redis-server is not running"
        os.kill(pid, signal.SIGKILL)
        time.sleep(p.redis_down)
        for name in ("appendonlydir", "appendonly.aof"):  # back without its data, too
            path = stack.redis_server.directory / name
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
        stack.redis_server.start()
        time.sleep(p.redis_gap)
    ctx.book.note(drill, f"/healthz: {health.summary()}")


def bitcoin_node_outages(ctx: Ctx) -> None:
    """The node stopped three ways while invoices expire: paid ones must settle, never expire;
    unpaid ones expire once the node answers again. KZTE payments go on meanwhile.

    Before the SIGKILL the paid invoices are first seen by the watcher: a killed node loses its
    mempool, and a payment no node knows any more cannot hold back an expiry (the README's
    Reliability section says what happens to it); one the watcher saw keeps counting.
    """
    p, stack = ctx.params, ctx.stack
    chain = stack.btc
    faults: list[tuple[str, Callable[[], None], Callable[[], None], bool]] = [
        ("SIGTERM", chain.terminate, chain.start, False),
        ("SIGSTOP", chain.pause, chain.resume, False),
        ("SIGKILL", chain.kill, chain.start, True),
    ]
    for how, stop, back, seen_first in faults:
        drill = f"bitcoin node {how} {p.outage:.0f} s"
        ctx.miner.enabled.clear()
        expiring = _expiring(ctx, drill, BTC, p.outage / 2)
        if seen_first:
            for record in expiring:
                if record.txids:
                    status = ctx.wait_status(record, lambda s: s is InvoiceStatus.PROCESSING)
                    ctx.check(drill, status is InvoiceStatus.PROCESSING, f"seen: {status}")
        with Flow(drill, ctx.api, ctx.shopper, p.flow_every * 2, methods=(KZTE,)):
            with stack.btc_lock:
                stop()
            time.sleep(p.outage)
            with stack.btc_lock:
                back()
        ctx.miner.enabled.set()
        _wait_decided(ctx, drill, expiring)


def surfpool_stop(ctx: Ctx) -> None:
    p, stack = ctx.params, ctx.stack
    drill = f"surfpool SIGSTOP {p.outage:.0f} s"
    expiring = _expiring(ctx, drill, KZTE, p.outage / 2)
    with Flow(drill, ctx.api, ctx.shopper, p.flow_every * 2, methods=(BTC,)):
        stack.solana.process.send_signal(signal.SIGSTOP)
        try:
            time.sleep(p.outage)
        finally:
            stack.solana.process.send_signal(signal.SIGCONT)
    _wait_decided(ctx, drill, expiring)


def two_workers(ctx: Ctx) -> None:
    drill = "two workers"
    p, stack = ctx.params, ctx.stack
    while len(stack.live_workers()) < 2:
        stack.start_worker()
    with Flow(drill, ctx.api, ctx.shopper, p.flow_every):
        time.sleep(p.two_workers / 2)
        # The first one (the likely leader) stops gracefully; a third joins: a handover.
        stack.live_workers()[0].terminate()
        stack.start_worker()
        time.sleep(p.two_workers / 2)
    for extra in stack.live_workers()[1:]:
        extra.terminate()


def load(ctx: Ctx) -> None:
    p = ctx.params
    drill = f"{p.load_rate:.0f} invoices/s for {p.load_seconds:.0f} s"
    to_pay: queue.Queue[Record | None] = queue.Queue()

    def payer() -> None:
        while (record := to_pay.get()) is not None:
            ctx.shopper.pay(record)

    late: list[float] = []

    def create(n: int, due: float) -> None:
        if time.monotonic() - due > 1.0:
            late.append(time.monotonic() - due)  # the clients fell behind the rate
        try:
            record = ctx.api.create(drill, (BTC, KZTE)[n % 2], price(), timed=True)
        except Exception as exc:  # a refused create: the drill's failure, not a lost thread
            ctx.book.fail(drill, f"create {n} failed: {exc!r}")
            return
        if record is not None and n % p.load_pay_one_in == 0:
            to_pay.put(record)

    paying = threading.Thread(target=payer, name="load-payer", daemon=True)
    paying.start()
    total = int(p.load_rate * p.load_seconds)
    started = time.monotonic()
    # Open loop: request n is due at n / rate whatever the answers; enough clients that the
    # rate holds while answers take seconds.
    with ThreadPoolExecutor(max_workers=64, thread_name_prefix="load") as pool:
        for n in range(total):
            due = started + n / p.load_rate
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            pool.submit(create, n, due)
    to_pay.put(None)
    paying.join(120)
    elapsed = time.monotonic() - started
    ctx.book.note(
        drill,
        f"{total} creates answered within {elapsed:.1f} s; {len(late)} started >1 s behind "
        f"the rate (at most {max(late, default=0.0):.1f} s)",
    )


DRILLS: tuple[Callable[[Ctx], None], ...] = (
    worker_kills,
    redis_faults,
    bitcoin_node_outages,
    surfpool_stop,
    reorgs,
    two_workers,
    load,
)


# --- pieces ---------------------------------------------------------------------------------


def _expiring(ctx: Ctx, drill: str, method: PaymentMethod, seconds: float) -> list[Record]:
    """Invoices that expire `seconds` from now; every other one is paid first."""
    made: list[Record] = []
    for n in range(ctx.params.outage_invoices):
        record = ctx.api.create(drill, method, price())
        if record is None:
            continue
        if n % 2 == 0:
            ctx.shopper.pay(record)
        made.append(record)
    for record in made:
        set_expiry(ctx.stack, record, seconds)
    return made


def _wait_decided(ctx: Ctx, drill: str, records: list[Record]) -> None:
    """After an outage: paid ones must settle (never expire), unpaid ones expire."""
    undecided = (InvoiceStatus.NEW, InvoiceStatus.PROCESSING)
    for record in records:
        if record.txids:
            status = ctx.wait_status(record, lambda s: s not in undecided)
            ctx.check(drill, status is InvoiceStatus.SETTLED, f"{record.invoice_id} paid: {status}")
        else:
            status = ctx.wait_status(record, lambda s: s is not InvoiceStatus.NEW)
            ok = status is InvoiceStatus.EXPIRED
            ctx.check(drill, ok, f"{record.invoice_id} unpaid: {status}")


class _Health:
    """/healthz answers seen during a drill: how long it said 503."""

    def __init__(self) -> None:
        self.codes: list[tuple[float, int]] = []

    def summary(self) -> str:
        bad = [t for t, code in self.codes if code != 200]
        if not bad:
            return f"200 all along ({len(self.codes)} probes)"
        return f"{len(bad)} of {len(self.codes)} probes not 200, over {bad[-1] - bad[0]:.1f} s"


@contextlib.contextmanager
def _healthz(stack: Stack) -> Iterator[_Health]:
    health = _Health()
    stop = threading.Event()

    def probe() -> None:
        while not stop.wait(0.5):
            try:
                with urllib.request.urlopen(f"{stack.web_url}/healthz", timeout=3) as answer:
                    code = answer.status
            except urllib.error.HTTPError as exc:
                code = exc.code
                exc.close()
            except OSError:
                code = 0
            health.codes.append((time.monotonic(), code))

    thread = threading.Thread(target=probe, name="healthz", daemon=True)
    thread.start()
    try:
        yield health
    finally:
        stop.set()
        thread.join(10)
