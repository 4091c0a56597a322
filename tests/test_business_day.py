"""Business days are Asia/Almaty days (UTC+5): local day D is [D-1 19:00 UTC, D 19:00 UTC).

Pure rules first (pos.business_day, the page filter), then the reports and the statement on
the database, where the per-day grouping is SQL (SQLite, and PostgreSQL with TEST_DATABASE_URL).
"""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime, timedelta

import pytest
from business_day_support import sale_at
from sqlalchemy.orm import Session

from merchant_portal.local_time import localtime
from pos import business_day, invoices
from pos.models import Invoice, Merchant
from pos.runtime import Runtime
from pos.states import PaymentMethod
from settlement.ledger import reports, statements

import factories

FIRST, SECOND = date(2026, 3, 1), date(2026, 3, 2)
MIDNIGHT = datetime(2026, 3, 1, 19, 0, tzinfo=UTC)  # 2026-03-02 00:00 local
BEFORE_MIDNIGHT = MIDNIGHT - timedelta(seconds=1)  # 2026-03-01 23:59:59 local
AFTER_MIDNIGHT = datetime(2026, 3, 1, 19, 30, tzinfo=UTC)  # 2026-03-02 00:30 local


# --- pure -------------------------------------------------------------------------------------


def test_a_local_day_is_1900_utc_to_1900_utc() -> None:
    assert business_day.day_start(SECOND) == MIDNIGHT
    assert business_day.day_range(SECOND, SECOND) == (MIDNIGHT, MIDNIGHT + timedelta(days=1))
    period = reports.DateRange(SECOND, SECOND)
    assert (period.start_at, period.end_before) == (MIDNIGHT, MIDNIGHT + timedelta(days=1))
    assert not period.start_at <= BEFORE_MIDNIGHT < period.end_before  # 18:59:59 is the 1st's
    assert period.start_at <= AFTER_MIDNIGHT < period.end_before


@pytest.mark.parametrize(
    ("moment", "day"),
    [
        (BEFORE_MIDNIGHT, FIRST),
        (MIDNIGHT, SECOND),
        (AFTER_MIDNIGHT, SECOND),
        (datetime(2026, 3, 2, 18, 59, 59, tzinfo=UTC), SECOND),
        (datetime(2026, 3, 2, 19, 0, tzinfo=UTC), date(2026, 3, 3)),
    ],
)
def test_local_date_and_today(moment: datetime, day: date) -> None:
    assert business_day.local_date(moment) == day
    assert business_day.today(moment) == day


def test_page_filter_prints_the_zone_clock() -> None:
    assert localtime(AFTER_MIDNIGHT) == "2026-03-02 00:30"
    assert localtime(BEFORE_MIDNIGHT, "%Y-%m-%d %H:%M:%S") == "2026-03-01 23:59:59"
    assert localtime(AFTER_MIDNIGHT.replace(tzinfo=None), "%H:%M") == "00:30"  # naive is UTC
    assert localtime("2026-03-01T19:30:00+00:00") == "2026-03-02 00:30"  # ISO from a record
    assert localtime("not a time") == "not a time"
    assert localtime(None) == ""


# --- reports and statements on the database ---------------------------------------------------


def _invoice_at(session: Session, runtime: Runtime, merchant: Merchant, at: datetime) -> Invoice:
    invoice = invoices.create_invoice(
        session,
        runtime.settings,
        runtime.rates,
        invoices.InvoiceRequest(merchant.id, 100_000, PaymentMethod.KZTE),
    )
    invoice.created_at = at
    session.flush()
    return invoice


@pytest.fixture
def around_midnight(runtime: Runtime, session: Session) -> tuple[Merchant, Invoice, Invoice]:
    """A sale at local 03-01 23:59:59 (18:59:59 UTC) and one at 03-02 00:30 (19:30 UTC)."""
    shop = factories.merchant(session, runtime.settings, "Day Shop", "day")
    late = _invoice_at(session, runtime, shop, BEFORE_MIDNIGHT)
    early = _invoice_at(session, runtime, shop, AFTER_MIDNIGHT)
    sale_at(session, shop.id, late.id, 100_000, 1_000, BEFORE_MIDNIGHT)
    sale_at(session, shop.id, early.id, 250_000, 2_500, AFTER_MIDNIGHT)
    session.commit()
    return shop, late, early


def _total(counts: dict[str, int]) -> int:
    return sum(counts.values())


def test_zone_dashboard_counts_the_1930_utc_sale_on_the_next_local_day(
    session: Session, around_midnight: tuple[Merchant, Invoice, Invoice]
) -> None:
    second = reports.zone_dashboard(session, reports.DateRange(SECOND, SECOND))
    assert second.volume_by_day == [(SECOND, {"btc": 0, "kzte": 250_000})]
    assert second.fees_tiyn == 2_500 and _total(second.invoice_counts) == 1
    first = reports.zone_dashboard(session, reports.DateRange(FIRST, FIRST))
    assert first.volume_by_day == [(FIRST, {"btc": 0, "kzte": 100_000})]
    assert first.fees_tiyn == 1_000 and _total(first.invoice_counts) == 1


def test_zone_dashboard_groups_per_local_day_in_sql(
    session: Session, around_midnight: tuple[Merchant, Invoice, Invoice]
) -> None:
    # Both sales are on UTC day 03-01; grouped by local day they fall on 03-01 and 03-02.
    board = reports.zone_dashboard(session, reports.DateRange(FIRST, SECOND))
    assert board.volume_by_day == [
        (FIRST, {"btc": 0, "kzte": 100_000}),
        (SECOND, {"btc": 0, "kzte": 250_000}),
    ]
    volume_csv = list(csv.reader(io.StringIO(reports.csv_text(board.tables()["volume"]))))
    assert volume_csv[1:] == [
        ["2026-03-01", "0", "100000", "100000"],
        ["2026-03-02", "0", "250000", "250000"],
    ]


def test_statement_of_one_local_day_and_its_csv(
    session: Session, around_midnight: tuple[Merchant, Invoice, Invoice]
) -> None:
    shop, late, early = around_midnight
    statement = statements.merchant_statement(session, shop.id, reports.DateRange(SECOND, SECOND))
    assert statement.opening_tiyn == 99_000  # the 18:59:59 UTC sale closed the 1st
    assert [ln.invoice_id for ln in statement.lines] == [early.id]
    assert statement.closing_tiyn == 99_000 + 247_500
    _header, rows = statement.tables()["statement"]
    assert [row[0] for row in rows] == [
        "2026-03-02T00:00:00+05:00",  # opening: local midnight
        "2026-03-02T00:30:00+05:00",
        "2026-03-03T00:00:00+05:00",  # closing: the next local midnight
    ]
    # The JSON form stays UTC for machines.
    assert statement.as_dict()["lines"][0]["at"] == AFTER_MIDNIGHT.isoformat()
    assert late.id not in {ln.invoice_id for ln in statement.lines}
