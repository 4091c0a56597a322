"""Smoke tests: each benchmark runs end to end at a tiny size and reports its numbers.

No timing asserts (numbers belong to `make bench`): only that every step works and the result
has the shape the runner and bench/results.json rely on.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from sqlalchemy import case, func, select

from bench import __main__ as runner
from bench import block_scan, btc_detection, http_create, ledger_bench, redis_memory, sse_fanout
from pos.db import make_engine, make_session_factory
from pos.models import LedgerQueue, Payment
from settlement.ledger.models import LedgerEntry, LedgerTransaction, Side

pytestmark = pytest.mark.slow


def test_http_create_runs_under_gunicorn() -> None:
    result = http_create.run(levels=(2,), seconds=1)
    if shutil.which("wrk") is None:
        assert result == {
            "available": False,
            "reason": "wrk is not installed (apt-get install wrk)",
        }
        return
    (level,) = result["levels"]
    assert result["interface"] in ("rest-api", "terminal-form")
    assert level["clients"] == 2
    assert level["requests"] > 0
    assert level["errors"] == 0
    assert level["invoices_in_db"] > 0
    assert isinstance(result["met"], bool)


def test_btc_detection_sees_every_payment_processing_then_settled() -> None:
    result = btc_detection.run(count=2, per_block=2)
    assert result["broadcast_to_processing"]["n"] == 2
    assert result["block_to_settled"]["n"] == 2
    assert result["met"] is False or "profile" not in result


def test_block_scan_matches_the_block_at_every_index_size() -> None:
    result = block_scan.run(tx_count=20, sizes=(100, 1_000), naive_sample=2)
    assert result["block_txs"] == 21  # the payments and the coinbase
    assert [row["watched"] for row in result["by_watched"]] == [100, 1_000]
    assert result["met"] is None  # 1,000,000 watched was not part of this run
    assert set(result["naive"]["ratio_naive_over_ours"]) == {"100", "1000"}


def test_derive_rate_counts_addresses() -> None:
    assert block_scan.derive_rate(5)["addresses"] == 5


def test_redis_memory_reports_bytes_per_invoice() -> None:
    result = redis_memory.run(200)
    assert result["open_invoices"] == 200
    assert result["bytes_per_invoice_state"] > 0
    assert result["one_snapshot_hash_bytes"] > 0


def test_sse_fanout_every_client_sees_the_payment() -> None:
    result = sse_fanout.run(clients=3, settle_s=10.0, deadline_s=10.0)
    for variant in result["variants"]:
        assert variant["connections_opened"] == 3
        assert variant["saw_paid"] == 3
        assert variant["all_seen_s"] is not None


def test_ledger_bench_books_every_settlement_and_the_ledger_balances(tmp_path: Path) -> None:
    database_url = f"sqlite:///{tmp_path / 'ledger.db'}"
    result = ledger_bench.run(settlements=50, entries=2_000, database_url=database_url)
    for key in (
        "postings_per_second",
        "consumer_postings_per_second",
        "ledger_entries",
        "zone_dashboard_seconds",
        "merchant_statement_seconds",
    ):
        value = result[key]
        assert isinstance(value, int | float) and not isinstance(value, bool), key
        assert value > 0, key
    assert result["ledger_entries"] >= 2_000
    assert result["ledger_debits_minus_credits_tiyn"] == 0
    engine = make_engine(database_url)
    try:
        with make_session_factory(engine)() as session:
            debits = session.scalar(
                select(func.sum(LedgerEntry.amount_tiyn)).where(LedgerEntry.side == Side.DEBIT)
            )
            credits = session.scalar(
                select(func.sum(LedgerEntry.amount_tiyn)).where(LedgerEntry.side == Side.CREDIT)
            )
            assert debits == credits and debits
            signed = func.sum(
                case(
                    (LedgerEntry.side == Side.DEBIT, LedgerEntry.amount_tiyn),
                    else_=-LedgerEntry.amount_tiyn,
                )
            )
            unbalanced = session.scalars(
                select(LedgerEntry.transaction_id)
                .group_by(LedgerEntry.transaction_id)
                .having(signed != 0)
            ).all()
            assert unbalanced == []
            # Both paths booked every seeded invoice: the queue is empty, each of the 50 has
            # its allocation and each FINAL payment its receipt.
            assert session.scalar(select(func.count()).select_from(LedgerQueue)) == 0
            booked = select(func.count()).where(LedgerTransaction.invoice_id.is_not(None))
            allocations = booked.where(LedgerTransaction.fact == "allocation")
            assert session.scalar(allocations) == 50
            receipts = booked.where(LedgerTransaction.payment_id.is_not(None))
            payments = session.scalar(select(func.count()).select_from(Payment))
            assert payments and payments > 50  # some invoices were paid in two transfers
            assert session.scalar(receipts) == payments
    finally:
        engine.dispose()


def test_runner_writes_results_and_a_table(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "results.json"
    assert runner.main(["--quick", "--only", "derive", "--output", str(output)]) == 0
    document = json.loads(output.read_text())
    assert document["quick"] is True
    assert document["machine"]["cores"] >= 1
    assert document["benchmarks"]["derive"]["result"]["addresses"] == 200
    printed = capsys.readouterr().out
    assert "machine: " in printed
    assert "BIP84 addresses derived" in printed
