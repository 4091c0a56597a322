"""Every account's balance, from the chart and the entries (`cryptocity report balances`).

Tiyn balances are debit-positive for assets and expenses and credit-positive for liabilities
and income, so a healthy book shows positive numbers; accounts that carry a quantity (the
clearing accounts and the merchants' memorandum crypto accounts) also show it in atomic units
(debits add).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from pos.chart import AccountType, LedgerAccount
from settlement.ledger.models import LedgerEntry, Side


@dataclass(frozen=True)
class AccountBalance:
    code: str
    type: AccountType
    merchant_id: int | None
    memorandum: bool
    balance_tiyn: int
    balance_atomic: int | None  # only for accounts that carry a quantity

    def as_dict(self) -> dict[str, object]:
        out: dict[str, object] = {
            "code": self.code,
            "type": self.type.value,
            "merchant_id": self.merchant_id,
            "memorandum": self.memorandum,
            "balance_tiyn": self.balance_tiyn,
        }
        if self.balance_atomic is not None:
            out["balance_atomic"] = self.balance_atomic
        return out


# Debits add, credits subtract.
SIGNED_TIYN = case(
    (LedgerEntry.side == Side.DEBIT, LedgerEntry.amount_tiyn), else_=-LedgerEntry.amount_tiyn
)
_ATOMIC = func.coalesce(LedgerEntry.amount_atomic, 0)
SIGNED_ATOMIC = case((LedgerEntry.side == Side.DEBIT, _ATOMIC), else_=-_ATOMIC)


def account_balances(session: Session, merchant_id: int | None = None) -> list[AccountBalance]:
    """All accounts (or one merchant's), zone first, in code order; empty ones included."""
    sums = {
        code: (int(tiyn or 0), int(atomic or 0))
        for code, tiyn, atomic in session.execute(
            select(
                LedgerEntry.account,
                func.sum(SIGNED_TIYN),
                func.sum(SIGNED_ATOMIC),
            ).group_by(LedgerEntry.account)
        )
    }
    query = select(LedgerAccount).order_by(
        LedgerAccount.merchant_id.is_not(None), LedgerAccount.merchant_id, LedgerAccount.code
    )
    if merchant_id is not None:
        query = query.where(LedgerAccount.merchant_id == merchant_id)
    rows = []
    for account in session.scalars(query):
        debit_minus_credit, atomic = sums.get(account.code, (0, 0))
        tiyn = debit_minus_credit if account.type.debit_positive else -debit_minus_credit
        rows.append(
            AccountBalance(
                account.code,
                account.type,
                account.merchant_id,
                account.memorandum,
                tiyn,
                atomic if account.method is not None else None,
            )
        )
    return rows


def balance_map(session: Session) -> dict[str, tuple[int, int | None]]:
    """code -> (tiyn, atomic or None): what the tests and the reconciliation compare."""
    return {b.code: (b.balance_tiyn, b.balance_atomic) for b in account_balances(session)}


def ledger_balances(session: Session) -> bool:
    """Do all debits equal all credits (the trial balance)?"""
    total = session.scalar(select(func.sum(SIGNED_TIYN)))
    return int(total or 0) == 0
