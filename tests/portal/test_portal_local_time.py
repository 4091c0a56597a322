"""Business days on the portal (DESIGN §7): totals, filters, pages and the CSV on Almaty time.

Local day 2026-03-02 is [2026-03-01 19:00 UTC, 2026-03-02 19:00 UTC). Two invoices sit either
side of that midnight: 18:59:59 UTC (23:59:59 on 03-01) and 19:30 UTC (00:30 on 03-02).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from merchant_portal import terminal
from pos import business_day
from pos.models import Invoice
from pos.runtime import Runtime

BEFORE_MIDNIGHT = datetime(2026, 3, 1, 18, 59, 59, tzinfo=UTC)  # 2026-03-01 23:59:59 local
AFTER_MIDNIGHT = datetime(2026, 3, 1, 19, 30, tzinfo=UTC)  # 2026-03-02 00:30 local


def _created_at(runtime: Runtime, invoice_id: str, moment: datetime) -> None:
    with runtime.session_factory.begin() as session:
        invoice = session.get(Invoice, invoice_id)
        assert invoice is not None
        invoice.created_at = moment


@pytest.fixture
def around_midnight(
    runtime: Runtime, make_invoice: Callable[..., str], world: dict[str, int]
) -> tuple[str, str]:
    """(invoice of local 03-01 23:59:59, invoice of local 03-02 00:30), both of shop A.

    A third one closes local 03-02 (18:59:59 UTC on the 2nd), so that local 03-02 holds two
    invoices and 03-01 one, where UTC days would hold the opposite.
    """
    late = make_invoice(world["shop"], 110_000, description="late on the first")
    early = make_invoice(world["shop"], 220_000, description="early on the second")
    last = make_invoice(world["shop"], 330_000, description="last on the second")
    _created_at(runtime, late, BEFORE_MIDNIGHT)
    _created_at(runtime, early, AFTER_MIDNIGHT)
    _created_at(runtime, last, datetime(2026, 3, 2, 18, 59, 59, tzinfo=UTC))
    return late, early


@pytest.mark.parametrize(
    ("now", "expected_created"),
    [
        (datetime(2026, 3, 2, 10, 0, tzinfo=UTC), 2),  # 15:00 local on 03-02
        (datetime(2026, 3, 1, 19, 0, tzinfo=UTC), 2),  # local midnight itself opens 03-02
        (datetime(2026, 3, 2, 18, 59, 59, tzinfo=UTC), 2),  # the last second of 03-02
        (datetime(2026, 3, 1, 18, 0, tzinfo=UTC), 1),  # 23:00 local on 03-01: the 18:59 one
        (datetime(2026, 3, 2, 19, 0, tzinfo=UTC), 0),  # 03-03 local: none
    ],
)
def test_terminal_totals_cut_at_local_midnight(
    app: Flask,
    world: dict[str, int],
    around_midnight: tuple[str, str],
    now: datetime,
    expected_created: int,
) -> None:
    with app.app_context():
        created, paid, paid_tiyn = terminal.today_totals(world["shop"], now)
    assert (created, paid, paid_tiyn) == (expected_created, 0, 0)


def test_invoice_date_filter_uses_local_days(
    as_user: Callable[[str | None], FlaskClient], around_midnight: tuple[str, str]
) -> None:
    late, early = around_midnight
    owner = as_user("owner")
    second = owner.get("/merchant/invoices/?from=2026-03-02&to=2026-03-02").get_data(True)
    assert early in second and late not in second
    first = owner.get("/merchant/invoices/?from=2026-03-01&to=2026-03-01").get_data(True)
    assert late in first and early not in first


def test_invoice_pages_show_the_local_clock(
    as_user: Callable[[str | None], FlaskClient],
    around_midnight: tuple[str, str],
    runtime: Runtime,
    world: dict[str, int],
) -> None:
    late, early = around_midnight
    owner = as_user("owner")
    listing = owner.get("/merchant/invoices/").get_data(as_text=True)
    assert "2026-03-02 00:30" in listing and "2026-03-01 23:59" in listing
    assert "2026-03-01 19:30" not in listing and "2026-03-01 18:59" not in listing
    detail = owner.get(f"/merchant/invoices/{early}").get_data(as_text=True)
    assert "2026-03-02 00:30:00 UTC+5" in detail
    receipt = as_user(None).get(f"/i/{early}/receipt").get_data(as_text=True)
    assert "2026-03-02 00:30 UTC+5" in receipt and "19:30" not in receipt
    # The terminal lists the cashier's own sales of today: move two to local 00:30 today and
    # 23:30 yesterday, made by the cashier; only the first shows, on the local clock.
    midnight = business_day.day_start(business_day.today())
    for invoice_id, moment in (
        (early, midnight + timedelta(minutes=30)),
        (late, midnight - timedelta(minutes=30)),
    ):
        with runtime.session_factory.begin() as session:
            invoice = session.get_one(Invoice, invoice_id)
            invoice.created_at, invoice.created_by_user_id = moment, world["cashier"]
    side = as_user("cashier").get("/terminal/").get_data(as_text=True)
    assert "<td>00:30</td>" in side and "<td>19:30</td>" not in side
    assert early[:8] in side and late[:8] not in side and "<td>23:30</td>" not in side


def test_recent_sales_cut_at_local_midnight(
    app: Flask, runtime: Runtime, world: dict[str, int], around_midnight: tuple[str, str]
) -> None:
    late, early = around_midnight
    with runtime.session_factory.begin() as session:
        for invoice in session.scalars(select(Invoice)):
            invoice.created_by_user_id = world["cashier"]
    with app.app_context():
        second = terminal.recent_sales(world["cashier"], datetime(2026, 3, 2, 10, tzinfo=UTC))
        first = terminal.recent_sales(world["cashier"], datetime(2026, 3, 1, 18, tzinfo=UTC))
        owners = terminal.recent_sales(world["owner"], datetime(2026, 3, 2, 10, tzinfo=UTC))
    assert early in [i.id for i in second] and late not in [i.id for i in second]
    assert [i.id for i in first] == [late] and owners == []


def test_invoice_csv_has_local_times_with_the_offset(
    as_user: Callable[[str | None], FlaskClient], around_midnight: tuple[str, str]
) -> None:
    late, early = around_midnight
    export = as_user("owner").get("/merchant/invoices/export.csv")
    rows = {r["id"]: r for r in csv.DictReader(io.StringIO(export.get_data(as_text=True)))}
    assert rows[early]["created_at"] == "2026-03-02T00:30:00+05:00"
    assert rows[late]["created_at"] == "2026-03-01T23:59:59+05:00"
    assert rows[early]["settled_at"] == ""  # not settled: an empty cell, not a time
