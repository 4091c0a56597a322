"""Payout batches, the zone dashboard, statements, reconciliation and their CLI commands."""

import argparse
import csv
import io
import json
from datetime import timedelta

import pytest
from bank_support import give_bank_details
from ledger_support import MakeInvoice, book_all, pay
from sqlalchemy.orm import Session

from pos import business_day
from pos.errors import ValidationError
from pos.models import Merchant, Payment, PaymentStatus
from pos.runtime import Runtime
from pos.states import PaymentMethod
from settlement.ledger import cli, payouts, reconcile, reports, statements
from settlement.ledger.errors import PayoutError, PayoutNotFoundError
from settlement.ledger.models import PayoutStatus

import factories


def _post_all(session: Session, runtime: Runtime) -> None:
    """What the worker's ledger duty does with every change."""
    book_all(session, runtime.settings)


@pytest.fixture
def today() -> reports.DateRange:
    day = business_day.today()
    return reports.DateRange(day, day)


@pytest.fixture
def two_shops(
    runtime: Runtime, session: Session, shop: Merchant, make_invoice: MakeInvoice
) -> tuple[Merchant, Merchant]:
    other = factories.merchant(session, runtime.settings, "Other Shop", "other")
    other.payout_hold_hours = 0
    give_bank_details(session, other)
    session.commit()
    for price in (100_000, 200_000):
        invoice = make_invoice(price)
        pay(session, invoice, invoice.amount_due_atomic)
    invoice = make_invoice(300_000, merchant=other)
    pay(session, invoice, invoice.amount_due_atomic)
    make_invoice(50_000)  # still open
    _post_all(session, runtime)
    return shop, other


def test_payouts_batch_each_merchant_once_and_mark_paid(
    session: Session, two_shops: tuple[Merchant, Merchant], today: reports.DateRange
) -> None:
    shop, other = two_shops
    created = payouts.run_payouts(session, today.start)
    session.commit()
    assert {(p.merchant_id, p.amount_tiyn) for p in created} == {
        (shop.id, 99_000 + 198_000),  # net of the 1 % default fee
        (other.id, 297_000),
    }
    assert all(len(p.lines) >= 1 for p in created)
    assert payouts.run_payouts(session, today.start) == []
    # Yesterday's batch is empty: everything happened today.
    assert payouts.run_payouts(session, today.start - timedelta(days=1)) == []

    rows = payouts.list_payouts(session, PayoutStatus.PENDING)
    exported = list(csv.DictReader(io.StringIO(payouts.bank_export_csv(rows))))
    assert {r["amount_kzt"] for r in exported} == {"2970.00"}
    assert {r["merchant_name"] for r in exported} == {"Ledger Shop", "Other Shop"}

    first = created[0]
    with pytest.raises(PayoutError, match="reference"):
        payouts.mark_paid(session, first.id, "  ")
    payouts.mark_paid(session, first.id, "REF-1")
    session.commit()
    with pytest.raises(PayoutError, match="already paid"):
        payouts.mark_paid(session, first.id, "REF-2")
    with pytest.raises(PayoutNotFoundError):
        payouts.mark_paid(session, 999_999, "REF-3")
    board = reports.zone_dashboard(session, today)
    assert board.pending_payouts == 1
    assert board.pending_payouts_tiyn == created[1].amount_tiyn


def test_a_reversal_after_payout_carries_a_negative_balance(
    runtime: Runtime, session: Session, shop: Merchant, make_invoice: MakeInvoice
) -> None:
    invoice = make_invoice(100_000, PaymentMethod.BTC)
    pay(session, invoice, invoice.amount_due_atomic)
    _post_all(session, runtime)
    [payout] = payouts.run_payouts(session, business_day.today())
    payouts.mark_paid(session, payout.id, "REF-9")
    session.commit()
    pay(session, invoice, invoice.amount_due_atomic, PaymentStatus.CONFIRMED)  # reopened
    _post_all(session, runtime)
    # The merchant now owes the zone; no payout is created for a negative sum.
    assert payouts.run_payouts(session, business_day.today() + timedelta(days=1)) == []
    statement = statements.merchant_statement(
        session, shop.id, reports.DateRange(business_day.today(), business_day.today())
    )
    assert statement.closing_tiyn == -payout.amount_tiyn


def test_zone_dashboard_numbers(
    session: Session, two_shops: tuple[Merchant, Merchant], today: reports.DateRange
) -> None:
    board = reports.zone_dashboard(session, today)
    assert board.volume_by_method == {"btc": 0, "kzte": 600_000}
    assert board.volume_by_day == [(today.start, {"btc": 0, "kzte": 600_000})]
    assert board.invoice_counts["settled"] == 3 and board.invoice_counts["new"] == 1
    assert board.active_merchants == 2
    assert board.fees_tiyn == 6_000
    assert board.owed_to_merchants_tiyn == 594_000
    assert board.median_detection_seconds is not None and board.median_detection_seconds >= 0
    assert board.median_settlement_seconds is not None
    tables = board.tables()
    assert set(tables) == {"volume", "invoices", "merchants"}
    assert reports.csv_text(tables["volume"]).splitlines()[1].endswith(",0,600000,600000")


def test_statement_opening_and_closing_balances(
    session: Session, two_shops: tuple[Merchant, Merchant], today: reports.DateRange
) -> None:
    shop, _other = two_shops
    statement = statements.merchant_statement(session, shop.id, today)
    assert statement.opening_tiyn == 0
    assert [ln.balance_tiyn for ln in statement.lines] == [99_000, 297_000]
    tomorrow = today.start + timedelta(days=1)
    later = statements.merchant_statement(session, shop.id, reports.DateRange(tomorrow, tomorrow))
    assert later.opening_tiyn == later.closing_tiyn == 297_000 and later.lines == []


class FakeNode:
    def __init__(self, answers: dict[str, bool | None]) -> None:
        self.answers = answers

    def verify(self, payment: Payment) -> bool | None:
        return self.answers.get(payment.txid)


def test_reconciliation_lists_differences_and_node_answers(
    runtime: Runtime,
    session: Session,
    two_shops: tuple[Merchant, Merchant],
    make_invoice: MakeInvoice,
    today: reports.DateRange,
) -> None:
    clean = reconcile.reconcile(session, runtime.settings, today)
    assert clean.differences == [] and clean.expected_tiyn == clean.cleared_tiyn == 600_000
    assert clean.check_counts()["not checked"] == 3
    assert clean.method_differences == []  # both shops are `tenge`: all of it in clearing

    # Settled, but the booking never ran: the clearing account misses its value.
    unposted = make_invoice(70_000)
    pay(session, unposted, unposted.amount_due_atomic)
    answers: dict[str, bool | None] = {f"tx-{unposted.id}": False}
    result = reconcile.reconcile(session, runtime.settings, today, {"solana": FakeNode(answers)})
    [difference] = result.differences
    assert difference.invoice_id == unposted.id
    assert (difference.expected_tiyn, difference.cleared_tiyn) == (70_000, 0)
    assert "not booked yet" in difference.cause
    [kzte] = result.method_differences
    assert kzte.method == "kzte" and kzte.difference_atomic == -unposted.amount_due_atomic
    counts = result.check_counts()
    assert counts["contradicted"] == 1 and counts["unknown"] == 3
    assert json.loads(json.dumps(result.as_dict()))["difference_tiyn"] == -70_000


def _run_cli(argv: list[str], runtime: Runtime, capsys: pytest.CaptureFixture[str]) -> str:
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    assert args.handler(args, runtime.settings) == 0
    return capsys.readouterr().out


def test_cli_reports_give_the_same_numbers_as_the_services(
    runtime: Runtime,
    session: Session,
    two_shops: tuple[Merchant, Merchant],
    today: reports.DateRange,
    capsys: pytest.CaptureFixture[str],
) -> None:
    shop, _ = two_shops
    day = today.start.isoformat()
    session.commit()
    zone = json.loads(
        _run_cli(["report", "zone", "--from", day, "--to", day, "--json"], runtime, capsys)
    )
    assert zone == json.loads(
        json.dumps(reports.zone_dashboard(session, today).as_dict(), default=str)
    )
    assert zone["volume_tiyn"] == 600_000 and zone["fees_tiyn"] == 6_000

    statement = json.loads(
        _run_cli(["report", "statement", "--merchant", str(shop.id), "--json"], runtime, capsys)
    )
    assert statement["closing_tiyn"] == 297_000
    recon = json.loads(_run_cli(["report", "reconcile", "--json"], runtime, capsys))
    assert recon["differences"] == [] and recon["cleared_tiyn"] == 600_000
    assert _run_cli(["report", "zone", "--csv", "invoices"], runtime, capsys).startswith(
        "status,count\n"
    )

    ran = json.loads(_run_cli(["payouts", "run", "--date", day, "--json"], runtime, capsys))
    assert len(ran["created"]) == 2
    payout_id = ran["created"][0]
    exported = _run_cli(["payouts", "export", "--date", day], runtime, capsys)
    assert exported.count("\n") == 3  # header + two pending payouts
    paid = json.loads(
        _run_cli(
            ["payouts", "mark-paid", str(payout_id), "--reference", "KZ-77", "--json"],
            runtime,
            capsys,
        )
    )
    assert paid["status"] == "paid" and paid["bank_reference"] == "KZ-77"
    listed = json.loads(
        _run_cli(["payouts", "list", "--status", "paid", "--json"], runtime, capsys)
    )
    assert [p["id"] for p in listed["payouts"]] == [payout_id]


def test_report_ranges_are_validated() -> None:
    day = business_day.today()
    with pytest.raises(ValidationError, match="start date is after"):
        reports.parse_range("2026-02-02", "2026-02-01", day)
    with pytest.raises(ValidationError, match="not a date"):
        reports.parse_range("yesterday", None, day)
    with pytest.raises(ValidationError, match="at most"):
        reports.parse_range("2020-01-01", "2026-01-01", day)
    assert reports.parse_range(None, None, day).days()[-1] == day
