"""Ledger tables: transactions and their entries (tiyn, atomic), conversions, payouts.

Entries are append-only: a correction is a reversal transaction, never an UPDATE or DELETE.
Every transaction balances (debits = credits), checked in code before insert and, on
PostgreSQL, by a deferred constraint trigger at commit (migration 0004_ledger).
"""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum

from sqlalchemy import CheckConstraint, Date, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from pos.db import Base, enum_column, utcnow


class Side(StrEnum):
    DEBIT = "debit"
    CREDIT = "credit"

    def opposite(self) -> Side:
        return Side.CREDIT if self is Side.DEBIT else Side.DEBIT


class TransactionKind(StrEnum):
    RECEIPT = "receipt"  # a payment became final: its value (and quantity) received
    SETTLEMENT = "settlement"  # an invoice settled: the due value allocated to payable + fee
    OWED_BACK = "owed_back"  # what an invoice received beyond its allocation: to refund
    REVERSAL = "reversal"  # exactly one earlier posting undone (finality lost, double spend)
    PAYOUT = "payout"  # fiat paid to a merchant from the zone's bank account
    CONVERSION = "conversion"  # crypto sold for fiat; rate difference to fx_result
    REFUND = "refund"  # money owed back sent to the shopper and confirmed on chain
    FEE_PAYMENT = "fee_payment"  # a `direct` merchant paid their fee invoice


class PayoutStatus(StrEnum):
    PENDING = "pending"
    PAID = "paid"


class LedgerTransaction(Base):
    """One balanced posting; `idempotency_key` names the cause, so nothing posts twice."""

    __tablename__ = "ledger_transactions"

    id: Mapped[int] = mapped_column(primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(String(120), unique=True)
    kind: Mapped[TransactionKind] = mapped_column(enum_column(TransactionKind, "ledger_kind"))
    invoice_id: Mapped[str | None] = mapped_column(ForeignKey("invoices.id"), index=True)
    merchant_id: Mapped[int | None] = mapped_column(ForeignKey("merchants.id"), index=True)
    method: Mapped[str | None] = mapped_column(String(8))  # btc | kzte, for settlements
    # A reversal points at what it reverses; unique, so nothing is reversed twice.
    reverses_id: Mapped[int | None] = mapped_column(
        ForeignKey("ledger_transactions.id"), unique=True
    )
    description: Mapped[str] = mapped_column(String(200), default="")
    # What in the invoice's state calls for this posting ("receipt:<payment id>", "allocation",
    # "owed_back"); the booking compares these with what the invoice's payments now justify.
    fact: Mapped[str | None] = mapped_column(String(80))
    payment_id: Mapped[int | None] = mapped_column(ForeignKey("payments.id"), index=True)
    effective_at: Mapped[datetime] = mapped_column(index=True)  # when it happened (the event)
    posted_at: Mapped[datetime] = mapped_column(default=utcnow)

    entries: Mapped[list[LedgerEntry]] = relationship(
        back_populates="transaction", order_by="LedgerEntry.id"
    )


class LedgerEntry(Base):
    """One leg: a positive amount on one side of one account."""

    __tablename__ = "ledger_entries"
    __table_args__ = (
        CheckConstraint("amount_tiyn > 0", name="amount_positive"),
        # Statements and dashboards read one account over a date range.
        Index("ix_ledger_entries_account_effective_at", "account", "effective_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    transaction_id: Mapped[int] = mapped_column(ForeignKey("ledger_transactions.id"), index=True)
    account: Mapped[str] = mapped_column(String(64), ForeignKey("ledger_accounts.code"))
    side: Mapped[Side] = mapped_column(enum_column(Side, "ledger_side"))
    amount_tiyn: Mapped[int]
    # Clearing (and memorandum crypto) legs: the satoshi / token base units moved with the tiyn.
    amount_atomic: Mapped[int | None] = mapped_column(default=None)
    effective_at: Mapped[datetime]  # copied from the transaction, for range scans by account

    transaction: Mapped[LedgerTransaction] = relationship(back_populates="entries")


class Conversion(Base):
    """Crypto the zone sold (or KZTE it redeemed) and the KZT its bank actually received."""

    __tablename__ = "conversions"
    __table_args__ = (
        CheckConstraint("amount_atomic > 0", name="amount_positive"),
        CheckConstraint("proceeds_tiyn >= 0", name="proceeds_nonnegative"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    method: Mapped[str] = mapped_column(String(8))
    amount_atomic: Mapped[int]
    proceeds_tiyn: Mapped[int]
    book_value_tiyn: Mapped[int]  # the clearing value taken out, at weighted-average cost
    reference: Mapped[str | None] = mapped_column(String(100), unique=True)
    recorded_by_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    transaction_id: Mapped[int] = mapped_column(ForeignKey("ledger_transactions.id"))


class Payout(Base):
    """A daily settlement batch for one merchant: pending until an operator marks it paid."""

    __tablename__ = "payouts"
    __table_args__ = (
        UniqueConstraint("merchant_id", "business_date"),
        CheckConstraint("amount_tiyn > 0", name="amount_positive"),
        CheckConstraint(
            "(status = 'paid') = (bank_reference IS NOT NULL)", name="paid_has_reference"
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    merchant_id: Mapped[int] = mapped_column(ForeignKey("merchants.id"), index=True)
    business_date: Mapped[date] = mapped_column(Date, index=True)
    amount_tiyn: Mapped[int]
    status: Mapped[PayoutStatus] = mapped_column(
        enum_column(PayoutStatus, "payout_status"), default=PayoutStatus.PENDING, index=True
    )
    bank_reference: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    paid_at: Mapped[datetime | None] = mapped_column(default=None)
    paid_by_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    transaction_id: Mapped[int | None] = mapped_column(ForeignKey("ledger_transactions.id"))

    lines: Mapped[list[PayoutLine]] = relationship(
        back_populates="payout", order_by="PayoutLine.id"
    )


class PayoutLine(Base):
    """One payable entry included in a payout; an entry is batched at most once."""

    __tablename__ = "payout_lines"

    id: Mapped[int] = mapped_column(primary_key=True)
    payout_id: Mapped[int] = mapped_column(ForeignKey("payouts.id"), index=True)
    entry_id: Mapped[int] = mapped_column(ForeignKey("ledger_entries.id"), unique=True)
    amount_tiyn: Mapped[int]  # signed: credits to the payable add, debits (reversals) subtract

    payout: Mapped[Payout] = relationship(back_populates="lines")


class RefundStatus(StrEnum):
    CLAIMABLE = "claimable"  # created; the shopper has not said where to send it yet
    CLAIMED = "claimed"  # the shopper gave a destination
    SENT = "sent"  # the zone (or the merchant) recorded the transaction that pays it
    CONFIRMED = "confirmed"  # the watcher found that transaction paying it, final: posted
    CANCELLED = "cancelled"


class RefundKind(StrEnum):
    OWED_BACK = "owed_back"  # what the booking owes back: paid over, paid late, expired short
    SALE_RETURN = "sale_return"  # the merchant returns a settled sale (or part of it)


class Refund(Base):
    """Money owed back to a shopper, claimed at `/r/<token>` and sent from a wallet the server
    does not hold; posted (Dr refunds due / Cr clearing) only once the chain confirms it.

    A `sale_return` is also booked when it is created (settlement.ledger.booking): the merchant
    gives that much of the sale back, from its payable (`tenge`) or its memorandum sales
    (`direct`), to what is owed back; cancelling it reverses that."""

    __tablename__ = "refunds"
    __table_args__ = (
        CheckConstraint("amount_tiyn > 0", name="amount_positive"),
        CheckConstraint("amount_atomic > 0", name="atomic_positive"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    token: Mapped[str] = mapped_column(String(64), unique=True)
    invoice_id: Mapped[str] = mapped_column(ForeignKey("invoices.id"), index=True)
    merchant_id: Mapped[int] = mapped_column(ForeignKey("merchants.id"), index=True)
    method: Mapped[str] = mapped_column(String(8))
    settlement_mode: Mapped[str] = mapped_column(String(8))  # who sends it: zone | merchant
    kind: Mapped[RefundKind] = mapped_column(
        enum_column(RefundKind, "refund_kind"),
        default=RefundKind.OWED_BACK,
        server_default=RefundKind.OWED_BACK.value,
    )
    amount_tiyn: Mapped[int]  # the value owed back, as booked
    amount_atomic: Mapped[int]  # satoshi / KZTE base units to send
    status: Mapped[RefundStatus] = mapped_column(
        enum_column(RefundStatus, "refund_status"), default=RefundStatus.CLAIMABLE, index=True
    )
    destination: Mapped[str | None] = mapped_column(String(100))  # address or wallet
    destination_account: Mapped[str | None] = mapped_column(String(64))  # KZTE: the ATA
    txid: Mapped[str | None] = mapped_column(String(128), unique=True)
    block_hash: Mapped[str | None] = mapped_column(String(100))
    search_from_height: Mapped[int | None]  # BTC: the tip when it was recorded sent
    problem: Mapped[str | None] = mapped_column(String(200))  # why it is not confirmed (yet)
    created_by_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    claimed_at: Mapped[datetime | None] = mapped_column(default=None)
    sent_at: Mapped[datetime | None] = mapped_column(default=None)
    confirmed_at: Mapped[datetime | None] = mapped_column(default=None)
    transaction_id: Mapped[int | None] = mapped_column(ForeignKey("ledger_transactions.id"))


class FeeInvoiceStatus(StrEnum):
    ISSUED = "issued"
    PAID = "paid"


class FeeInvoice(Base):
    """A `direct` merchant's monthly bill for the fees accrued on `merchant:<id>:fees_due`."""

    __tablename__ = "fee_invoices"
    __table_args__ = (
        UniqueConstraint("merchant_id", "month"),
        CheckConstraint("amount_tiyn > 0", name="amount_positive"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    merchant_id: Mapped[int] = mapped_column(ForeignKey("merchants.id"), index=True)
    month: Mapped[str] = mapped_column(String(7))  # YYYY-MM, Asia/Almaty
    amount_tiyn: Mapped[int]
    status: Mapped[FeeInvoiceStatus] = mapped_column(
        enum_column(FeeInvoiceStatus, "fee_invoice_status"), default=FeeInvoiceStatus.ISSUED
    )
    issued_at: Mapped[datetime] = mapped_column(default=utcnow)
    paid_at: Mapped[datetime | None] = mapped_column(default=None)
    bank_reference: Mapped[str | None] = mapped_column(String(100))
    transaction_id: Mapped[int | None] = mapped_column(ForeignKey("ledger_transactions.id"))
