"""Posting rules (plain functions) and the service that writes them (DESIGN §7).

Accounts, all in tiyn: `zone:clearing:<method>` (value received), `merchant:<id>:payable`
(owed to the merchant), `zone:fees`, `zone:refunds_due` (overpayments owed back), `zone:bank`
(fiat paid out / received), `zone:fx_result` (rate difference when crypto is converted).

On `invoice.settled` (one posting per event, idempotency key `invoice-event:<event id>`):
  gross       = value received at the invoice's locked rate: `money.sat_to_tiyn` /
                `money.base_units_to_tiyn` of the paid amount, rounded DOWN to the tiyn
                (the zone never books value it did not receive)
  owed        = min(price, gross)   (a within-tolerance underpayment owes only what came in)
  overpayment = gross - owed        (> 0 only when more than the price arrived)
  fee         = price x fee_bp / 10 000, rounded HALF-UP to the tiyn (the one rounding rule of
                this module; fee_bp is the merchant's, else settings.default_fee_bp), capped at
                owed so the merchant's net is never negative
  net         = owed - fee
  Dr zone:clearing:<method> gross / Cr merchant:<id>:payable net / Cr zone:fees fee /
  Cr zone:refunds_due overpayment    and gross = net + fee + overpayment exactly.
Legs of zero are left out (every entry amount is positive). The paid amount is the one the
settle event recorded (`data.paid_atomic`), so a replay years later posts the same numbers.

On `invoice.invalid` or `invoice.reopened` after a settlement posting: a reversal transaction
(the same legs, sides swapped, its own key `invoice-event:<event id>`); a later re-settle posts
again under its own event's key. Payout: Dr merchant payable / Cr zone:bank (key
`payout:<id>`). Conversion: Dr zone:bank received / Cr clearing cleared / the difference to
zone:fx_result (Cr on a gain, Dr on a loss).

Entries are never updated or deleted; balances are derived by query.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from pos import money
from pos.models import Invoice, InvoiceEvent
from pos.settings import Settings
from pos.states import EventType, PaymentMethod
from settlement.ledger.errors import UnbalancedPostingError
from settlement.ledger.models import (
    HandledEvent,
    LedgerEntry,
    LedgerTransaction,
    Side,
    TransactionKind,
)

log = logging.getLogger(__name__)

FEES = "zone:fees"
REFUNDS_DUE = "zone:refunds_due"
BANK = "zone:bank"
FX_RESULT = "zone:fx_result"
LEDGER_EVENTS = frozenset({EventType.SETTLED, EventType.INVALID, EventType.REOPENED})
REVERSING_EVENTS = frozenset({EventType.INVALID, EventType.REOPENED})


def clearing_account(method: PaymentMethod | str) -> str:
    return f"zone:clearing:{PaymentMethod(method).value}"


def payable_account(merchant_id: int) -> str:
    return f"merchant:{merchant_id}:payable"


@dataclass(frozen=True)
class Leg:
    """One side of a posting before it is written."""

    account: str
    side: Side
    amount_tiyn: int


@dataclass(frozen=True)
class SettlementAmounts:
    gross_tiyn: int
    owed_tiyn: int
    fee_tiyn: int
    net_tiyn: int
    overpayment_tiyn: int


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


def settlement_amounts(price_tiyn: int, gross: int, fee_bp: int) -> SettlementAmounts:
    """Split what came in into owed (net + fee) and overpayment; gross = net + fee + over."""
    owed = min(price_tiyn, gross)
    fee = min(fee_tiyn(price_tiyn, fee_bp), owed)
    return SettlementAmounts(
        gross_tiyn=gross,
        owed_tiyn=owed,
        fee_tiyn=fee,
        net_tiyn=owed - fee,
        overpayment_tiyn=gross - owed,
    )


def _nonzero(legs: Iterable[Leg]) -> list[Leg]:
    return [leg for leg in legs if leg.amount_tiyn != 0]


def settlement_legs(
    method: PaymentMethod, merchant_id: int, amounts: SettlementAmounts
) -> list[Leg]:
    """Dr clearing gross / Cr payable net / Cr fees fee / Cr refunds_due overpayment."""
    return _nonzero(
        [
            Leg(clearing_account(method), Side.DEBIT, amounts.gross_tiyn),
            Leg(payable_account(merchant_id), Side.CREDIT, amounts.net_tiyn),
            Leg(FEES, Side.CREDIT, amounts.fee_tiyn),
            Leg(REFUNDS_DUE, Side.CREDIT, amounts.overpayment_tiyn),
        ]
    )


def reversal_legs(legs: Iterable[Leg]) -> list[Leg]:
    """The same legs with debit and credit swapped."""
    return [Leg(leg.account, leg.side.opposite(), leg.amount_tiyn) for leg in legs]


def payout_legs(merchant_id: int, amount_tiyn: int) -> list[Leg]:
    """Dr merchant payable / Cr zone:bank: the zone's bank paid the merchant."""
    return [
        Leg(payable_account(merchant_id), Side.DEBIT, amount_tiyn),
        Leg(BANK, Side.CREDIT, amount_tiyn),
    ]


def conversion_legs(method: PaymentMethod, cleared_tiyn: int, received_tiyn: int) -> list[Leg]:
    """Crypto worth `cleared_tiyn` at locked rates sold for `received_tiyn` of fiat.

    Dr zone:bank received / Cr clearing cleared / Cr fx_result gain or Dr fx_result loss.
    """
    difference = received_tiyn - cleared_tiyn
    fx_side = Side.CREDIT if difference > 0 else Side.DEBIT
    return _nonzero(
        [
            Leg(BANK, Side.DEBIT, received_tiyn),
            Leg(clearing_account(method), Side.CREDIT, cleared_tiyn),
            Leg(FX_RESULT, fx_side, abs(difference)),
        ]
    )


def check_balanced(legs: Sequence[Leg]) -> None:
    """Raise `UnbalancedPostingError` unless debits equal credits over positive legs."""
    if len(legs) < 2:
        raise UnbalancedPostingError("a posting needs at least two legs")
    if any(leg.amount_tiyn <= 0 for leg in legs):
        raise UnbalancedPostingError("every ledger entry amount must be positive")
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
    txn = LedgerTransaction(
        idempotency_key=posting.key,
        kind=posting.kind,
        invoice_id=posting.invoice_id,
        merchant_id=posting.merchant_id,
        method=posting.method,
        reverses_id=posting.reverses_id,
        description=posting.description[:200],
        effective_at=posting.effective_at,
    )
    session.add(txn)
    session.flush()
    # One multi-row INSERT for the legs (the ORM would send one statement per entry).
    session.execute(
        insert(LedgerEntry),
        [
            {
                "transaction_id": txn.id,
                "account": leg.account,
                "side": leg.side,
                "amount_tiyn": leg.amount_tiyn,
                "effective_at": posting.effective_at,
            }
            for leg in posting.legs
        ],
    )
    session.expire(txn, ["entries"])  # loaded from the database if anyone asks
    return txn, True


def event_key(event_id: str) -> str:
    return f"invoice-event:{event_id}"


def merchant_fee_bp(invoice: Invoice, settings: Settings) -> int:
    fee_bp = invoice.merchant.fee_bp
    return settings.default_fee_bp if fee_bp is None else fee_bp


def post_invoice_event(
    session: Session, settings: Settings, event: InvoiceEvent
) -> LedgerTransaction | None:
    """Post what `event` means for the ledger; idempotent; the caller commits.

    The invoice's earlier ledger events are handled first, in version order, so the result
    never depends on the order the stream or a replay delivers them in.
    """
    if event.type not in LEDGER_EVENTS:
        return None
    invoice = event.invoice
    events = session.scalars(
        select(InvoiceEvent)
        .where(
            InvoiceEvent.invoice_id == invoice.id,
            InvoiceEvent.type.in_([e.value for e in LEDGER_EVENTS]),
            InvoiceEvent.invoice_version <= event.invoice_version,
        )
        .order_by(InvoiceEvent.invoice_version)
    ).all()
    posted = {
        txn.idempotency_key: txn
        for txn in session.scalars(
            select(LedgerTransaction).where(LedgerTransaction.invoice_id == invoice.id)
        )
    }
    handled = set(
        session.scalars(
            select(HandledEvent.event_id).where(HandledEvent.event_id.in_([e.id for e in events]))
        )
    )
    open_settlement: LedgerTransaction | None = None
    result: LedgerTransaction | None = None
    for ev in events:
        txn = posted.get(event_key(ev.id))
        if txn is None and ev.id not in handled:
            txn = _post_one(session, settings, invoice, ev, open_settlement)
            session.add(
                HandledEvent(event_id=ev.id, transaction_id=None if txn is None else txn.id)
            )
        if txn is not None:
            open_settlement = txn if txn.kind is TransactionKind.SETTLEMENT else None
        if ev.id == event.id:
            result = txn
    session.flush()
    return result


def _post_one(
    session: Session,
    settings: Settings,
    invoice: Invoice,
    event: InvoiceEvent,
    open_settlement: LedgerTransaction | None,
) -> LedgerTransaction | None:
    if event.type == EventType.SETTLED:
        if open_settlement is not None:
            log.warning("invoice %s settled again without a reversal; not posted", invoice.id)
            return None
        paid = event.data.get("paid_atomic", invoice.amount_paid_atomic)
        gross = gross_tiyn(invoice.method, int(paid), invoice.rate, settings.kzte_decimals)
        amounts = settlement_amounts(invoice.price_tiyn, gross, merchant_fee_bp(invoice, settings))
        legs = settlement_legs(invoice.method, invoice.merchant_id, amounts)
        if not legs:
            return None  # settled by hand with nothing received: no value moved
        posting = Posting(
            key=event_key(event.id),
            kind=TransactionKind.SETTLEMENT,
            legs=legs,
            effective_at=event.created_at,
            invoice_id=invoice.id,
            merchant_id=invoice.merchant_id,
            method=invoice.method.value,
            description=f"invoice {invoice.id} settled",
        )
        return write_posting(session, posting, known_new=True)[0]
    if open_settlement is None:
        return None  # invalid before it ever settled: nothing was posted, nothing to undo
    legs = reversal_legs(Leg(e.account, e.side, e.amount_tiyn) for e in open_settlement.entries)
    posting = Posting(
        key=event_key(event.id),
        kind=TransactionKind.REVERSAL,
        legs=legs,
        effective_at=event.created_at,
        invoice_id=invoice.id,
        merchant_id=invoice.merchant_id,
        method=invoice.method.value,
        description=f"invoice {invoice.id} {event.type.removeprefix('invoice.')}: reversal",
        reverses_id=open_settlement.id,
    )
    return write_posting(session, posting, known_new=True)[0]


def post_conversion(
    session: Session,
    key: str,
    method: PaymentMethod,
    cleared_tiyn: int,
    received_tiyn: int,
    at: datetime,
) -> LedgerTransaction:
    """Record crypto converted to fiat (nothing calls this yet: conversion is manual today)."""
    posting = Posting(
        key=key,
        kind=TransactionKind.CONVERSION,
        legs=conversion_legs(method, cleared_tiyn, received_tiyn),
        effective_at=at,
        method=method.value,
        description=f"{method.value} converted to KZT",
    )
    return write_posting(session, posting)[0]
