"""The bank CSV carries each merchant's account; a payout without one stays out, reported.

Through the services (`list_payouts`, `bank_export_csv`) and the console script
(`cryptocity payouts export|list`, `pos.cli:main` on the test database).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from bank_support import BIC, give_bank_details, kz_iban
from flask import Flask
from ledger_support import MakeInvoice, book_all, pay
from sqlalchemy.orm import Session

from pos import accounts, business_day
from pos.cli import main
from pos.models import Merchant, Role
from pos.runtime import Runtime
from settlement.ledger import payouts
from settlement.ledger.models import Payout, PayoutStatus

import factories
from portal_helpers import login


@dataclass
class Ran:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def cli(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Callable[..., Ran]:
    """`cryptocity …` as the console script runs it (settings from the environment)."""
    settings = runtime.settings
    monkeypatch.setenv("CRYPTOCITY_MODE", "demo")
    monkeypatch.setenv("CRYPTOCITY_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("DATABASE_URL", settings.database_url)
    monkeypatch.setenv("REDIS_URL", settings.redis_url or "")
    monkeypatch.setenv("KZTE_MINT", settings.kzte_mint or "")

    def run(*args: str) -> Ran:
        capsys.readouterr()
        code = main(list(args))
        out, err = capsys.readouterr()
        return Ran(code, out, err)

    return run


@pytest.fixture
def payouts_of_two(
    runtime: Runtime, session: Session, shop: Merchant, make_invoice: MakeInvoice
) -> tuple[Payout, Payout]:
    """Today's pending payouts of `shop` (bank details set) and of a shop without any."""
    bare = factories.merchant(session, runtime.settings, "No Bank Shop", "nobank")
    bare.payout_hold_hours = 0
    session.commit()
    for merchant, price in ((shop, 100_000), (bare, 200_000)):
        invoice = make_invoice(price, merchant=merchant)
        pay(session, invoice, invoice.amount_due_atomic)
    book_all(session, runtime.settings)
    created = {p.merchant_id: p for p in payouts.run_payouts(session, business_day.today())}
    session.commit()
    return created[shop.id], created[bare.id]


def _exported(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def test_the_export_carries_the_beneficiary_and_leaves_out_who_has_none(
    session: Session, shop: Merchant, payouts_of_two: tuple[Payout, Payout]
) -> None:
    with_bank, without = payouts_of_two
    rows = {r.id: r for r in payouts.list_payouts(session, PayoutStatus.PENDING)}
    assert not rows[with_bank.id].missing_bank_details
    assert rows[without.id].missing_bank_details
    assert rows[without.id].as_dict()["missing_bank_details"] is True
    assert not rows[without.id].blocked  # a reason of its own, not a double spend

    text = payouts.bank_export_csv(list(rows.values()))
    assert text.splitlines()[0] == ",".join(payouts.BANK_EXPORT_COLUMNS)
    assert payouts.BANK_EXPORT_COLUMNS[-3:] == (
        "beneficiary_name",
        "beneficiary_iban",
        "beneficiary_bic",
    )
    [line] = _exported(text)
    assert line["payout_id"] == str(with_bank.id)
    assert line["amount_tiyn"] == "99000"
    assert (line["beneficiary_name"], line["beneficiary_iban"], line["beneficiary_bic"]) == (
        "Ledger Shop LLP",
        kz_iban(shop.id),
        BIC,
    )


def test_a_payout_is_exported_once_its_merchant_gives_an_account(
    session: Session, payouts_of_two: tuple[Payout, Payout]
) -> None:
    _with_bank, without = payouts_of_two
    bare = session.get(Merchant, without.merchant_id)
    assert bare is not None
    iban = give_bank_details(session, bare)
    session.commit()
    lines = _exported(payouts.bank_export_csv(payouts.list_payouts(session, PayoutStatus.PENDING)))
    assert {ln["payout_id"] for ln in lines} == {str(p.id) for p in payouts_of_two}
    [theirs] = [ln for ln in lines if ln["payout_id"] == str(without.id)]
    assert (theirs["beneficiary_name"], theirs["beneficiary_iban"]) == ("No Bank Shop LLP", iban)
    # The export follows the account as it is now: a changed account is the one paid.
    accounts.set_bank_details(session, bare, "No Bank Shop LLP", kz_iban(9_999), "CASPKZKA")
    session.commit()
    lines = _exported(payouts.bank_export_csv(payouts.list_payouts(session, PayoutStatus.PENDING)))
    [theirs] = [ln for ln in lines if ln["payout_id"] == str(without.id)]
    assert (theirs["beneficiary_iban"], theirs["beneficiary_bic"]) == (kz_iban(9_999), "CASPKZKA")


def test_the_cli_export_reports_the_payout_left_out_for_want_of_an_account(
    cli: Callable[..., Ran], shop: Merchant, payouts_of_two: tuple[Payout, Payout]
) -> None:
    with_bank, without = payouts_of_two
    ran = cli("payouts", "export", "--date", business_day.today().isoformat())
    assert ran.returncode == 0
    lines = _exported(ran.stdout)
    assert [ln["payout_id"] for ln in lines] == [str(with_bank.id)]
    assert lines[0]["beneficiary_iban"] == kz_iban(shop.id)
    assert (
        f"payout #{without.id} left out: No Bank Shop (merchant {without.merchant_id}) "
        "has no bank details" in ran.stderr
    )
    assert f"#{with_bank.id} left out" not in ran.stderr

    listed = cli("payouts", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    missing = {p["id"]: p["missing_bank_details"] for p in json.loads(listed.stdout)["payouts"]}
    assert missing == {with_bank.id: False, without.id: True}


def test_the_cli_export_without_a_filter_is_the_portal_export_without_one(
    cli: Callable[..., Ran],
    app: Flask,
    session: Session,
    payouts_of_two: tuple[Payout, Payout],
) -> None:
    """Both list every payout (pending and paid) and leave out the same ones."""
    with_bank, without = payouts_of_two
    bare = session.get(Merchant, without.merchant_id)
    assert bare is not None
    give_bank_details(session, bare)
    session.commit()
    payouts.mark_paid(session, with_bank.id, "KZ-PAID-1")
    session.commit()
    factories.user(session, "ops@zone.test", Role.OPERATOR)
    session.commit()

    ran = cli("payouts", "export")
    assert ran.returncode == 0, ran.stderr
    web = app.test_client()
    login(web, "ops@zone.test", factories.PASSWORD)
    page = web.get("/reports/payouts.csv")
    assert page.status_code == 200
    assert ran.stdout == page.get_data(as_text=True)
    statuses = {ln["payout_id"]: ln["status"] for ln in _exported(ran.stdout)}
    assert statuses == {str(with_bank.id): "paid", str(without.id): "pending"}
    # A filter still narrows it down.
    pending = _exported(cli("payouts", "export", "--status", "pending").stdout)
    assert [ln["payout_id"] for ln in pending] == [str(without.id)]


@pytest.mark.parametrize(
    "args",
    [
        ("payouts", "export", "--output", "{missing}/payouts.csv"),
        ("payouts", "export", "--output", "{folder}"),
    ],
)
def test_an_unwritable_output_path_is_one_line_and_exit_2(
    cli: Callable[..., Ran], tmp_path: Path, args: tuple[str, ...]
) -> None:
    paths = {"missing": str(tmp_path / "no" / "such"), "folder": str(tmp_path)}
    ran = cli(*(a.format(**paths) for a in args))
    assert ran.returncode == 2
    [line] = ran.stderr.splitlines()
    assert line.startswith("error: cannot write ") and "Traceback" not in ran.stderr


def test_an_unreadable_import_file_is_one_line_and_exit_2(
    cli: Callable[..., Ran], tmp_path: Path
) -> None:
    ran = cli("conversions", "import", str(tmp_path / "nope.csv"))
    assert ran.returncode == 2
    assert ran.stderr.splitlines() == [
        f"error: cannot read {tmp_path / 'nope.csv'}: No such file or directory"
    ]
