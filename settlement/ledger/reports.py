"""Report queries: the operator's zone dashboard and a merchant's statement.

Numbers come from the ledger (volume, fees, balances) and the invoices (counts, timings);
the web pages and `cryptocity report … --json` render these same dataclasses. Days are business
days (Asia/Almaty, UTC+5, pos.business_day): a range and each per-day row cut at local midnight,
19:00 UTC. Money is int tiyn; durations are whole seconds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import BigInteger, Date, Integer, case, cast, func, literal_column, or_, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from pos import business_day, csv_safe
from pos.errors import ValidationError
from pos.i18n import N_
from pos.models import Invoice, Merchant
from pos.states import InvoiceStatus, PaymentMethod
from settlement.ledger.models import (
    LedgerEntry,
    LedgerTransaction,
    Payout,
    PayoutStatus,
    Side,
    TransactionKind,
)
from settlement.ledger.posting import FEES, payable_account

MAX_RANGE_DAYS = 366
METHODS = tuple(m.value for m in PaymentMethod)
# A sale is an allocation (posting.allocation_legs) and, if it was undone, its reversal: the
# volume is what left the unallocated account for sales, in `tenge` and `direct` alike.
ALLOCATED = LedgerTransaction.fact == "allocation"
UNALLOCATED = "zone:unallocated"
UNALLOCATED_ACCOUNTS = or_(
    LedgerEntry.account == UNALLOCATED, LedgerEntry.account.like("merchant:%:sales_unallocated")
)
Table = tuple[Sequence[str], list[Sequence[Any]]]


@dataclass(frozen=True)
class DateRange:
    """Whole business days (pos.business_day), both ends included."""

    start: date
    end: date

    @property
    def start_at(self) -> datetime:
        return business_day.day_start(self.start)

    @property
    def end_before(self) -> datetime:
        return business_day.day_range(self.start, self.end)[1]

    def days(self) -> list[date]:
        return [self.start + timedelta(days=i) for i in range((self.end - self.start).days + 1)]

    def as_dict(self) -> dict[str, str]:
        return {"from": self.start.isoformat(), "to": self.end.isoformat()}


def parse_range(
    start: str | None, end: str | None, today: date, default_days: int = 30
) -> DateRange:
    """A date range from `YYYY-MM-DD` texts; missing ends default to the last N days."""
    last = _parse_date(end, "to") if end else today
    first = _parse_date(start, "from") if start else last - timedelta(days=default_days - 1)
    if first > last:
        raise ValidationError(N_("the start date is after the end date"), field="from")
    if (last - first).days + 1 > MAX_RANGE_DAYS:
        raise ValidationError(
            N_("a report covers at most %(days)d days"), field="from", days=MAX_RANGE_DAYS
        )
    return DateRange(first, last)


def _parse_date(text: str, field_name: str) -> date:
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise ValidationError(
            N_("%(text)s is not a date like 2026-11-23"), field=field_name, text=repr(text)
        ) from None


# --- dialect helpers --------------------------------------------------------------------------


# The zone's fixed offset ("+300 minutes"), written into the SQL as a constant rather than a
# bound parameter, so the GROUP BY expression is the very text of the selected column.
_OFFSET = f"{int(business_day.ZONE_TZ.utcoffset(None).total_seconds()) // 60:+d} minutes"


def _local_day(session: Session, column: Any) -> ColumnElement[Any]:
    """The business day of a stored UTC time, computed by the database."""
    if session.get_bind().dialect.name == "postgresql":
        # timezone(interval, timestamptz): the wall clock at that offset (ISO sign, unlike
        # the POSIX '+05' zone names, which mean UTC-5).
        return cast(func.timezone(literal_column(f"INTERVAL '{_OFFSET}'"), column), Date)
    # SQLite keeps UTC as text; date() with a modifier shifts it onto the zone's clock.
    return func.date(column, literal_column(f"'{_OFFSET}'"))


def _seconds_between(session: Session, later: Any, earlier: Any) -> ColumnElement[Any]:
    if session.get_bind().dialect.name == "postgresql":
        return cast(func.extract("epoch", later - earlier), BigInteger)
    return cast(func.round((func.julianday(later) - func.julianday(earlier)) * 86400), Integer)


def _as_date(value: Any) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value))


def signed_sum() -> ColumnElement[Any]:
    """Debit positive, credit negative, summed as an int on every backend."""
    return cast(
        func.coalesce(
            func.sum(
                case(
                    (LedgerEntry.side == Side.DEBIT, LedgerEntry.amount_tiyn),
                    else_=-LedgerEntry.amount_tiyn,
                )
            ),
            0,
        ),
        BigInteger,
    )


def median_seconds(session: Session, later: Any, earlier: Any, *where: Any) -> int | None:
    """The median of `later - earlier` in whole seconds (lower middle on ties), in SQL."""
    duration = _seconds_between(session, later, earlier)
    n = session.scalar(select(func.count()).select_from(Invoice).where(*where)) or 0
    if n == 0:
        return None
    middle = session.scalars(
        select(duration).where(*where).order_by(duration).offset((n - 1) // 2).limit(2 - n % 2)
    ).all()
    return sum(int(v) for v in middle) // len(middle)


# --- zone dashboard ---------------------------------------------------------------------------


@dataclass
class MerchantActivity:
    merchant_id: int
    name: str
    settlement_mode: str = "tenge"  # `direct`: the volume is theirs, only the fee is the zone's
    settlements: int = 0
    reversals: int = 0
    volume_tiyn: int = 0
    fees_tiyn: int = 0
    net_tiyn: int = 0


@dataclass
class ZoneDashboard:
    range: DateRange
    volume_by_day: list[tuple[date, dict[str, int]]]
    invoice_counts: dict[str, int]
    merchants: list[MerchantActivity]
    median_detection_seconds: int | None
    median_settlement_seconds: int | None
    fees_tiyn: int
    pending_payouts: int
    pending_payouts_tiyn: int
    owed_to_merchants_tiyn: int
    volume_by_method: dict[str, int] = field(default_factory=dict)

    @property
    def volume_tiyn(self) -> int:
        return sum(self.volume_by_method.values())

    @property
    def active_merchants(self) -> int:
        return sum(1 for m in self.merchants if m.settlements > 0)

    def tables(self) -> dict[str, Table]:
        """Every table of the page, for CSV export."""
        return {
            "volume": (
                ("day", *METHODS, "total_tiyn"),
                [
                    (d.isoformat(), *(v[m] for m in METHODS), sum(v.values()))
                    for d, v in self.volume_by_day
                ],
            ),
            "invoices": (("status", "count"), [*sorted(self.invoice_counts.items())]),
            "merchants": (
                (
                    "merchant_id",
                    "name",
                    "settlement_mode",
                    "settlements",
                    "reversals",
                    "volume_tiyn",
                    "fees_tiyn",
                    "net_tiyn",
                ),
                [
                    (
                        m.merchant_id,
                        m.name,
                        m.settlement_mode,
                        m.settlements,
                        m.reversals,
                        m.volume_tiyn,
                        m.fees_tiyn,
                        m.net_tiyn,
                    )
                    for m in self.merchants
                ],
            ),
        }

    def as_dict(self) -> dict[str, Any]:
        return {
            "range": self.range.as_dict(),
            "volume_tiyn": self.volume_tiyn,
            "volume_by_method": self.volume_by_method,
            "volume_by_day": [{"day": d.isoformat(), **v} for d, v in self.volume_by_day],
            "invoice_counts": self.invoice_counts,
            "invoices_total": sum(self.invoice_counts.values()),
            "active_merchants": self.active_merchants,
            "merchants": [vars(m) for m in self.merchants],
            "median_detection_seconds": self.median_detection_seconds,
            "median_settlement_seconds": self.median_settlement_seconds,
            "fees_tiyn": self.fees_tiyn,
            "pending_payouts": self.pending_payouts,
            "pending_payouts_tiyn": self.pending_payouts_tiyn,
            "owed_to_merchants_tiyn": self.owed_to_merchants_tiyn,
        }


def zone_dashboard(session: Session, period: DateRange) -> ZoneDashboard:
    """Everything on the operator's dashboard for `period`."""
    in_range = (
        LedgerEntry.effective_at >= period.start_at,
        LedgerEntry.effective_at < period.end_before,
    )
    day = _local_day(session, LedgerEntry.effective_at)
    volume: dict[date, dict[str, int]] = {d: dict.fromkeys(METHODS, 0) for d in period.days()}
    for row_day, method, amount in session.execute(
        select(day, LedgerTransaction.method, signed_sum())
        .join(LedgerTransaction, LedgerTransaction.id == LedgerEntry.transaction_id)
        .where(*in_range, ALLOCATED, UNALLOCATED_ACCOUNTS)
        .group_by(day, LedgerTransaction.method)
    ):
        if method in METHODS:
            volume.setdefault(_as_date(row_day), dict.fromkeys(METHODS, 0))[method] += int(amount)
    by_method = {m: sum(v[m] for v in volume.values()) for m in METHODS}

    fees = -int(
        session.scalar(select(signed_sum()).where(*in_range, LedgerEntry.account == FEES)) or 0
    )
    created = (Invoice.created_at >= period.start_at, Invoice.created_at < period.end_before)
    counts = {s.value: 0 for s in InvoiceStatus}
    for status, n in session.execute(
        select(Invoice.status, func.count()).where(*created).group_by(Invoice.status)
    ):
        counts[InvoiceStatus(status).value] = int(n)
    pending_n, pending_sum = session.execute(
        select(
            func.count(), cast(func.coalesce(func.sum(Payout.amount_tiyn), 0), BigInteger)
        ).where(Payout.status == PayoutStatus.PENDING)
    ).one()
    owed = -int(
        session.scalar(select(signed_sum()).where(LedgerEntry.account.like("merchant:%:payable")))
        or 0
    )
    return ZoneDashboard(
        range=period,
        volume_by_day=sorted(volume.items()),
        volume_by_method=by_method,
        invoice_counts=counts,
        merchants=_merchant_activity(session, period),
        median_detection_seconds=median_seconds(
            session,
            Invoice.detected_at,
            Invoice.created_at,
            *created,
            Invoice.detected_at.is_not(None),
        ),
        median_settlement_seconds=median_seconds(
            session,
            Invoice.settled_at,
            Invoice.created_at,
            *created,
            Invoice.settled_at.is_not(None),
        ),
        fees_tiyn=fees,
        pending_payouts=int(pending_n),
        pending_payouts_tiyn=int(pending_sum),
        owed_to_merchants_tiyn=owed,
    )


def _merchant_activity(session: Session, period: DateRange) -> list[MerchantActivity]:
    names = dict(session.execute(select(Merchant.id, Merchant.name)).all())
    modes = {
        mid: mode.value
        for mid, mode in session.execute(select(Merchant.id, Merchant.settlement_mode))
    }
    found: dict[int, MerchantActivity] = {}

    def row(merchant_id: int) -> MerchantActivity:
        if merchant_id not in found:
            found[merchant_id] = MerchantActivity(
                merchant_id, names.get(merchant_id, "?"), modes.get(merchant_id, "tenge")
            )
        return found[merchant_id]

    for merchant_id, account, amount in session.execute(
        select(LedgerTransaction.merchant_id, LedgerEntry.account, signed_sum())
        .join(LedgerTransaction, LedgerTransaction.id == LedgerEntry.transaction_id)
        .where(
            LedgerEntry.effective_at >= period.start_at,
            LedgerEntry.effective_at < period.end_before,
            ALLOCATED,
        )
        .group_by(LedgerTransaction.merchant_id, LedgerEntry.account)
    ):
        if merchant_id is None:
            continue
        activity = row(int(merchant_id))
        if account == UNALLOCATED or account.endswith(":sales_unallocated"):
            activity.volume_tiyn += int(amount)
        elif account == FEES:
            activity.fees_tiyn -= int(amount)
        elif account == payable_account(activity.merchant_id):
            activity.net_tiyn -= int(amount)
    for merchant_id, kind, n in session.execute(
        select(LedgerTransaction.merchant_id, LedgerTransaction.kind, func.count())
        .where(
            LedgerTransaction.effective_at >= period.start_at,
            LedgerTransaction.effective_at < period.end_before,
            ALLOCATED,
        )
        .group_by(LedgerTransaction.merchant_id, LedgerTransaction.kind)
    ):
        if merchant_id is None:
            continue
        activity = row(int(merchant_id))
        if TransactionKind(kind) is TransactionKind.SETTLEMENT:
            activity.settlements = int(n)
        else:
            activity.reversals = int(n)
    return sorted(found.values(), key=lambda m: (-m.volume_tiyn, m.merchant_id))


def csv_text(table: Table) -> str:
    """One table as CSV text (header first)."""
    header, rows = table
    return csv_safe.csv_text(header, rows)
