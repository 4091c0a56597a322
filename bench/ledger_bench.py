"""Ledger benchmark: booking settled invoices from their payments, and the zone dashboard.

    DATABASE_URL=postgresql://… python -m bench.ledger_bench [--settlements N] [--entries M]

Without DATABASE_URL a throw-away SQLite file is used; with a PostgreSQL DATABASE_URL a fresh
database `<name>_ledger` is created next to it (bench.common.fresh_database_url).

Steps: migrate; insert `settlements` settled invoices of both methods and both settlement modes
with their FINAL payments (as the watchers write them), their `invoice.settled` events and
their `ledger_queue` rows, plus each merchant's chart of accounts (bulk, not timed); book them
(timed) — most straight through `booking.book_invoice` in batched commits (postings per
second), a sample through `booking.drain_queue`, the worker's `ledger-book` duty, which books
each queued invoice in its own transaction (consumer postings per second); top the ledger up
to `entries` entries with synthetic balanced postings (bulk); time the zone dashboard and a
merchant statement over all of it (the functions the report pages call).
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
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import delete, func, insert, select
from sqlalchemy.orm import Session, joinedload, selectinload, sessionmaker

import pos.model_registry  # noqa: F401 - every table
import settlement.ledger.models  # noqa: F401 - the ledger tables
from bench.common import fresh_database_url, machine, say
from pos import business_day, chart, money
from pos.chart import LedgerAccount
from pos.db import make_engine, make_session_factory, utcnow
from pos.migrate import upgrade
from pos.models import (
    Invoice,
    InvoiceEvent,
    LedgerQueue,
    Merchant,
    MerchantStatus,
    Payment,
    PaymentStatus,
    SettlementMode,
)
from pos.settings import Settings
from pos.states import EventType, InvoiceStatus, PaymentMethod
from settlement.ledger import reports, statements
from settlement.ledger.booking import book_batch, book_one, drain_queue
from settlement.ledger.models import LedgerEntry, LedgerTransaction, Side, TransactionKind
from settlement.ledger.posting import Leg, allocation, allocation_legs, receipt_legs

MERCHANTS = 200
DIRECT_EVERY = 4  # every 4th bench merchant settles `direct`, the others `tenge`
DAYS = 30
CHUNK = 5_000
BOOK_BATCH = 500  # invoices per commit on the direct book_invoice path
BTC_RATE = Decimal("45000000.00")
CONSUMER_SAMPLE = 2_000  # at most this many invoices go through drain_queue
FEE_BP = 100


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


def _seed_merchants(factory: sessionmaker[Session], now: datetime) -> dict[int, bool]:
    """MERCHANTS active merchants and their chart accounts (as registration opens them);
    returns {merchant id: settles direct?}."""
    rows = [
        {
            "name": f"Bench shop {i}",
            "status": MerchantStatus.ACTIVE,
            "settlement_mode": (
                SettlementMode.DIRECT if i % DIRECT_EVERY == 0 else SettlementMode.TENGE
            ),
            "fee_bp": None,
            "created_at": now,
        }
        for i in range(MERCHANTS)
    ]
    with factory() as session:
        ids = session.scalars(
            insert(Merchant).returning(Merchant.id, sort_by_parameter_order=True), rows
        ).all()
        accounts = [
            {
                "code": code,
                "type": type_,
                "currency": "KZT",
                "merchant_id": merchant_id,
                "memorandum": memo,
                "method": method,
                "created_at": now,
            }
            for merchant_id in ids
            for code, type_, memo, method in chart.merchant_accounts(merchant_id)
        ]
        session.execute(insert(LedgerAccount), accounts)
        session.commit()
    return {
        merchant_id: row["settlement_mode"] is SettlementMode.DIRECT
        for merchant_id, row in zip(ids, rows, strict=True)
    }


def _seed_invoices(
    factory: sessionmaker[Session], n: int, rng: random.Random
) -> tuple[list[str], dict[int, bool]]:
    """`n` settled invoices with their FINAL payments, settle events and queue rows, spread
    over the last DAYS days; returns the invoice ids (oldest queued first) and the merchants."""
    now = utcnow()
    modes = _seed_merchants(factory, now)
    merchant_ids = list(modes)
    invoice_ids: list[str] = []
    for start in range(0, n, CHUNK):
        invoices: list[dict[str, Any]] = []
        payments: list[dict[str, Any]] = []
        events: list[dict[str, Any]] = []
        queue: list[dict[str, Any]] = []
        for i in range(start, min(start + CHUNK, n)):
            created = now - timedelta(seconds=rng.randrange(DAYS * 86_400))
            method = PaymentMethod.BTC if i % 3 == 0 else PaymentMethod.KZTE
            merchant_id = rng.choice(merchant_ids)
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
                    "merchant_id": merchant_id,
                    "method": method,
                    "settlement_mode": (
                        SettlementMode.DIRECT if modes[merchant_id] else SettlementMode.TENGE
                    ),
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
            # Every 7th invoice is paid in two transfers; each is a FINAL payment of its own.
            amounts = [due // 2, paid - due // 2] if i % 7 == 0 else [paid]
            for index, amount in enumerate(amounts):
                btc = method is PaymentMethod.BTC
                payments.append(
                    {
                        "invoice_id": invoice_id,
                        "chain": "bitcoin" if btc else "solana",
                        "txid": f"bench-tx-{i:015d}-{index}",
                        "output_index": 0,
                        "amount_atomic": amount,
                        "status": PaymentStatus.FINAL,
                        "confirmations": 6 if btc else 0,
                        "block_hash": f"{i:064x}" if btc else None,
                        "block_height": 800_000 + i if btc else 250_000_000 + i,
                        "first_seen_at": detected + timedelta(seconds=index),
                        "updated_at": settled,
                        "spent_outpoints": [],
                        "replaced_by": None,
                        "missing_since": None,
                    }
                )
            events.append(
                {
                    "id": f"00000000-0000-4000-8000-{i:012d}",
                    "invoice_id": invoice_id,
                    "invoice_version": 2,
                    "type": EventType.SETTLED.value,
                    "from_status": InvoiceStatus.NEW.value,
                    "to_status": InvoiceStatus.SETTLED.value,
                    "data": {"paid_atomic": paid},
                    "created_at": settled,
                    "published_at": settled,
                }
            )
            # Distinct times: drain_queue takes the oldest first, so the order is the ids'.
            queue.append({"invoice_id": invoice_id, "queued_at": now + timedelta(microseconds=i)})
            invoice_ids.append(invoice_id)
        with factory() as session:
            session.execute(insert(Invoice), invoices)
            session.execute(insert(Payment), payments)
            session.execute(insert(InvoiceEvent), events)
            session.execute(insert(LedgerQueue), queue)
            session.commit()
        _say(f"  seeded {min(start + CHUNK, n):,}/{n:,} settled invoices with their payments")
    return invoice_ids, modes


def _queued(factory: sessionmaker[Session]) -> int:
    with factory() as session:
        return session.scalar(select(func.count()).select_from(LedgerQueue)) or 0


def _book(
    factory: sessionmaker[Session], settings: Settings, invoice_ids: list[str]
) -> dict[str, float]:
    """Most invoices straight through `book_batch` in batched commits (their queue rows removed
    with them); of the oldest-queued sample, half the previous way, one transaction per
    invoice (`book_one`), and half through `drain_queue`, the `ledger-book` duty (a batch per
    transaction) — side by side in the same run."""
    sample = min(CONSUMER_SAMPLE, len(invoice_ids) // 2)
    one_by_one, rest = invoice_ids[: sample // 2], invoice_ids[sample:]
    posted = 0
    began = time.perf_counter()
    for start in range(0, len(rest), BOOK_BATCH):
        ids = rest[start : start + BOOK_BATCH]
        with factory() as session:
            batch = session.scalars(
                select(Invoice)
                .where(Invoice.id.in_(ids))
                .options(selectinload(Invoice.payments), joinedload(Invoice.merchant))
            ).all()
            posted += book_batch(session, settings, batch)
            session.execute(delete(LedgerQueue).where(LedgerQueue.invoice_id.in_(ids)))
            session.commit()
        if (start // BOOK_BATCH) % 20 == 19 or start + BOOK_BATCH >= len(rest):
            done = min(start + BOOK_BATCH, len(rest))
            rate = posted / (time.perf_counter() - began)
            _say(f"  booked {done:,}/{len(rest):,} invoices by book_batch ({rate:,.0f} postings/s)")
    book_rate = posted / max(time.perf_counter() - began, 1e-9)

    began = time.perf_counter()
    singly = sum(book_one(factory, settings, invoice_id) for invoice_id in one_by_one)
    one_rate = singly / max(time.perf_counter() - began, 1e-9)
    _say(f"  book_one: {len(one_by_one):,} invoices, {singly:,} postings ({one_rate:,.0f}/s)")
    drained = 0
    began = time.perf_counter()
    while _queued(factory):  # the duty's loop: a pass books up to DRAIN_BATCH invoices
        drained += drain_queue(factory, settings)
    drain_rate = drained / max(time.perf_counter() - began, 1e-9)
    _say(
        f"  drain_queue: {sample - len(one_by_one):,} invoices, {drained:,} postings"
        f" ({drain_rate:,.0f}/s)"
    )
    return {
        "consumer_postings_per_second": round(drain_rate, 1),
        "consumer_one_transaction_per_invoice_postings_per_second": round(one_rate, 1),
        "postings_per_second": round(book_rate, 1),
    }


def _synthetic_legs(
    direct: bool, method: PaymentMethod, merchant_id: int, rng: random.Random
) -> list[tuple[str, TransactionKind, list[Leg]]]:
    """A paid sale without an invoice: its receipt and its allocation, as booking writes them."""
    price = rng.randrange(100_00, 500_000_00)
    atomic = price * (10 if method is PaymentMethod.BTC else 10_000)  # any quantity will do
    receipt = receipt_legs(direct, method, merchant_id, price, atomic)
    sale = allocation_legs(direct, merchant_id, allocation(price, price, FEE_BP))
    return [
        ("receipt:synthetic", TransactionKind.RECEIPT, receipt),
        ("allocation", TransactionKind.SETTLEMENT, sale),
    ]


def _top_up(
    factory: sessionmaker[Session], target: int, modes: dict[int, bool], rng: random.Random
) -> int:
    """Synthetic balanced postings (no invoice) until the ledger holds `target` entries."""
    with factory() as session:
        have = session.scalar(select(func.count()).select_from(LedgerEntry)) or 0
    merchant_ids = list(modes)
    now = utcnow()
    n = 0
    reported = have
    while have < target:
        txns: list[dict[str, Any]] = []
        legs_of: list[tuple[list[Leg], datetime]] = []
        while len(txns) < CHUNK and have + sum(len(legs) for legs, _ in legs_of) < target:
            method = rng.choice(list(PaymentMethod))
            merchant_id = rng.choice(merchant_ids)
            at = now - timedelta(seconds=rng.randrange(DAYS * 86_400))
            for fact, kind, legs in _synthetic_legs(modes[merchant_id], method, merchant_id, rng):
                n += 1
                txns.append(
                    {
                        "idempotency_key": f"bench-synthetic:{n}",
                        "kind": kind,
                        "merchant_id": merchant_id,
                        "method": method.value,
                        "fact": fact,
                        "description": "synthetic",
                        "effective_at": at,
                        "posted_at": now,
                    }
                )
                legs_of.append((legs, at))
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
                    "amount_atomic": leg.amount_atomic,
                    "effective_at": at,
                }
                for txn_id, (legs, at) in zip(ids, legs_of, strict=True)
                for leg in legs
            ]
            session.execute(insert(LedgerEntry), entries)
            session.commit()  # PostgreSQL's balance trigger runs here, per entry
        have += len(entries)
        if have - reported >= CHUNK * 10 or have >= target:
            reported = have
            _say(f"  ledger holds {have:,}/{target:,} entries")
    return have


def unbalanced_tiyn(session: Session) -> int:
    """Debits minus credits over the whole ledger (0 when every posting balances)."""
    debit = session.scalar(
        select(func.coalesce(func.sum(LedgerEntry.amount_tiyn), 0)).where(
            LedgerEntry.side == Side.DEBIT
        )
    )
    credit = session.scalar(
        select(func.coalesce(func.sum(LedgerEntry.amount_tiyn), 0)).where(
            LedgerEntry.side == Side.CREDIT
        )
    )
    return int(debit or 0) - int(credit or 0)


def _timed(fn: Callable[[], object], runs: int = 3) -> float:
    times = []
    for _ in range(runs):
        began = time.perf_counter()
        fn()
        times.append(time.perf_counter() - began)
    return round(statistics.median(times), 3)


def run(
    settlements: int = 100_000, entries: int = 1_000_000, database_url: str | None = None
) -> dict[str, Any]:
    """Run the ledger benchmark; returns its numbers (and prints progress). `database_url`
    (an empty database) is for the smoke test, which looks at the ledger afterwards."""
    if database_url is None:
        directory = Path(tempfile.mkdtemp(prefix="ledger-bench-"))
        database_url = fresh_database_url("ledger", directory)
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
    invoice_ids, modes = _seed_invoices(factory, settlements, rng)
    rates = _book(factory, settings, invoice_ids)
    total = _top_up(factory, entries, modes, rng)
    today = business_day.today()
    period = reports.DateRange(today - timedelta(days=DAYS), today)
    with factory() as session:
        board = reports.zone_dashboard(session, period)
        dashboard_s = _timed(lambda: reports.zone_dashboard(session, period))
        statement_s = _timed(
            lambda: statements.merchant_statement(session, board.merchants[0].merchant_id, period)
        )
        imbalance = unbalanced_tiyn(session)
    engine.dispose()
    result = {
        "backend": backend,
        "machine": machine(),
        "settlements": settlements,
        **rates,
        "ledger_entries": total,
        "ledger_debits_minus_credits_tiyn": imbalance,
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
