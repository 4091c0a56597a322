"""Every CSV the operator or an owner downloads is inert with hostile names, holders,
references and descriptions: through Flask's test client and the console script."""

from __future__ import annotations

import csv
import io

import pytest
from bank_support import BIC, kz_iban
from csv_support import HOSTILE, runnable_cells
from flask import Flask
from flask.testing import FlaskClient
from ledger_support import MakeInvoice, book_all, pay
from sqlalchemy.orm import Session

from pos import accounts, business_day
from pos.cli import main
from pos.models import Role
from pos.runtime import Runtime
from settlement.ledger import payouts

import factories
from portal_helpers import csrf_from, login

NAME = HOSTILE[0]  # the `;`-locale bypass: x;=cmd|' /C calc'!A0
HOLDER = "Evil;=cmd|' /C calc'!A0 LLP"


@pytest.fixture
def hostile_world(runtime: Runtime, session: Session, make_invoice: MakeInvoice) -> dict[str, int]:
    """A paid, booked, paid-out merchant whose name and bank holder are formulas."""
    evil = factories.merchant(session, runtime.settings, NAME, "evil")
    evil.payout_hold_hours = 0
    session.flush()
    accounts.set_bank_details(session, evil, HOLDER, kz_iban(evil.id), BIC)
    factories.user(session, "ops@zone.test", Role.OPERATOR)
    session.commit()
    invoice = make_invoice(150_000, merchant=evil)
    pay(session, invoice, invoice.amount_due_atomic)
    book_all(session, runtime.settings)
    payouts.run_payouts(session, business_day.today())
    session.commit()
    return {"evil": evil.id}


@pytest.fixture
def ops(app: Flask, hostile_world: dict[str, int]) -> FlaskClient:
    client = app.test_client()
    login(client, "ops@zone.test", factories.PASSWORD)
    return client


def _download(client: FlaskClient, path: str) -> str:
    response = client.get(path)
    assert response.status_code == 200 and response.mimetype == "text/csv", path
    return response.get_data(as_text=True)


def test_operator_downloads_are_inert(ops: FlaskClient, hostile_world: dict[str, int]) -> None:
    merchants = _download(ops, "/reports/zone/merchants.csv")
    assert "'=cmd" in merchants and runnable_cells(merchants) == []
    bank = _download(ops, "/reports/payouts.csv?status=pending")
    [line] = list(csv.DictReader(io.StringIO(bank)))
    assert line["merchant_name"] == "x;'=cmd|' /C calc'!A0"
    assert line["beneficiary_name"] == "Evil;'=cmd|' /C calc'!A0 LLP"
    assert line["amount_tiyn"] == "148500"  # numbers stay numbers
    assert runnable_cells(bank) == []
    statement = _download(ops, f"/reports/merchants/{hostile_world['evil']}/statement.csv")
    assert runnable_cells(statement) == []
    for path in (
        "/reports/zone/volume.csv",
        "/reports/zone/invoices.csv",
        "/reports/balances.csv",
        "/reports/reconcile/differences.csv",
    ):
        assert runnable_cells(_download(ops, path)) == [], path


def test_a_conversion_reference_cannot_run(ops: FlaskClient) -> None:
    response = ops.post(
        "/reports/conversions",
        data={
            "csrf_token": csrf_from(ops, "/reports/conversions"),
            "method": "kzte",
            "amount_atomic": "1000000",
            "proceeds": "1.00",
            "reference": "BANK;=cmd|' /C calc'!A0",
        },
    )
    assert response.status_code == 303
    text = _download(ops, "/reports/conversions.csv")
    assert "BANK;'=cmd" in text and runnable_cells(text) == []


def test_the_cli_bank_export_and_reports_are_inert(
    runtime: Runtime,
    hostile_world: dict[str, int],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = runtime.settings
    monkeypatch.setenv("CRYPTOCITY_MODE", "demo")
    monkeypatch.setenv("CRYPTOCITY_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("DATABASE_URL", settings.database_url)
    monkeypatch.setenv("REDIS_URL", settings.redis_url or "")
    monkeypatch.setenv("KZTE_MINT", settings.kzte_mint or "")
    capsys.readouterr()
    assert main(["payouts", "export", "--date", business_day.today().isoformat()]) == 0
    bank = capsys.readouterr().out
    assert "Evil;'=cmd" in bank and runnable_cells(bank) == []
    assert main(["report", "zone", "--csv", "merchants"]) == 0
    merchants = capsys.readouterr().out
    assert "x;'=cmd" in merchants and runnable_cells(merchants) == []
