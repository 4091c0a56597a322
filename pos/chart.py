"""The chart of accounts (DESIGN §7): every ledger account is a row, never a free string.

Zone accounts are opened by migration 0010, a merchant's by their registration; a posting to
an account that is not in the chart is refused (`settlement.ledger.posting.write_posting`).
Balances are in tiyn, debit-positive for assets and expenses, credit-positive for liabilities
and income; clearing accounts (and the merchants' memorandum crypto accounts) also keep the
atomic quantity beside the tiyn.

Zone (real money the zone holds or owes):
  zone:clearing:btc / :kzte   asset      crypto received at the zone's destinations (+ atomic)
  zone:unallocated            liability  received, not yet allocated to a sale or a refund
  zone:refunds_due            liability  owed back to shoppers (overpaid, late, expired short)
  zone:bank                   asset      the zone's KZT bank account
  zone:fees                   income     processing fees
  zone:rounding               income     the satoshi ceiling of BTC quotes (value of due_sat
                                         above the price)
  zone:fx_result              income     conversion gains (a loss is a debit: negative income)
Merchant <id>:
  payable                     liability  KZT the zone owes the merchant (`tenge`)
  fees_due                    asset      fees the merchant owes the zone (`direct`)
  memorandum, `direct` only (the crypto is the merchant's; kept for their statements):
  crypto_received:btc / :kzte asset      received at the merchant's own destinations (+ atomic)
  sales_unallocated           liability  received, not yet allocated
  sales                       income     sales at the locked rate
  refunds_owed                liability  for the merchant to refund (overpaid, late, expired)
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from enum import StrEnum

from sqlalchemy import CheckConstraint, ForeignKey, String, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from pos.db import Base, enum_column, utcnow
from pos.states import PaymentMethod


class AccountType(StrEnum):
    ASSET = "asset"
    LIABILITY = "liability"
    INCOME = "income"
    EXPENSE = "expense"

    @property
    def debit_positive(self) -> bool:
        return self in (AccountType.ASSET, AccountType.EXPENSE)


class LedgerAccount(Base):
    __tablename__ = "ledger_accounts"
    __table_args__ = (CheckConstraint("currency = 'KZT'", name="currency"),)

    code: Mapped[str] = mapped_column(String(64), primary_key=True)
    type: Mapped[AccountType] = mapped_column(enum_column(AccountType, "account_type"))
    currency: Mapped[str] = mapped_column(String(3), default="KZT")
    # None: the zone's own; else the merchant whose account it is.
    merchant_id: Mapped[int | None] = mapped_column(ForeignKey("merchants.id"), index=True)
    # Memorandum accounts record what the merchant holds themselves (`direct`), not zone money.
    memorandum: Mapped[bool] = mapped_column(default=False)
    # Clearing-like accounts also carry the atomic quantity (satoshi, KZTE base units).
    method: Mapped[str | None] = mapped_column(String(8))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


UNALLOCATED = "zone:unallocated"
REFUNDS_DUE = "zone:refunds_due"
BANK = "zone:bank"
FEES = "zone:fees"
ROUNDING = "zone:rounding"
FX_RESULT = "zone:fx_result"


def clearing(method: PaymentMethod | str) -> str:
    return f"zone:clearing:{PaymentMethod(method).value}"


def payable(merchant_id: int) -> str:
    return f"merchant:{merchant_id}:payable"


def fees_due(merchant_id: int) -> str:
    return f"merchant:{merchant_id}:fees_due"


def crypto_received(merchant_id: int, method: PaymentMethod | str) -> str:
    return f"merchant:{merchant_id}:crypto_received:{PaymentMethod(method).value}"


def sales_unallocated(merchant_id: int) -> str:
    return f"merchant:{merchant_id}:sales_unallocated"


def sales(merchant_id: int) -> str:
    return f"merchant:{merchant_id}:sales"


def refunds_owed(merchant_id: int) -> str:
    return f"merchant:{merchant_id}:refunds_owed"


# (code, type, memorandum, method) of the zone's accounts.
ZONE_ACCOUNTS: tuple[tuple[str, AccountType, bool, str | None], ...] = (
    *((clearing(m), AccountType.ASSET, False, m.value) for m in PaymentMethod),
    (UNALLOCATED, AccountType.LIABILITY, False, None),
    (REFUNDS_DUE, AccountType.LIABILITY, False, None),
    (BANK, AccountType.ASSET, False, None),
    (FEES, AccountType.INCOME, False, None),
    (ROUNDING, AccountType.INCOME, False, None),
    (FX_RESULT, AccountType.INCOME, False, None),
)


def merchant_accounts(merchant_id: int) -> list[tuple[str, AccountType, bool, str | None]]:
    return [
        (payable(merchant_id), AccountType.LIABILITY, False, None),
        (fees_due(merchant_id), AccountType.ASSET, False, None),
        *(
            (crypto_received(merchant_id, m), AccountType.ASSET, True, m.value)
            for m in PaymentMethod
        ),
        (sales_unallocated(merchant_id), AccountType.LIABILITY, True, None),
        (sales(merchant_id), AccountType.INCOME, True, None),
        (refunds_owed(merchant_id), AccountType.LIABILITY, True, None),
    ]


def _open(
    session: Session,
    rows: Iterable[tuple[str, AccountType, bool, str | None]],
    merchant_id: int | None,
) -> None:
    wanted = list(rows)
    have = set(
        session.scalars(
            select(LedgerAccount.code).where(LedgerAccount.code.in_([r[0] for r in wanted]))
        )
    )
    for code, type_, memo, method in wanted:
        if code not in have:
            session.add(
                LedgerAccount(
                    code=code, type=type_, merchant_id=merchant_id, memorandum=memo, method=method
                )
            )
    session.flush()


def open_zone_accounts(session: Session) -> None:
    _open(session, ZONE_ACCOUNTS, None)


def open_merchant_accounts(session: Session, merchant_id: int) -> None:
    """Every account a merchant can need in either mode (a mode change opens nothing new)."""
    _open(session, merchant_accounts(merchant_id), merchant_id)
