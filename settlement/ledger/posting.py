"""Posting rules (plain functions) and the writer of balanced postings (DESIGN §7).

Accounts are rows of the chart (`pos.chart`); a leg naming an account that is not there is
refused. The rules, each with its one rounding rule:

- value of a payment = its atomic amount at the invoice's locked rate, rounded DOWN to the
  tiyn, each payment on its own (`money.sat_to_tiyn` / `money.base_units_to_tiyn`): the zone
  never books value it did not receive.
- fee = price x fee_bp / 10 000, rounded HALF-UP to the tiyn, capped at what is owed.
- allocation of a settled invoice: allocated = the value of min(due, counted final amount),
  never more than those payments' booked values; owed = min(price, allocated); fee on the
  price; net = owed - fee; rounding = allocated - owed (the satoshi ceiling of the quote).
- a conversion takes clearing value out at the weighted-average book value:
  balance_tiyn x amount_atomic / balance_atomic, rounded HALF-UP (all of it: the whole
  balance); the difference to the KZT received is fx_result.

`settlement.ledger.booking` decides which postings an invoice's payments call for; this module
only builds legs and writes them. Entries are never updated or deleted.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import cast

from sqlalchemy import Table, insert, select
from sqlalchemy.orm import Session

from pos import chart, money
from pos.chart import LedgerAccount
from pos.i18n import N_
from pos.models import Invoice
from pos.settings import Settings
from pos.states import PaymentMethod
from settlement.ledger.errors import UnbalancedPostingError, UnknownAccountError
from settlement.ledger.models import LedgerEntry, LedgerTransaction, Side, TransactionKind

log = logging.getLogger(__name__)

# Kept for the modules that name these accounts; the chart (pos.chart) is their home.
FEES = chart.FEES
REFUNDS_DUE = chart.REFUNDS_DUE
BANK = chart.BANK
FX_RESULT = chart.FX_RESULT
clearing_account = chart.clearing
payable_account = chart.payable


@dataclass(frozen=True)
class Leg:
    """One side of a posting before it is written; clearing legs also carry atomic units."""

    account: str
    side: Side
    amount_tiyn: int
    amount_atomic: int | None = None


@dataclass(frozen=True)
class Allocation:
    """How a settled invoice's received value is split."""

    allocated_tiyn: int  # taken out of unallocated
    owed_tiyn: int  # min(price, allocated): the sale
    fee_tiyn: int
    net_tiyn: int  # owed - fee: the merchant's
    rounding_tiyn: int  # allocated - owed: the satoshi ceiling of the quote


# --- the rules, pure --------------------------------------------------------------------------


def fee_tiyn(price_tiyn: int, fee_bp: int) -> int:
    """price x fee_bp / 10 000, rounded half-up to the tiyn (exact integer arithmetic)."""
    if price_tiyn < 0 or not 0 <= fee_bp <= money.BASIS_POINTS:
        raise ValueError("a fee needs a non-negative price and 0..10000 basis points")
    return (price_tiyn * fee_bp + money.BASIS_POINTS // 2) // money.BASIS_POINTS


def gross_tiyn(method: PaymentMethod, amount_atomic: int, rate: Decimal, kzte_decimals: int) -> int:
    """Value received at the locked rate, rounded down (pos.money's rule for crypto -> KZT)."""
    if method is PaymentMethod.BTC:
        return money.sat_to_tiyn(amount_atomic, rate)
    # KZTE is 1:1 with KZT; its locked rate is 1 and stays out of the arithmetic.
    return money.base_units_to_tiyn(amount_atomic, kzte_decimals)


def allocation(price_tiyn: int, allocated_tiyn: int, fee_bp: int) -> Allocation:
    """Split the allocated value into net + fee (the sale) and rounding (above the price)."""
    owed = min(price_tiyn, allocated_tiyn)
    fee = min(fee_tiyn(price_tiyn, fee_bp), owed)
    return Allocation(allocated_tiyn, owed, fee, owed - fee, allocated_tiyn - owed)


def _nonzero(legs: Iterable[Leg]) -> list[Leg]:
    return [leg for leg in legs if leg.amount_tiyn != 0]


def receipt_legs(
    direct: bool, method: PaymentMethod, merchant_id: int, value_tiyn: int, amount_atomic: int
) -> list[Leg]:
    """`tenge`: Dr zone:clearing / Cr zone:unallocated; `direct`: the merchant's memorandum."""
    if direct:
        held, unallocated = (
            chart.crypto_received(merchant_id, method),
            chart.sales_unallocated(merchant_id),
        )
    else:
        held, unallocated = chart.clearing(method), chart.UNALLOCATED
    return _nonzero(
        [
            Leg(held, Side.DEBIT, value_tiyn, amount_atomic),
            Leg(unallocated, Side.CREDIT, value_tiyn),
        ]
    )


def allocation_legs(direct: bool, merchant_id: int, split: Allocation) -> list[Leg]:
    """`tenge`: Dr unallocated / Cr payable net / Cr fees / Cr rounding.
    `direct`: Dr sales_unallocated / Cr sales (memorandum), and Dr fees_due / Cr zone:fees."""
    if direct:
        return _nonzero(
            [
                Leg(chart.sales_unallocated(merchant_id), Side.DEBIT, split.allocated_tiyn),
                Leg(chart.sales(merchant_id), Side.CREDIT, split.allocated_tiyn),
                Leg(chart.fees_due(merchant_id), Side.DEBIT, split.fee_tiyn),
                Leg(chart.FEES, Side.CREDIT, split.fee_tiyn),
            ]
        )
    return _nonzero(
        [
            Leg(chart.UNALLOCATED, Side.DEBIT, split.allocated_tiyn),
            Leg(chart.payable(merchant_id), Side.CREDIT, split.net_tiyn),
            Leg(chart.FEES, Side.CREDIT, split.fee_tiyn),
            Leg(chart.ROUNDING, Side.CREDIT, split.rounding_tiyn),
        ]
    )


def owed_back_legs(direct: bool, merchant_id: int, amount_tiyn: int) -> list[Leg]:
    """Unallocated money becomes owed back: to the zone's refunds, or the merchant's list."""
    if direct:
        source, target = chart.sales_unallocated(merchant_id), chart.refunds_owed(merchant_id)
    else:
        source, target = chart.UNALLOCATED, chart.REFUNDS_DUE
    return _nonzero([Leg(source, Side.DEBIT, amount_tiyn), Leg(target, Side.CREDIT, amount_tiyn)])


def return_legs(direct: bool, merchant_id: int, amount_tiyn: int) -> list[Leg]:
    """A returned sale: the merchant gives that much back, out of what the sale paid it.

    `tenge`: Dr payable / Cr zone:refunds_due (a payout nets it at once; the zone keeps its fee,
    as card acquirers do on a refund). `direct`: Dr sales / Cr refunds_owed, the memorandum of
    what the merchant sends back from its own wallet; the fee it owes the zone stays."""
    if direct:
        source, target = chart.sales(merchant_id), chart.refunds_owed(merchant_id)
    else:
        source, target = chart.payable(merchant_id), chart.REFUNDS_DUE
    return _nonzero([Leg(source, Side.DEBIT, amount_tiyn), Leg(target, Side.CREDIT, amount_tiyn)])


def reversal_legs(legs: Iterable[Leg]) -> list[Leg]:
    """The same legs with debit and credit swapped (atomic units included)."""
    return [
        Leg(leg.account, leg.side.opposite(), leg.amount_tiyn, leg.amount_atomic) for leg in legs
    ]


def payout_legs(merchant_id: int, amount_tiyn: int) -> list[Leg]:
    """Dr merchant payable / Cr zone:bank: the zone's bank paid the merchant."""
    return [
        Leg(chart.payable(merchant_id), Side.DEBIT, amount_tiyn),
        Leg(chart.BANK, Side.CREDIT, amount_tiyn),
    ]


def book_value_tiyn(balance_tiyn: int, balance_atomic: int, amount_atomic: int) -> int:
    """Weighted-average book value of `amount_atomic` out of a clearing balance, half-up."""
    if not 0 < amount_atomic <= balance_atomic:
        raise ValueError("the amount must be positive and within the balance")
    if amount_atomic == balance_atomic:
        return balance_tiyn
    return (2 * balance_tiyn * amount_atomic + balance_atomic) // (2 * balance_atomic)


def conversion_legs(
    method: PaymentMethod, amount_atomic: int, cleared_tiyn: int, received_tiyn: int
) -> list[Leg]:
    """Dr zone:bank received / Cr clearing book value (+ atomic) / fx_result the difference."""
    difference = received_tiyn - cleared_tiyn
    fx_side = Side.CREDIT if difference > 0 else Side.DEBIT
    return _nonzero(
        [
            Leg(chart.BANK, Side.DEBIT, received_tiyn),
            Leg(chart.clearing(method), Side.CREDIT, cleared_tiyn, amount_atomic),
            Leg(chart.FX_RESULT, fx_side, abs(difference)),
        ]
    )


def check_balanced(legs: Sequence[Leg]) -> None:
    """Raise `UnbalancedPostingError` unless debits equal credits over positive legs."""
    if len(legs) < 2:
        raise UnbalancedPostingError(N_("a posting needs at least two legs"))
    if any(leg.amount_tiyn <= 0 for leg in legs):
        raise UnbalancedPostingError(N_("every ledger entry amount must be positive"))
    debits = sum(leg.amount_tiyn for leg in legs if leg.side is Side.DEBIT)
    credits = sum(leg.amount_tiyn for leg in legs if leg.side is Side.CREDIT)
    if debits != credits:
        raise UnbalancedPostingError(
            f"posting is unbalanced: debits {debits} tiyn, credits {credits} tiyn"
        )


# --- the service: writes postings, never commits ----------------------------------------------


@dataclass(frozen=True)
class Posting:
    """A balanced set of legs with the key of its cause."""

    key: str
    kind: TransactionKind
    legs: Sequence[Leg]
    effective_at: datetime
    invoice_id: str | None = None
    merchant_id: int | None = None
    method: str | None = None
    description: str = ""
    reverses_id: int | None = None
    fact: str | None = None
    payment_id: int | None = None


def check_accounts(session: Session, codes: Iterable[str]) -> None:
    """Raise `UnknownAccountError` for any code that is not in the chart of accounts.

    (The entries' foreign key to the chart would refuse it too; this says it in words.)
    """
    wanted = set(codes)
    found = set(session.scalars(select(LedgerAccount.code).where(LedgerAccount.code.in_(wanted))))
    missing = sorted(wanted - found)
    if missing:
        raise UnknownAccountError(f"no such ledger account: {', '.join(missing)}")


def find_transaction(session: Session, key: str) -> LedgerTransaction | None:
    return session.scalar(select(LedgerTransaction).where(LedgerTransaction.idempotency_key == key))


def write_posting(
    session: Session, posting: Posting, known_new: bool = False
) -> tuple[LedgerTransaction, bool]:
    """Insert the posting unless its key exists; (transaction, written now?).

    `known_new` skips the lookup when the caller has just checked the key itself. A
    concurrent writer of the same key loses on the unique constraint at flush
    (IntegrityError); its caller rolls back and finds the posting there on retry.
    """
    existing = None if known_new else find_transaction(session, posting.key)
    if existing is not None:
        return existing, False
    check_balanced(posting.legs)
    check_accounts(session, (leg.account for leg in posting.legs))
    txn = LedgerTransaction(
        idempotency_key=posting.key,
        kind=posting.kind,
        invoice_id=posting.invoice_id,
        merchant_id=posting.merchant_id,
        method=posting.method,
        reverses_id=posting.reverses_id,
        fact=posting.fact,
        payment_id=posting.payment_id,
        description=posting.description[:200],
        effective_at=posting.effective_at,
    )
    session.add(txn)
    session.flush()
    # One multi-row INSERT for the legs, in Core (the ORM's bulk insert splits the rows where
    # amount_atomic is NULL from the others: one statement per entry here).
    session.connection().execute(
        insert(cast(Table, LedgerEntry.__table__)),
        [
            {
                "transaction_id": txn.id,
                "account": leg.account,
                "side": leg.side,
                "amount_tiyn": leg.amount_tiyn,
                "amount_atomic": leg.amount_atomic,
                "effective_at": posting.effective_at,
            }
            for leg in posting.legs
        ],
    )
    session.expire(txn, ["entries"])  # loaded from the database if anyone asks
    return txn, True


KEY_CHUNK = 500  # keys per IN (…): well inside every database's parameter limit


def write_postings(session: Session, postings: Sequence[Posting]) -> int:
    """Insert postings whose keys the caller knows are new (the booking's plan); how many.

    All of them in one flush (one multi-row INSERT of the transactions where the database can
    return their ids) and one multi-row INSERT of every entry. A concurrent writer of one of
    the keys makes the flush fail on the unique constraint (IntegrityError): nothing of the
    batch is written, and the caller rolls back and books again.
    """
    if not postings:
        return 0
    for posting in postings:
        check_balanced(posting.legs)
    check_accounts(session, (leg.account for posting in postings for leg in posting.legs))
    # Core INSERTs on the session's connection, not ORM objects or the ORM's bulk insert (both
    # send this table one statement per row): one executemany of the transactions, then
    # their ids looked up by key.
    table = cast(Table, LedgerTransaction.__table__)
    session.connection().execute(
        insert(table),
        [
            {
                "idempotency_key": posting.key,
                "kind": posting.kind,
                "invoice_id": posting.invoice_id,
                "merchant_id": posting.merchant_id,
                "method": posting.method,
                "reverses_id": posting.reverses_id,
                "fact": posting.fact,
                "payment_id": posting.payment_id,
                "description": posting.description[:200],
                "effective_at": posting.effective_at,
            }
            for posting in postings
        ],
    )
    keys = [posting.key for posting in postings]
    ids: dict[str, int] = {}
    for start in range(0, len(keys), KEY_CHUNK):
        chunk = keys[start : start + KEY_CHUNK]
        ids.update(
            (key, txn_id)
            for txn_id, key in session.execute(
                select(table.c.id, table.c.idempotency_key).where(
                    table.c.idempotency_key.in_(chunk)
                )
            )
        )
    # The entries too (the ORM's bulk insert splits rows where amount_atomic is NULL).
    session.connection().execute(
        insert(cast(Table, LedgerEntry.__table__)),
        [
            {
                "transaction_id": ids[posting.key],
                "account": leg.account,
                "side": leg.side,
                "amount_tiyn": leg.amount_tiyn,
                "amount_atomic": leg.amount_atomic,
                "effective_at": posting.effective_at,
            }
            for posting in postings
            for leg in posting.legs
        ],
    )
    return len(postings)


def merchant_fee_bp(invoice: Invoice, settings: Settings) -> int:
    fee_bp = invoice.merchant.fee_bp
    return settings.default_fee_bp if fee_bp is None else fee_bp
