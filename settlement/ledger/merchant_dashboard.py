"""The owner's dashboard numbers, from the ledger (DESIGN §7), one merchant at a time.

Periods are business days (Asia/Almaty, pos.business_day): today, this week (from Monday) and
this month (from the 1st), each up to and including today. Every number belongs to the one
merchant asked for: its allocation postings (`fact = 'allocation'`, reversals included, so an
undone sale leaves the totals) and its own accounts; nothing else is read.

- sales: what the merchant sold, at the locked rates. `tenge`: net + fee (the price, never the
  satoshi ceiling above it, which is the zone's `rounding`); `direct`: the merchant's memorandum
  `sales` account (all the crypto it received for the sale, at the locked rate).
- fees: the zone's fee on those sales (`zone:fees`, this merchant's postings).
- net: sales - fees; `tenge`: what was credited to the merchant's payable.
- pending payout (`tenge`): the payable's balance now — owed by the zone, not yet paid out —
  and how much of it sits in payouts created but not yet marked paid.
- refunds due: owed back to shoppers for this merchant's invoices, now: its part of
  `zone:refunds_due` (`tenge`) plus its own `refunds_owed` (`direct`, theirs to send).
- fees due (`direct`): the balance of `fees_due`, what the merchant owes the zone.
Money is int tiyn throughout.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from sqlalchemy import BigInteger, cast, func, select
from sqlalchemy.orm import Session

from pos import chart, money
from pos.invoice_lines import InvoiceLine
from pos.models import Invoice, SettlementMode, User
from pos.states import InvoiceStatus
from settlement.ledger.models import (
    LedgerEntry,
    LedgerTransaction,
    Payout,
    PayoutStatus,
    TransactionKind,
)
from settlement.ledger.reports import ALLOCATED, METHODS, DateRange, _local_day, signed_sum

PERIODS = ("today", "week", "month")


def periods(today: date) -> dict[str, DateRange]:
    """Today, this week (Monday first) and this month, each ending today (local days)."""
    return {
        "today": DateRange(today, today),
        "week": DateRange(today - timedelta(days=today.weekday()), today),
        "month": DateRange(today.replace(day=1), today),
    }


@dataclass
class Sales:
    """Sales, fees and net of a set of allocations (reversals subtract)."""

    sales_tiyn: int = 0
    fees_tiyn: int = 0
    count: int = 0  # settled sales, minus the ones undone
    returned_tiyn: int = 0  # given back by the merchant (sale returns), less returns cancelled

    @property
    def net_tiyn(self) -> int:
        """What the merchant keeps: the sales, less the zone's fee and what was given back."""
        return self.sales_tiyn - self.fees_tiyn - self.returned_tiyn

    def add(self, mode: str, account: str, credit_minus_debit: int, merchant_id: int) -> None:
        """One account's net credits of one settlement mode's allocations."""
        if account == chart.FEES:
            self.fees_tiyn += credit_minus_debit
            if mode == SettlementMode.TENGE.value:  # the price = net + fee in `tenge`
                self.sales_tiyn += credit_minus_debit
        elif account == chart.payable(merchant_id) or account == chart.sales(merchant_id):
            self.sales_tiyn += credit_minus_debit


@dataclass(frozen=True)
class CashierSales:
    user_id: int | None  # None: made through the API, not at a till
    name: str
    sales: Sales


@dataclass(frozen=True)
class ProductSales:
    name: str
    quantity: int
    amount_tiyn: int


@dataclass
class MerchantDashboard:
    merchant_id: int
    settlement_mode: str
    today: date
    totals: dict[str, Sales]
    by_day: list[tuple[date, dict[str, int]]]  # this month's sales per day, per method
    cashiers: list[CashierSales]
    products: list[ProductSales]
    payable_tiyn: int  # `tenge`: owed to the merchant, not yet paid out
    in_payouts_tiyn: int  # of which in payouts created, not yet marked paid
    refunds_due_tiyn: int
    fees_due_tiyn: int  # `direct`: owed to the zone
    period: str = "month"  # which period the cashier and product tables cover
    ranges: dict[str, DateRange] = field(default_factory=dict)

    def tables(self) -> dict[str, tuple[Sequence[str], list[Sequence[Any]]]]:
        """Every table of the page for the CSV export (amounts in tiyn and tenge)."""
        return {
            "summary": (
                (
                    "period",
                    "from",
                    "to",
                    "sales",
                    "sales_tiyn",
                    "fees_tiyn",
                    "returned_tiyn",
                    "net_tiyn",
                ),
                [
                    (
                        name,
                        self.ranges[name].start.isoformat(),
                        self.ranges[name].end.isoformat(),
                        s.count,
                        s.sales_tiyn,
                        s.fees_tiyn,
                        s.returned_tiyn,
                        s.net_tiyn,
                    )
                    for name, s in self.totals.items()
                ],
            ),
            "days": (
                ("day", *(f"{m}_tiyn" for m in METHODS), "total_tiyn"),
                [
                    (d.isoformat(), *(v[m] for m in METHODS), sum(v.values()))
                    for d, v in self.by_day
                ],
            ),
            "cashiers": (
                ("user_id", "cashier", "sales", "sales_tiyn", "fees_tiyn", "net_tiyn"),
                [
                    (
                        c.user_id or "",
                        c.name,
                        c.sales.count,
                        c.sales.sales_tiyn,
                        c.sales.fees_tiyn,
                        c.sales.net_tiyn,
                    )
                    for c in self.cashiers
                ],
            ),
            "products": (
                ("product", "quantity", "amount_tiyn"),
                [(p.name, p.quantity, p.amount_tiyn) for p in self.products],
            ),
        }


def tenge_text(tiyn: int) -> str:
    """Exact tenge, as a CSV cell: 123456 -> '1234.56' (no thousands separator)."""
    return money.format_kzt(tiyn).replace("\u202f", "")


def with_tenge(
    table: tuple[Sequence[str], list[Sequence[Any]]],
) -> tuple[list[str], list[list[Any]]]:
    """The table with a `<name>_kzt` column of exact tenge after every `<name>_tiyn` one."""
    header, rows = table
    money_at = [i for i, name in enumerate(header) if name.endswith("_tiyn")]
    new_header: list[str] = []
    for i, name in enumerate(header):
        new_header.append(name)
        if i in money_at:
            new_header.append(name.removesuffix("_tiyn") + "_kzt")
    new_rows = []
    for row in rows:
        cells: list[Any] = []
        for i, value in enumerate(row):
            cells.append(value)
            if i in money_at:
                cells.append(tenge_text(int(value)))
        new_rows.append(cells)
    return new_header, new_rows


def _allocations(merchant_id: int, period: DateRange) -> tuple[Any, ...]:
    return (
        LedgerTransaction.merchant_id == merchant_id,
        ALLOCATED,
        LedgerEntry.effective_at >= period.start_at,
        LedgerEntry.effective_at < period.end_before,
    )


def _credits() -> Any:
    """Credits minus debits, as an int (the accounts summed here are credit-positive)."""
    return -signed_sum()


def sales(session: Session, merchant_id: int, period: DateRange) -> Sales:
    """The merchant's sales, fees and net over `period`."""
    total = Sales()
    for mode, account, amount in session.execute(
        select(Invoice.settlement_mode, LedgerEntry.account, _credits())
        .join(LedgerTransaction, LedgerTransaction.id == LedgerEntry.transaction_id)
        .join(Invoice, Invoice.id == LedgerTransaction.invoice_id)
        .where(*_allocations(merchant_id, period))
        .group_by(Invoice.settlement_mode, LedgerEntry.account)
    ):
        total.add(SettlementMode(mode).value, account, int(amount), merchant_id)
    total.count = _sale_count(session, merchant_id, period)
    total.returned_tiyn = returned(session, merchant_id, period)
    return total


def returned(session: Session, merchant_id: int, period: DateRange) -> int:
    """Sales the merchant gave back in `period`: its return postings' debits to its payable
    (`tenge`) or memorandum sales (`direct`), less the reversals of cancelled returns."""
    amount = session.scalar(
        select(signed_sum())
        .join(LedgerTransaction, LedgerTransaction.id == LedgerEntry.transaction_id)
        .where(
            LedgerTransaction.merchant_id == merchant_id,
            LedgerTransaction.fact.like("return:%"),
            LedgerEntry.account.in_([chart.payable(merchant_id), chart.sales(merchant_id)]),
            LedgerEntry.effective_at >= period.start_at,
            LedgerEntry.effective_at < period.end_before,
        )
    )
    return int(amount or 0)


def _sale_count(session: Session, merchant_id: int, period: DateRange, *where: Any) -> int:
    """Settlements minus their reversals: sales that stand."""
    counted = 0
    for kind, n in session.execute(
        select(LedgerTransaction.kind, func.count())
        .join(Invoice, Invoice.id == LedgerTransaction.invoice_id)
        .where(
            LedgerTransaction.merchant_id == merchant_id,
            ALLOCATED,
            LedgerTransaction.effective_at >= period.start_at,
            LedgerTransaction.effective_at < period.end_before,
            *where,
        )
        .group_by(LedgerTransaction.kind)
    ):
        counted += int(n) if TransactionKind(kind) is TransactionKind.SETTLEMENT else -int(n)
    return counted


def sales_by_day(
    session: Session, merchant_id: int, period: DateRange
) -> list[tuple[date, dict[str, int]]]:
    """Sales per local day and payment method (every day of the period, empty ones too)."""
    day = _local_day(session, LedgerEntry.effective_at)
    found: dict[date, dict[str, Sales]] = defaultdict(lambda: defaultdict(Sales))
    for row_day, method, mode, account, amount in session.execute(
        select(
            day, LedgerTransaction.method, Invoice.settlement_mode, LedgerEntry.account, _credits()
        )
        .join(LedgerTransaction, LedgerTransaction.id == LedgerEntry.transaction_id)
        .join(Invoice, Invoice.id == LedgerTransaction.invoice_id)
        .where(*_allocations(merchant_id, period))
        .group_by(day, LedgerTransaction.method, Invoice.settlement_mode, LedgerEntry.account)
    ):
        when = row_day if isinstance(row_day, date) else date.fromisoformat(str(row_day))
        found[when][str(method)].add(SettlementMode(mode).value, account, int(amount), merchant_id)
    return [(d, {m: found[d][m].sales_tiyn for m in METHODS}) for d in period.days()]


def sales_by_cashier(session: Session, merchant_id: int, period: DateRange) -> list[CashierSales]:
    """Sales per person who made the invoice (the cashier at the till, or the owner)."""
    per: dict[int | None, Sales] = defaultdict(Sales)
    for user_id, mode, account, amount in session.execute(
        select(Invoice.created_by_user_id, Invoice.settlement_mode, LedgerEntry.account, _credits())
        .join(LedgerTransaction, LedgerTransaction.id == LedgerEntry.transaction_id)
        .join(Invoice, Invoice.id == LedgerTransaction.invoice_id)
        .where(*_allocations(merchant_id, period))
        .group_by(Invoice.created_by_user_id, Invoice.settlement_mode, LedgerEntry.account)
    ):
        per[user_id].add(SettlementMode(mode).value, account, int(amount), merchant_id)
    # Only the merchant's own people are named (an invoice's creator is always one of them).
    names = {
        u.id: u.display_name or u.email
        for u in session.scalars(
            select(User).where(User.merchant_id == merchant_id, User.id.in_([i for i in per if i]))
        )
    }
    rows = []
    for user_id, total in per.items():
        where = (
            Invoice.created_by_user_id.is_(None)
            if user_id is None
            else Invoice.created_by_user_id == user_id
        )
        total.count = _sale_count(session, merchant_id, period, where)
        name = names.get(user_id, f"#{user_id}") if user_id is not None else ""
        rows.append(CashierSales(user_id, name, total))
    return sorted(rows, key=lambda c: (-c.sales.sales_tiyn, c.name))


def sales_by_product(session: Session, merchant_id: int, period: DateRange) -> list[ProductSales]:
    """Quantities and line amounts of the cart sales of invoices settled in `period`.

    Lines are priced as sold; a tip is part of no line and a keypad sale has none, so these
    amounts add up to less than the sales when there were tips or keypad sales.
    """
    amount = cast(
        func.coalesce(func.sum(InvoiceLine.quantity * InvoiceLine.unit_price_tiyn), 0), BigInteger
    )
    quantity = cast(func.coalesce(func.sum(InvoiceLine.quantity), 0), BigInteger)
    rows = session.execute(
        select(InvoiceLine.name, quantity, amount)
        .join(Invoice, Invoice.id == InvoiceLine.invoice_id)
        .where(
            Invoice.merchant_id == merchant_id,
            Invoice.status == InvoiceStatus.SETTLED,
            Invoice.settled_at >= period.start_at,
            Invoice.settled_at < period.end_before,
        )
        .group_by(InvoiceLine.name)
    )
    found = [ProductSales(name, int(q), int(a)) for name, q, a in rows]
    return sorted(found, key=lambda p: (-p.amount_tiyn, p.name))


def _balance(session: Session, merchant_id: int, account: str, own_txns: bool = False) -> int:
    """Credits minus debits on `account` (of this merchant's postings only, if asked)."""
    query = select(_credits()).where(LedgerEntry.account == account)
    if own_txns:
        query = query.join(
            LedgerTransaction, LedgerTransaction.id == LedgerEntry.transaction_id
        ).where(LedgerTransaction.merchant_id == merchant_id)
    return int(session.scalar(query) or 0)


def dashboard(
    session: Session, merchant_id: int, mode: SettlementMode, today: date, period: str = "month"
) -> MerchantDashboard:
    """Everything on the owner's dashboard; `period` picks what the cashier and product
    tables cover (one of PERIODS)."""
    ranges = periods(today)
    chosen = ranges[period if period in ranges else "month"]
    in_payouts = session.scalar(
        select(cast(func.coalesce(func.sum(Payout.amount_tiyn), 0), BigInteger)).where(
            Payout.merchant_id == merchant_id, Payout.status == PayoutStatus.PENDING
        )
    )
    return MerchantDashboard(
        merchant_id=merchant_id,
        settlement_mode=mode.value,
        today=today,
        totals={name: sales(session, merchant_id, r) for name, r in ranges.items()},
        by_day=sales_by_day(session, merchant_id, ranges["month"]),
        cashiers=sales_by_cashier(session, merchant_id, chosen),
        products=sales_by_product(session, merchant_id, chosen),
        payable_tiyn=_balance(session, merchant_id, chart.payable(merchant_id)),
        in_payouts_tiyn=int(in_payouts or 0),
        refunds_due_tiyn=_balance(session, merchant_id, chart.REFUNDS_DUE, own_txns=True)
        + _balance(session, merchant_id, chart.refunds_owed(merchant_id)),
        fees_due_tiyn=-_balance(session, merchant_id, chart.fees_due(merchant_id)),
        period=period if period in ranges else "month",
        ranges=ranges,
    )
