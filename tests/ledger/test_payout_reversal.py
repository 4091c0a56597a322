"""Issue #20.2: a payout never keeps double-spent money, and a reversal never hides.

Through the `cryptocity payouts …` commands (`pos.cli:main`, on the test database): a pending
payout whose invoice is double-spent after it was built is refused by `mark-paid` (naming the
invoice) and left out of the bank export until `payouts run` rebuilds it; the cancelled sale
then never eats into later income. A sale double-spent after it was paid out shows as a
negative payable, and the deduction from the next payout is spelled out.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import pytest
from ledger_support import MakeInvoice, book_all, pay, unbalanced_transactions
from sqlalchemy import select
from sqlalchemy.orm import Session

from pos import business_day
from pos.cli import main
from pos.models import AuditLog, Merchant, PaymentStatus
from pos.runtime import Runtime
from settlement.ledger import statements
from settlement.ledger.reports import DateRange

NET_A, NET_B, NET_C = 99_000, 198_000, 297_000  # prices 1 000 / 2 000 / 3 000 ₸, 1 % fee


def _post_all(session: Session, runtime: Runtime) -> None:
    """What the worker's ledger duty does with every change."""
    book_all(session, runtime.settings)


@dataclass
class Ran:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def cli(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Callable[..., Ran]:
    """`cryptocity …` as the console script runs it (`pos.cli:main`, settings from the env)."""
    settings = runtime.settings
    monkeypatch.setenv("CRYPTOCITY_MODE", "demo")
    monkeypatch.setenv("CRYPTOCITY_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("DATABASE_URL", settings.database_url)
    monkeypatch.setenv("REDIS_URL", settings.redis_url or "")
    monkeypatch.setenv("KZTE_MINT", settings.kzte_mint or "")

    def run(*args: str) -> Ran:
        capsys.readouterr()  # drop anything printed before
        code = main(list(args))
        out, err = capsys.readouterr()
        return Ran(code, out, err)

    return run


def _json(cli: Callable[..., Ran], *args: str) -> dict[str, Any]:
    result = cli(*args, "--json")
    assert result.returncode == 0, result.stderr
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def _double_spend(session: Session, runtime: Runtime, invoice: Any) -> None:
    """The settled payment's inputs are spent elsewhere (as tests/test_payments.py does)."""
    events = pay(session, invoice, invoice.amount_due_atomic, PaymentStatus.REPLACED)
    assert "invoice.invalid" in events
    _post_all(session, runtime)


def test_a_payout_built_before_a_double_spend_is_refused_then_rebuilt_without_it(
    runtime: Runtime,
    session: Session,
    shop: Merchant,
    make_invoice: MakeInvoice,
    cli: Callable[..., Ran],
) -> None:
    today = business_day.today()
    a, b = make_invoice(100_000), make_invoice(200_000)
    for invoice in (a, b):
        pay(session, invoice, invoice.amount_due_atomic)
    _post_all(session, runtime)
    ran = _json(cli, "payouts", "run", "--date", today.isoformat())
    [payout_id] = ran["created"]
    assert ran["payouts"][0]["amount_tiyn"] == NET_A + NET_B

    _double_spend(session, runtime, a)  # after the payout was built

    refused = cli("payouts", "mark-paid", str(payout_id), "--reference", "KZ-1")
    assert refused.returncode == 2 and refused.stdout == ""
    assert a.id in refused.stderr and "cryptocity payouts run" in refused.stderr
    assert b.id not in refused.stderr
    [listed] = _json(cli, "payouts", "list")["payouts"]
    assert listed["blocked"] is True and listed["reversed_invoices"] == [a.id]
    exported = cli("payouts", "export")
    assert exported.returncode == 0 and exported.stdout.count("\n") == 1  # the header only
    assert f"#{payout_id} left out" in exported.stderr

    rebuilt = _json(cli, "payouts", "run", "--date", today.isoformat())
    assert rebuilt["created"] == []
    assert rebuilt["rebuilt"] == [
        {
            "id": payout_id,
            "merchant_id": shop.id,
            "business_date": today.isoformat(),
            "old_amount_tiyn": NET_A + NET_B,
            "new_amount_tiyn": NET_B,
            "withdrawn": False,
            "invoices": [a.id],
        }
    ]
    assert rebuilt["negative_payables"] == []  # the cancelled sale is owed by nobody
    paid = _json(cli, "payouts", "mark-paid", str(payout_id), "--reference", "KZ-1")
    assert paid["status"] == "paid" and paid["amount_tiyn"] == NET_B

    # Later legitimate income is paid in full: the reversal does not eat into it.
    c = make_invoice(300_000)
    pay(session, c, c.amount_due_atomic)
    _post_all(session, runtime)
    tomorrow = (today + timedelta(days=1)).isoformat()
    later = _json(cli, "payouts", "run", "--date", tomorrow)
    [new_row] = [r for r in later["payouts"] if r["id"] in later["created"]]
    assert new_row["amount_tiyn"] == NET_C and new_row["deducted_tiyn"] == 0
    session.commit()
    assert unbalanced_transactions(session) == []
    assert session.scalar(select(AuditLog).where(AuditLog.action == "payout.rebuilt")) is not None
    period = DateRange(today, today + timedelta(days=1))
    statement = statements.merchant_statement(session, shop.id, period)
    assert statement.closing_tiyn == NET_C  # paid B; owed C; A came and went


def test_a_pending_payout_holding_only_the_double_spent_sale_is_withdrawn(
    runtime: Runtime, session: Session, make_invoice: MakeInvoice, cli: Callable[..., Ran]
) -> None:
    today = business_day.today().isoformat()
    a = make_invoice(100_000)
    pay(session, a, a.amount_due_atomic)
    _post_all(session, runtime)
    [payout_id] = _json(cli, "payouts", "run", "--date", today)["created"]
    _double_spend(session, runtime, a)
    rebuilt = _json(cli, "payouts", "run", "--date", today)
    assert [(r["id"], r["withdrawn"], r["invoices"]) for r in rebuilt["rebuilt"]] == [
        (payout_id, True, [a.id])
    ]
    assert rebuilt["created"] == [] and _json(cli, "payouts", "list")["payouts"] == []
    missing = cli("payouts", "mark-paid", str(payout_id), "--reference", "KZ-2")
    assert missing.returncode == 2 and f"no payout {payout_id}" in missing.stderr


def test_a_sale_double_spent_after_its_payout_shows_as_a_negative_payable(
    runtime: Runtime,
    session: Session,
    shop: Merchant,
    make_invoice: MakeInvoice,
    cli: Callable[..., Ran],
) -> None:
    today: date = business_day.today()
    a = make_invoice(100_000)
    pay(session, a, a.amount_due_atomic)
    _post_all(session, runtime)
    [payout_id] = _json(cli, "payouts", "run", "--date", today.isoformat())["created"]
    _json(cli, "payouts", "mark-paid", str(payout_id), "--reference", "KZ-3")
    _double_spend(session, runtime, a)  # the zone paid out money that never arrived

    owing = {
        "merchant_id": shop.id,
        "merchant_name": "Ledger Shop",
        "amount_tiyn": -NET_A,
        "amount_kzt": "-990.00",
        "invoices": [a.id],
    }
    listed = _json(cli, "payouts", "list")
    assert listed["negative_payables"] == [owing]
    text = cli("payouts", "list").stdout
    assert f"Ledger Shop owes 990.00 KZT (payable -990.00 KZT): reversed after payout: {a.id}" in (
        text.replace("\u202f", "")
    )
    ran = _json(cli, "payouts", "run", "--date", (today + timedelta(days=1)).isoformat())
    assert ran["created"] == [] and ran["negative_payables"] == [owing]

    # The next payout recovers it, and says so.
    c = make_invoice(300_000)
    pay(session, c, c.amount_due_atomic)
    _post_all(session, runtime)
    later = _json(cli, "payouts", "run", "--date", (today + timedelta(days=2)).isoformat())
    [new_row] = [r for r in later["payouts"] if r["id"] in later["created"]]
    assert new_row["amount_tiyn"] == NET_C - NET_A
    assert new_row["deducted_tiyn"] == NET_A and new_row["deducted_invoices"] == [a.id]
    assert later["negative_payables"] == []
