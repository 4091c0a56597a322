"""Benchmark: Solana RPC calls per minute for watching open KZTE invoices, old way and new.

Both strategies of the real `KzteWatcher` run in the same process against the same sandbox
surfpool validator (127.0.0.1), the same database and Redis (bench.common.scratch), and the
same open invoices; calls are counted at the adapter (`CallStats`: HTTP requests per JSON-RPC
method, retries included). Each measurement is a fresh watcher driven like the worker drives
it — one pass a second — for `passes` passes; every invoice is fresh (hot tier), nothing is
paid, so the numbers are the cost of watching alone (a payment adds one getTransaction and its
share of the batched getSignatureStatuses, the same in both strategies).

  reference     one getSignaturesForAddress per open reference at the schedule's rate
                (hot: every second), at most 400 a pass — the former strategy
  destination   one per destination token account per poll, plus the reference sweep of
                unpaid invoices (each every 30 s, at most 10 a pass)

30 passes cover one sweep cycle exactly (every reference swept once), so the sweep's share is
its steady rate; shorter (quick) runs overstate it at small sizes. Last, the largest size is
spread over many merchants (`direct` mode: one destination per merchant token account).
"""

from __future__ import annotations

import statistics
import time
from collections import Counter
from datetime import timedelta
from typing import Any

from solders.keypair import Keypair
from sqlalchemy import select, update

from bench.common import Scratch, say, scratch
from pos import accounts, invoices
from pos.db import utcnow
from pos.invoices import InvoiceRequest
from pos.models import Invoice, SettlementMode
from pos.states import PaymentMethod
from sandbox.solana.validator import start_validator
from settlement.kzte_watcher import KzteWatcher, Schedule, Strategy

PRICE_TIYN = 1000_00
PASS_SECONDS = 1.0  # the worker's duty interval
CREATE_BATCH = 1000


def _progress(message: str) -> None:
    say("kzte-rpc", message)


def _top_up(env: Scratch, count: int) -> None:
    """Create open KZTE invoices of the scratch merchant until there are `count`."""
    rt = env.rt
    with rt.session_factory() as session:
        have = len(session.scalars(select(Invoice.id)).all())
    while have < count:
        batch = min(CREATE_BATCH, count - have)
        with rt.session_factory() as session:
            for _ in range(batch):
                request = InvoiceRequest(env.merchant_id, PRICE_TIYN, PaymentMethod.KZTE)
                invoices.create_invoice(session, rt.settings, rt.rates, request)
            session.commit()
            invoices.publish_after_commit(rt.session_factory, rt.coordinator, session)
        have += batch


def _keep_hot(env: Scratch) -> None:
    """Every invoice a minute old: in the hot tier (under 10 min), open for an hour, and old
    enough for the sweep (it skips invoices younger than one sweep interval) — a run at
    10,000 takes minutes, and each measurement must see the same steady state."""
    now = utcnow()
    with env.rt.session_factory() as session:
        session.execute(
            update(Invoice).values(
                created_at=now - timedelta(minutes=1), expires_at=now + timedelta(hours=1)
            )
        )
        session.commit()


def _spread(env: Scratch, merchants: int) -> None:
    """Point the open invoices at `merchants` merchants' wallets, round robin (direct mode)."""
    rt = env.rt
    with rt.session_factory() as session:
        wallets = []
        for n in range(merchants):
            wallet = str(Keypair().pubkey())
            accounts.create_merchant(
                session,
                rt.settings,
                f"Bench Shop {n}",
                solana_wallet=wallet,
                settlement_mode=SettlementMode.DIRECT,
            )
            wallets.append(wallet)
        ids = session.scalars(select(Invoice.id).order_by(Invoice.id)).all()
        for n, invoice_id in enumerate(ids):
            session.execute(
                update(Invoice)
                .where(Invoice.id == invoice_id)
                .values(kzte_recipient=wallets[n % merchants])
            )
        session.commit()


def _measure(env: Scratch, strategy: Strategy, passes: int) -> dict[str, Any]:
    with env.rt.session_factory() as session:
        recipients = session.execute(select(Invoice.kzte_recipient)).scalars().all()
    invoice_count, groups = len(recipients), set(recipients)
    watcher = KzteWatcher(Schedule(), strategy=strategy)
    durations: list[float] = []
    destination_reads = reference_reads = 0
    started = time.monotonic()
    for _ in range(passes):
        began = time.monotonic()
        watcher.run(env.rt)
        durations.append(time.monotonic() - began)
        report = watcher.last_report
        destination_reads += report.destinations
        reference_reads += report.references
        time.sleep(max(0.0, PASS_SECONDS - (time.monotonic() - began)))
    minutes = (time.monotonic() - started) / 60
    calls: Counter[str] = watcher.stats.calls
    # How often one invoice's payment can be noticed: its reference's (old) or its
    # destination's (new) read interval.
    feeds, reads = (
        (len(groups), destination_reads)
        if strategy is Strategy.DESTINATION
        else (invoice_count, reference_reads)
    )
    return {
        "strategy": strategy.value,
        "passes": passes,
        "calls_per_minute": round(sum(calls.values()) / minutes),
        "by_method_per_minute": {m: round(c / minutes) for m, c in sorted(calls.items())},
        "destination_reads_per_minute": round(destination_reads / minutes),
        "reference_reads_per_minute": round(reference_reads / minutes),
        "seconds_between_reads_of_an_invoice": round(feeds * minutes * 60 / reads, 1)
        if reads
        else None,
        "pass_ms_p50": round(statistics.median(durations) * 1000, 1),
        "pass_ms_max": round(max(durations) * 1000, 1),
    }


def run(
    sizes: tuple[int, ...] = (10, 1_000, 10_000), passes: int = 30, direct_merchants: int = 100
) -> dict[str, Any]:
    """RPC calls per minute per strategy at each number of open invoices."""
    rows: list[dict[str, Any]] = []
    with scratch("kzte-rpc") as env:
        _progress("starting the sandbox validator")
        with start_validator(env.directory / "chain") as validator:
            env.rt.settings = env.rt.settings.with_overrides(
                solana_rpc_url=validator.rpc_url,
                solana_ws_url=validator.ws_url,
                kzte_mint=validator.kzte_mint,
                kzte_decimals=validator.kzte_decimals,
            )
            for size in sorted(sizes):
                _progress(f"{size:,} open invoices")
                _top_up(env, size)
                for strategy in (Strategy.REFERENCE, Strategy.DESTINATION):
                    _keep_hot(env)
                    row = {
                        "open_invoices": size,
                        "destinations": 1,
                        **_measure(env, strategy, passes),
                    }
                    _progress(f"  {strategy.value}: {row['calls_per_minute']:,} calls/min")
                    rows.append(row)
            if direct_merchants > 1:
                size = max(sizes)
                _progress(f"{size:,} open invoices over {direct_merchants} merchants (direct)")
                _spread(env, direct_merchants)
                _keep_hot(env)
                row = {
                    "open_invoices": size,
                    "destinations": direct_merchants,
                    **_measure(env, Strategy.DESTINATION, passes),
                }
                _progress(f"  destination: {row['calls_per_minute']:,} calls/min")
                rows.append(row)
    return {
        "counted_at": "adapter (CallStats), against the sandbox surfpool validator",
        "passes_per_measurement": passes,
        "rows": rows,
    }


if __name__ == "__main__":
    print(run())
