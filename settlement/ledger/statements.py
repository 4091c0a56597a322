"""A merchant's statement (their payable, or a `direct` merchant's fees due, over a date range).

The range is whole business days (Asia/Almaty, UTC+5; pos.business_day). The CSV shows times on
the zone's clock with their offset (2026-03-02T00:00:00+05:00); `as_dict` (JSON) keeps UTC.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from pos import business_day, chart
from pos.errors import NotFoundError
from pos.i18n import N_
from pos.models import Merchant, SettlementMode
from settlement.ledger.models import (
    FeeInvoice,
    LedgerEntry,
    LedgerTransaction,
    Payout,
    Side,
    TransactionKind,
)
from settlement.ledger.posting import payable_account
from settlement.ledger.reports import DateRange, Table, signed_sum

_DETAILED = frozenset({TransactionKind.PAYOUT.value, TransactionKind.FEE_PAYMENT.value})


def _local_iso(moment: datetime) -> str:
    return business_day.local_time(moment).isoformat()


@dataclass(frozen=True)
class StatementLine:
    at: datetime
    transaction_id: int
    kind: str
    invoice_id: str | None
    description: str
    debit_tiyn: int
    credit_tiyn: int
    balance_tiyn: int
    # What a page needs to say `description` in the reader's language (the stored text is
    # English): the booking's fact, and a payout's or fee invoice's number, day and reference.
    fact: str | None = None
    detail: Mapping[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "at": self.at.isoformat(),
            "transaction_id": self.transaction_id,
            "kind": self.kind,
            "invoice_id": self.invoice_id,
            "description": self.description,
            "debit_tiyn": self.debit_tiyn,
            "credit_tiyn": self.credit_tiyn,
            "balance_tiyn": self.balance_tiyn,
        }


def _details(session: Session, transaction_ids: Sequence[int]) -> dict[int, dict[str, str]]:
    """Per payout or fee payment transaction: its number, what it is for, the bank reference."""
    found: dict[int, dict[str, str]] = {}
    if not transaction_ids:
        return found
    ids = list(transaction_ids)
    for payout in session.scalars(select(Payout).where(Payout.transaction_id.in_(ids))):
        if payout.transaction_id is not None:
            found[payout.transaction_id] = {
                "number": str(payout.id),
                "day": payout.business_date.isoformat(),
                "reference": payout.bank_reference or "",
            }
    for bill in session.scalars(select(FeeInvoice).where(FeeInvoice.transaction_id.in_(ids))):
        if bill.transaction_id is not None:
            found[bill.transaction_id] = {
                "number": str(bill.id),
                "month": bill.month,
                "reference": bill.bank_reference or "",
            }
    return found


@dataclass
class Statement:
    """`tenge`: the merchant's payable — what the zone owes them (credits - debits).
    `direct`: their fees_due — the fees they owe the zone (debits - credits)."""

    merchant_id: int
    merchant_name: str
    range: DateRange
    opening_tiyn: int
    lines: list[StatementLine]
    settlement_mode: str = SettlementMode.TENGE.value
    account: str = ""

    @property
    def meaning(self) -> str:
        if self.settlement_mode == SettlementMode.DIRECT.value:
            return "fees owed to the zone (you keep the crypto; fees are invoiced monthly)"
        return "owed to you by the zone (paid out in KZT)"

    @property
    def closing_tiyn(self) -> int:
        return self.lines[-1].balance_tiyn if self.lines else self.opening_tiyn

    def tables(self) -> dict[str, Table]:
        header = (
            "at",
            "transaction_id",
            "kind",
            "invoice_id",
            "description",
            "debit_tiyn",
            "credit_tiyn",
            "balance_tiyn",
        )
        rows: list[Sequence[Any]] = [
            (
                _local_iso(self.range.start_at),
                "",
                "opening",
                "",
                "opening balance",
                "",
                "",
                self.opening_tiyn,
            )
        ]
        rows += [
            (
                _local_iso(ln.at),
                ln.transaction_id,
                ln.kind,
                ln.invoice_id or "",
                ln.description,
                ln.debit_tiyn,
                ln.credit_tiyn,
                ln.balance_tiyn,
            )
            for ln in self.lines
        ]
        rows.append(
            (
                _local_iso(self.range.end_before),
                "",
                "closing",
                "",
                "closing balance",
                "",
                "",
                self.closing_tiyn,
            )
        )
        return {"statement": (header, rows)}

    def as_dict(self) -> dict[str, Any]:
        return {
            "merchant_id": self.merchant_id,
            "merchant_name": self.merchant_name,
            "settlement_mode": self.settlement_mode,
            "account": self.account,
            "meaning": self.meaning,
            "range": self.range.as_dict(),
            "opening_tiyn": self.opening_tiyn,
            "closing_tiyn": self.closing_tiyn,
            "debits_tiyn": sum(ln.debit_tiyn for ln in self.lines),
            "credits_tiyn": sum(ln.credit_tiyn for ln in self.lines),
            "lines": [ln.as_dict() for ln in self.lines],
        }


def merchant_statement(session: Session, merchant_id: int, period: DateRange) -> Statement:
    """Opening balance, every entry of the period with a running balance, closing balance."""
    merchant = session.get(Merchant, merchant_id)
    if merchant is None:
        raise NotFoundError(N_("no such merchant"))
    direct = merchant.settlement_mode is SettlementMode.DIRECT
    account = chart.fees_due(merchant_id) if direct else payable_account(merchant_id)
    sign = 1 if direct else -1  # fees_due is an asset (debits), the payable a liability
    opening = sign * int(
        session.scalar(
            select(signed_sum()).where(
                LedgerEntry.account == account, LedgerEntry.effective_at < period.start_at
            )
        )
        or 0
    )
    balance = opening
    lines: list[StatementLine] = []
    for entry, txn in session.execute(
        select(LedgerEntry, LedgerTransaction)
        .join(LedgerTransaction, LedgerTransaction.id == LedgerEntry.transaction_id)
        .where(
            LedgerEntry.account == account,
            LedgerEntry.effective_at >= period.start_at,
            LedgerEntry.effective_at < period.end_before,
        )
        .order_by(LedgerEntry.effective_at, LedgerEntry.id)
    ):
        debit = entry.amount_tiyn if entry.side is Side.DEBIT else 0
        credit = entry.amount_tiyn - debit
        balance += (debit - credit) if direct else (credit - debit)
        lines.append(
            StatementLine(
                entry.effective_at,
                txn.id,
                txn.kind.value,
                txn.invoice_id,
                txn.description,
                debit,
                credit,
                balance,
                txn.fact,
            )
        )
    details = _details(session, sorted({ln.transaction_id for ln in lines if ln.kind in _DETAILED}))
    lines = [
        replace(ln, detail=details[ln.transaction_id]) if ln.transaction_id in details else ln
        for ln in lines
    ]
    mode = merchant.settlement_mode.value
    return Statement(merchant.id, merchant.name, period, opening, lines, mode, account)


def balances(session: Session) -> dict[str, int]:
    """Every account's balance as debits - credits (the whole ledger sums to zero)."""
    totals: dict[str, int] = defaultdict(int)
    for account, amount in session.execute(
        select(LedgerEntry.account, signed_sum()).group_by(LedgerEntry.account)
    ):
        totals[account] = int(amount)
    return dict(totals)
