"""Ledger benchmark: posting settlements, and the zone dashboard over a big ledger.

    DATABASE_URL=postgresql://… python -m bench.ledger_bench [--settlements N] [--entries M]

Without DATABASE_URL a throw-away SQLite file is used; with a PostgreSQL DATABASE_URL a fresh
database `<name>_ledger` is created next to it (bench.common.fresh_database_url).

Steps: migrate; insert `settlements` settled invoices with their `invoice.settled` events
(bulk, not timed); post them through the real posting service (timed: postings per second;
a sample goes through the consumer's one-commit-per-event path too); top the ledger up to
`entries` entries with synthetic settlements (bulk); time the zone dashboard over all of it.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session, joinedload, sessionmaker

import pos.model_registry  # noqa: F401 - every table
import settlement.ledger.models  # noqa: F401 - the ledger tables
from bench.common import fresh_database_url, machine, say
from pos import money
from pos.db import make_engine, make_session_factory, utcnow
from pos.migrate import upgrade
from pos.models import Invoice, InvoiceEvent, Merchant, MerchantStatus
from pos.settings import Settings
from pos.states import InvoiceStatus, PaymentMethod
from settlement.ledger import reports, statements
from settlement.ledger.consumer import process_event
from settlement.ledger.models import LedgerEntry, LedgerTransaction, TransactionKind
from settlement.ledger.posting import (
    post_invoice_event,
    settlement_amounts,
    settlement_legs,
)

MERCHANTS = 200
DAYS = 30
CHUNK = 5_000
BTC_RATE = Decimal("45000000.00")
CONSUMER_SAMPLE = 2_000


def _say(message: str) -> None:
    say("ledger", message)


def _settings(database_url: str) -> Settings:
    return Settings.from_env(
        {
            "DATABASE_URL": database_url,
            "CRYPTOCITY_MODE": "demo",
            "SECRET_KEY": "bench-secret-key-bench-secret-key",
            "REDIS_URL": "redis://127.0.0.1:1",
            "CRYPTOCITY_DATA_DIR": tempfile.gettempdir(),
        }
    )


def _seed_invoices(factory: sessionmaker[Session], n: int, rng: random.Random) -> list[str]:
    """`n` settled invoices with their settle events, spread over the last DAYS days."""
    now = utcnow()
    with factory() as session:
        merchants = [
            Merchant(name=f"Bench shop {i}", status=MerchantStatus.ACTIVE, created_at=now)
            for i in range(MERCHANTS)
        ]
        session.add_all(merchants)
        session.commit()
        merchant_ids = [m.id for m in merchants]
    event_ids: list[str] = []
    for start in range(0, n, CHUNK):
        invoices: list[dict[str, Any]] = []
        events: list[dict[str, Any]] = []
        for i in range(start, min(start + CHUNK, n)):
            created = now - timedelta(seconds=rng.randrange(DAYS * 86_400))
            method = PaymentMethod.BTC if i % 3 == 0 else PaymentMethod.KZTE
            price = rng.randrange(100_00, 500_000_00)
            if method is PaymentMethod.BTC:
                rate, due = BTC_RATE, money.btc_due_sat(price, BTC_RATE)
            else:
                rate, due = Decimal(1), money.kzte_due_base_units(price, 6)
            paid = due + (rng.randrange(1, 10**6) if i % 50 == 0 else 0)  # some overpay
            invoice_id = f"bench{i:015d}"
            detected = created + timedelta(seconds=rng.randrange(5, 120))
            settled = detected + timedelta(seconds=rng.randrange(30, 1_800))
            invoices.append(
                {
                    "id": invoice_id,
                    "merchant_id": rng.choice(merchant_ids),
                    "method": method,
                    "status": InvoiceStatus.SETTLED,
                    "version": 2,
                    "price_tiyn": price,
                    "description": "",
                    "rate": rate,
                    "rate_source": "bench",
                    "rate_as_of": created,
                    "amount_due_atomic": due,
                    "amount_paid_atomic": paid,
                    "paid_partial": False,
                    "paid_over": paid > due,
                    "paid_late": False,
                    "marked": False,
                    "created_at": created,
                    "expires_at": created + timedelta(minutes=15),
                    "detected_at": detected,
                    "settled_at": settled,
                }
            )
            event_id = f"00000000-0000-4000-8000-{i:012d}"
            events.append(
                {
                    "id": event_id,
                    "invoice_id": invoice_id,
                    "invoice_version": 2,
                    "type": "invoice.settled",
                    "from_status": "new",
                    "to_status": "settled",
                    "data": {"paid_atomic": paid},
                    "created_at": settled,
                    "published_at": settled,
                }
            )
            event_ids.append(event_id)
        with factory() as session:
            session.execute(insert(Invoice), invoices)
            session.execute(insert(InvoiceEvent), events)
            session.commit()
        _say(f"  seeded {min(start + CHUNK, n):,}/{n:,} settled invoices")
    return event_ids


def _post(
    factory: sessionmaker[Session], settings: Settings, event_ids: list[str]
) -> dict[str, float]:
    sample = event_ids[:CONSUMER_SAMPLE]
    began = time.perf_counter()
    for event_id in sample:  # the consumer's path: one transaction per event
        process_event(factory, settings, event_id)
    consumer_rate = len(sample) / (time.perf_counter() - began)
    _say(f"  consumer path: {consumer_rate:,.0f} postings/s over {len(sample):,}")
    rest = event_ids[len(sample) :]
    began = time.perf_counter()
    for start in range(0, len(rest), 1_000):  # the replay's catch-up path, batched commits
        with factory() as session:
            events = session.scalars(
                select(InvoiceEvent)
                .where(InvoiceEvent.id.in_(rest[start : start + 1_000]))
                .options(joinedload(InvoiceEvent.invoice).joinedload(Invoice.merchant))
            ).all()
            for event in events:
                post_invoice_event(session, settings, event)
            session.commit()
        if (start // 1_000) % 10 == 9 or start + 1_000 >= len(rest):
            done = min(start + 1_000, len(rest))
            rate = done / (time.perf_counter() - began)
            _say(f"  posted {done + len(sample):,}/{len(event_ids):,} ({rate:,.0f}/s)")
    batch_rate = len(rest) / max(time.perf_counter() - began, 1e-9) if rest else consumer_rate
    return {
        "consumer_postings_per_second": round(consumer_rate, 1),
        "postings_per_second": round(batch_rate, 1),
    }


def _top_up(factory: sessionmaker[Session], target: int, rng: random.Random) -> int:
    """Synthetic settlements (no invoice) until the ledger holds `target` entries."""
    with factory() as session:
        have = session.scalar(select(func.count()).select_from(LedgerEntry)) or 0
        merchant_ids = list(session.scalars(select(Merchant.id)))
    now = utcnow()
    n = 0
    while have < target:
        txns: list[dict[str, Any]] = []
        legs_of: list[list[Any]] = []
        for _ in range(min(CHUNK, (target - have) // 3 + 1)):
            method = rng.choice(list(PaymentMethod))
            price = rng.randrange(100_00, 500_000_00)
            merchant_id = rng.choice(merchant_ids)
            at = now - timedelta(seconds=rng.randrange(DAYS * 86_400))
            amounts = settlement_amounts(price, price, 100)
            n += 1
            txns.append(
                {
                    "idempotency_key": f"bench-synthetic:{n}:{have}",
                    "kind": TransactionKind.SETTLEMENT,
                    "merchant_id": merchant_id,
                    "method": method.value,
                    "description": "synthetic",
                    "effective_at": at,
                    "posted_at": now,
                }
            )
            legs_of.append([(leg, at) for leg in settlement_legs(method, merchant_id, amounts)])
        with factory() as session:
            ids = session.scalars(
                insert(LedgerTransaction).returning(
                    LedgerTransaction.id, sort_by_parameter_order=True
                ),
                txns,
            ).all()
            entries = [
                {
                    "transaction_id": txn_id,
                    "account": leg.account,
                    "side": leg.side,
                    "amount_tiyn": leg.amount_tiyn,
                    "effective_at": at,
                }
                for txn_id, legs in zip(ids, legs_of, strict=True)
                for leg, at in legs
            ]
            session.execute(insert(LedgerEntry), entries)
            session.commit()  # PostgreSQL's balance trigger runs here, per entry
        have += len(entries)
        if n % (CHUNK * 10) < CHUNK:
            _say(f"  ledger holds {min(have, target):,}/{target:,} entries")
    return have


def _timed(fn: Callable[[], object], runs: int = 3) -> float:
    times = []
    for _ in range(runs):
        began = time.perf_counter()
        fn()
        times.append(time.perf_counter() - began)
    return round(statistics.median(times), 3)


def run(settlements: int = 100_000, entries: int = 1_000_000) -> dict[str, Any]:
    """Run the ledger benchmark; returns its numbers (and prints progress)."""
    database_url = fresh_database_url("ledger", Path(tempfile.mkdtemp(prefix="ledger-bench-")))
    engine = make_engine(database_url)
    backend = engine.dialect.name
    _say(f"ledger bench on {backend}: {settlements:,} settlements, {entries:,} entries")
    upgrade(database_url)
    factory = make_session_factory(engine)
    with factory() as session:
        if session.scalar(select(func.count()).select_from(Merchant)):
            raise SystemExit(
                "the bench needs an empty database: point DATABASE_URL at a scratch one"
            )
    settings = _settings(database_url)
    rng = random.Random(8)
    event_ids = _seed_invoices(factory, settlements, rng)
    rates = _post(factory, settings, event_ids)
    total = _top_up(factory, entries, rng)
    today = utcnow().date()
    period = reports.DateRange(today - timedelta(days=DAYS), today)
    with factory() as session:
        board = reports.zone_dashboard(session, period)
        dashboard_s = _timed(lambda: reports.zone_dashboard(session, period))
        statement_s = _timed(
            lambda: statements.merchant_statement(session, board.merchants[0].merchant_id, period)
        )
    engine.dispose()
    result = {
        "backend": backend,
        "machine": machine(),
        "settlements": settlements,
        **rates,
        "ledger_entries": total,
        "zone_dashboard_seconds": dashboard_s,
        "merchant_statement_seconds": statement_s,
        "dashboard_volume_tiyn": board.volume_tiyn,
    }
    _say(json.dumps(result, indent=2))
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settlements", type=int, default=100_000)
    parser.add_argument("--entries", type=int, default=1_000_000)
    args = parser.parse_args(argv)
    run(args.settlements, args.entries)
    return 0


if __name__ == "__main__":
    sys.exit(main())
