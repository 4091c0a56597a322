"""The durable record: SQLAlchemy 2.0 typed models.

Money columns are integers in minor units with the unit in the name. `*_atomic` amounts are in
the invoice method's smallest unit: satoshi for BTC, token base units for KZTE.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from pos.db import Base, enum_column, utcnow
from pos.states import InvoiceStatus, PaymentMethod


class MerchantStatus(StrEnum):
    PENDING = "pending"  # registered, waiting for an operator's approval
    ACTIVE = "active"
    SUSPENDED = "suspended"  # may not create invoices; open ones still settle


class SettlementMode(StrEnum):
    """Who holds the crypto (DESIGN §7): the zone (paying the merchant tenge) or the merchant."""

    TENGE = "tenge"  # invoices pay the zone's destinations; KZT payouts net of the fee
    DIRECT = "direct"  # invoices pay the merchant's own xpub / wallet; the fee is invoiced


class Role(StrEnum):
    OWNER = "owner"
    CASHIER = "cashier"
    OPERATOR = "operator"


class PaymentStatus(StrEnum):
    SEEN = "seen"  # in the mempool / confirmed commitment, not final
    CONFIRMED = "confirmed"  # in a block (BTC) - counts confirmations
    FINAL = "final"  # meets the merchant's policy (BTC) or finalized (KZTE)
    # A conflicting transaction spending one of its inputs was seen (mempool or block); the
    # proof is `Payment.replaced_by`. No longer counts.
    REPLACED = "replaced"
    # Its block left the best chain and it is not in the mempool: unknown, not failed. Counts
    # as unconfirmed for a grace window from `missing_since`; revives if mined again.
    REORGED = "reorged"
    # Vanished from the mempool without a block and without a seen conflict (node restart,
    # eviction, expiry): unknown, like REORGED.
    MISSING = "missing"


ALLOWED_CONFIRMATIONS = (0, 1, 2, 6)


class Merchant(Base):
    __tablename__ = "merchants"
    __table_args__ = (
        CheckConstraint("confirmations_required IN (0, 1, 2, 6)", name="confirmations"),
        CheckConstraint("expiry_minutes BETWEEN 1 AND 1440", name="expiry"),
        CheckConstraint("tolerance_bp BETWEEN 0 AND 1000", name="tolerance"),
        CheckConstraint("zero_conf_limit_tiyn >= 0", name="zero_conf_limit"),
        CheckConstraint("payout_hold_hours BETWEEN 0 AND 720", name="payout_hold"),
        # The last guard behind pos.accounts.check_solana_wallet: one wallet, one merchant.
        Index(
            "uq_merchants_solana_wallet",
            "solana_wallet",
            unique=True,
            sqlite_where=text("solana_wallet IS NOT NULL"),
            postgresql_where=text("solana_wallet IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(120))
    status: Mapped[MerchantStatus] = mapped_column(
        enum_column(MerchantStatus, "merchant_status"), default=MerchantStatus.ACTIVE
    )
    btc_xpub: Mapped[str | None] = mapped_column(String(200))  # the current account key
    solana_wallet: Mapped[str | None] = mapped_column(String(64))
    confirmations_required: Mapped[int] = mapped_column(default=1)
    zero_conf_limit_tiyn: Mapped[int] = mapped_column(default=0)
    expiry_minutes: Mapped[int] = mapped_column(default=15)
    tolerance_bp: Mapped[int] = mapped_column(default=0)
    fee_bp: Mapped[int | None] = mapped_column(default=None)  # None: the zone default
    # Set by the operator; a change applies to invoices created afterwards (they copy it).
    settlement_mode: Mapped[SettlementMode] = mapped_column(
        enum_column(SettlementMode, "settlement_mode"), default=SettlementMode.TENGE
    )
    # `tenge`: a sale is paid out only once its payments have been final this long.
    payout_hold_hours: Mapped[int] = mapped_column(default=24)
    # Where `tenge` payouts are transferred (pos.bank_details checks them); None: not given yet,
    # and the merchant's payouts stay out of the bank export.
    bank_holder: Mapped[str | None] = mapped_column(String(120), default=None)
    bank_iban: Mapped[str | None] = mapped_column(String(34), default=None)
    bank_bic: Mapped[str | None] = mapped_column(String(11), default=None)
    # The shop's own domains, one per line (pos.shop_domains): the checkout's "Return to the
    # shop" link goes only to https URLs on them.
    shop_domains: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    users: Mapped[list[User]] = relationship(back_populates="merchant")


class BtcAccountKey(Base):
    """A BIP84 account public key and the next receive index to hand out from it.

    The index belongs to the key, not to the merchant: a merchant who replaces their key starts
    at index 0 of the new wallet (the addresses shown for checking, inside the wallet's gap
    limit), and going back to an old key continues where it stopped. `identity` (chain code and
    public key) is the same for an xpub and a zpub of one account, so one account belongs to
    one merchant only.
    """

    __tablename__ = "btc_account_keys"
    __table_args__ = (CheckConstraint("next_index >= 0", name="next_index"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    merchant_id: Mapped[int | None] = mapped_column(ForeignKey("merchants.id"), index=True)
    xpub: Mapped[str] = mapped_column(String(200))
    identity: Mapped[str] = mapped_column(String(130), unique=True)
    next_index: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class User(Base):
    __tablename__ = "users"
    __table_args__ = (
        CheckConstraint(
            "(role = 'operator' AND merchant_id IS NULL) OR "
            "(role <> 'operator' AND merchant_id IS NOT NULL)",
            name="role_merchant",
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    display_name: Mapped[str] = mapped_column(String(120), default="")
    password_hash: Mapped[str] = mapped_column(String(256))
    role: Mapped[Role] = mapped_column(enum_column(Role, "user_role"))
    merchant_id: Mapped[int | None] = mapped_column(ForeignKey("merchants.id"), index=True)
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_login_at: Mapped[datetime | None] = mapped_column(default=None)
    # Stored in the session at sign-in and compared on every request: bumping it (sign-out,
    # password change or reset, disable) ends every session of this user, copied cookies too.
    session_generation: Mapped[int] = mapped_column(default=0)
    # Set when someone else chose the password (invite, reset, registration): every page
    # leads to the change-password page until the user picks their own.
    must_change_password: Mapped[bool] = mapped_column(default=False)
    # RFC 6238 second factor (pos.totp): the base32 secret, kept in clear (see pos.totp), and
    # the last time step accepted, so one code cannot be used twice.
    totp_secret: Mapped[str | None] = mapped_column(String(64), default=None)
    totp_last_step: Mapped[int | None] = mapped_column(default=None)
    # SHA-256 hex digests of the unused recovery codes; a used one is removed.
    recovery_code_hashes: Mapped[list[str]] = mapped_column(default=list)
    # Bumped by each use of a recovery code: the compare-and-set that lets one code in once.
    recovery_codes_used: Mapped[int] = mapped_column(default=0)

    merchant: Mapped[Merchant | None] = relationship(back_populates="users")

    @property
    def totp_enabled(self) -> bool:
        return self.totp_secret is not None


class Invoice(Base):
    __tablename__ = "invoices"
    __table_args__ = (
        UniqueConstraint("btc_account_key_id", "btc_derivation_index"),
        CheckConstraint("price_tiyn > 0", name="price_positive"),
        CheckConstraint("amount_due_atomic > 0", name="due_positive"),
        CheckConstraint("amount_paid_atomic >= 0", name="paid_nonnegative"),
        CheckConstraint("version >= 1", name="version"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    merchant_id: Mapped[int] = mapped_column(ForeignKey("merchants.id"), index=True)
    created_by_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    method: Mapped[PaymentMethod] = mapped_column(enum_column(PaymentMethod, "payment_method"))
    # The merchant's mode when the invoice was made: whose destination it pays, how it books.
    settlement_mode: Mapped[SettlementMode] = mapped_column(
        enum_column(SettlementMode, "settlement_mode")
    )
    status: Mapped[InvoiceStatus] = mapped_column(
        enum_column(InvoiceStatus, "invoice_status"), index=True
    )
    # Bumped by every event; the optimistic lock for transitions and Redis' check-and-set.
    version: Mapped[int] = mapped_column(default=1)
    price_tiyn: Mapped[int]
    description: Mapped[str] = mapped_column(String(200), default="")
    order_id: Mapped[str | None] = mapped_column(String(64))
    rate: Mapped[Decimal]  # KZT per 1 BTC or per 1 KZTE, locked at creation
    rate_source: Mapped[str] = mapped_column(String(200))
    rate_as_of: Mapped[datetime]
    # What the locked rate was made of (RateQuote.to_dict): each source with its value and
    # time, the legs of a cross, the spread or depeg checked, the sources left out and why.
    # {} on invoices made before it was recorded.
    rate_components: Mapped[dict[str, Any]] = mapped_column(default=dict)
    amount_due_atomic: Mapped[int]
    amount_paid_atomic: Mapped[int] = mapped_column(default=0)
    btc_address: Mapped[str | None] = mapped_column(String(100), unique=True)
    btc_account_key_id: Mapped[int | None] = mapped_column(ForeignKey("btc_account_keys.id"))
    btc_derivation_index: Mapped[int | None]
    kzte_recipient: Mapped[str | None] = mapped_column(String(64))
    kzte_mint: Mapped[str | None] = mapped_column(String(64))
    kzte_reference: Mapped[str | None] = mapped_column(String(64), unique=True)
    paid_partial: Mapped[bool] = mapped_column(default=False)
    paid_over: Mapped[bool] = mapped_column(default=False)
    paid_late: Mapped[bool] = mapped_column(default=False)
    marked: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    expires_at: Mapped[datetime] = mapped_column(index=True)
    detected_at: Mapped[datetime | None] = mapped_column(default=None)
    settled_at: Mapped[datetime | None] = mapped_column(default=None)

    merchant: Mapped[Merchant] = relationship()
    payments: Mapped[list[Payment]] = relationship(back_populates="invoice", order_by="Payment.id")
    events: Mapped[list[InvoiceEvent]] = relationship(
        back_populates="invoice", order_by="InvoiceEvent.invoice_version"
    )

    @property
    def flags(self) -> list[str]:
        names = ("paid_partial", "paid_over", "paid_late", "marked")
        return [name for name in names if getattr(self, name)]


class Payment(Base):
    """One on-chain output (BTC) or transfer (KZTE) paying an invoice."""

    __tablename__ = "payments"
    __table_args__ = (
        UniqueConstraint("chain", "txid", "output_index"),
        CheckConstraint("amount_atomic > 0", name="amount_positive"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    invoice_id: Mapped[str] = mapped_column(ForeignKey("invoices.id"), index=True)
    chain: Mapped[str] = mapped_column(String(16))  # "bitcoin" | "solana"
    txid: Mapped[str] = mapped_column(String(128))  # txid or transaction signature
    output_index: Mapped[int] = mapped_column(default=0)  # vout; 0 for a Solana transfer
    amount_atomic: Mapped[int]
    status: Mapped[PaymentStatus] = mapped_column(enum_column(PaymentStatus, "payment_status"))
    confirmations: Mapped[int] = mapped_column(default=0)
    block_hash: Mapped[str | None] = mapped_column(String(100))
    block_height: Mapped[int | None]
    first_seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    # The outpoints ("txid:vout") this transaction spends (BTC): a later transaction spending
    # any of them is the proof of a replacement, kept here so a restart does not forget it.
    spent_outpoints: Mapped[list[str]] = mapped_column(default=list)
    replaced_by: Mapped[str | None] = mapped_column(String(128))  # the conflicting txid
    # When a REORGED / MISSING payment was first found gone; its grace window runs from here.
    missing_since: Mapped[datetime | None] = mapped_column(default=None)

    invoice: Mapped[Invoice] = relationship(back_populates="payments")


def new_event_id() -> str:
    return str(uuid.uuid4())


class InvoiceEvent(Base):
    """Every change of an invoice, persisted; also the outbox towards Redis (published_at)."""

    __tablename__ = "invoice_events"
    __table_args__ = (UniqueConstraint("invoice_id", "invoice_version"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_event_id)
    invoice_id: Mapped[str] = mapped_column(ForeignKey("invoices.id"), index=True)
    invoice_version: Mapped[int]
    type: Mapped[str] = mapped_column(String(40))
    from_status: Mapped[str | None] = mapped_column(String(20))
    to_status: Mapped[str] = mapped_column(String(20))
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    # NULL until the event is in the Redis stream; the relay re-sends what is still NULL.
    published_at: Mapped[datetime | None] = mapped_column(default=None, index=True)

    invoice: Mapped[Invoice] = relationship(back_populates="events")


class LedgerQueue(Base):
    """Invoices whose payments or status changed since the ledger last looked at them.

    Written in the same transaction as the change (`pos.ledger_queue.enqueue`), drained by the
    ledger duty, which brings the invoice's postings in line with its payments: a change can
    never commit without the ledger learning of it, whatever Redis holds.
    """

    __tablename__ = "ledger_queue"

    invoice_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    queued_at: Mapped[datetime] = mapped_column(index=True)


class AuditLog(Base):
    """Who did what sensitive thing, when, from where."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    actor_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    merchant_id: Mapped[int | None] = mapped_column(ForeignKey("merchants.id"), index=True)
    action: Mapped[str] = mapped_column(String(60))
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)
    ip: Mapped[str | None] = mapped_column(String(64))
