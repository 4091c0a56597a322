"""refunds and fee invoices (DESIGN §7)

- refunds: money owed back, claimed by the shopper at /r/<token>, sent from a wallet the server
  does not hold, confirmed by the watcher before it is posted
- fee_invoices: a `direct` merchant's monthly bill for its accrued fees

Revision ID: 0011_refunds_fee_invoices
Revises: 0010_settlement_model
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from alembic import op

revision = "0011_refunds_fee_invoices"
down_revision = "0010_settlement_model"
branch_labels = None
depends_on = None

BIGINT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _enum(name: str, *values: str) -> sa.Enum:
    return sa.Enum(*values, name=name, native_enum=False, create_constraint=True, length=20)


def _ts(name: str, nullable: bool = True) -> sa.Column[datetime]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "refunds",
        sa.Column("id", BIGINT, nullable=False),
        sa.Column("token", sa.String(length=64), nullable=False),
        sa.Column("invoice_id", sa.String(length=32), nullable=False),
        sa.Column("merchant_id", BIGINT, nullable=False),
        sa.Column("method", sa.String(length=8), nullable=False),
        sa.Column("settlement_mode", sa.String(length=8), nullable=False),
        sa.Column("amount_tiyn", BIGINT, nullable=False),
        sa.Column("amount_atomic", BIGINT, nullable=False),
        sa.Column(
            "status",
            _enum("refund_status", "claimable", "claimed", "sent", "confirmed", "cancelled"),
            nullable=False,
        ),
        sa.Column("destination", sa.String(length=100), nullable=True),
        sa.Column("destination_account", sa.String(length=64), nullable=True),
        sa.Column("txid", sa.String(length=128), nullable=True),
        sa.Column("block_hash", sa.String(length=100), nullable=True),
        sa.Column("search_from_height", BIGINT, nullable=True),
        sa.Column("problem", sa.String(length=200), nullable=True),
        sa.Column("created_by_user_id", BIGINT, nullable=True),
        _ts("created_at", nullable=False),
        _ts("claimed_at"),
        _ts("sent_at"),
        _ts("confirmed_at"),
        sa.Column("transaction_id", BIGINT, nullable=True),
        sa.CheckConstraint("amount_tiyn > 0", name=op.f("ck_refunds_amount_positive")),
        sa.CheckConstraint("amount_atomic > 0", name=op.f("ck_refunds_atomic_positive")),
        sa.ForeignKeyConstraint(
            ["invoice_id"], ["invoices.id"], name=op.f("fk_refunds_invoice_id_invoices")
        ),
        sa.ForeignKeyConstraint(
            ["merchant_id"], ["merchants.id"], name=op.f("fk_refunds_merchant_id_merchants")
        ),
        sa.ForeignKeyConstraint(
            ["created_by_user_id"], ["users.id"], name=op.f("fk_refunds_created_by_user_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["transaction_id"],
            ["ledger_transactions.id"],
            name=op.f("fk_refunds_transaction_id_ledger_transactions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_refunds")),
        sa.UniqueConstraint("token", name=op.f("uq_refunds_token")),
        sa.UniqueConstraint("txid", name=op.f("uq_refunds_txid")),
    )
    op.create_index(op.f("ix_refunds_invoice_id"), "refunds", ["invoice_id"])
    op.create_index(op.f("ix_refunds_merchant_id"), "refunds", ["merchant_id"])
    op.create_index(op.f("ix_refunds_status"), "refunds", ["status"])

    op.create_table(
        "fee_invoices",
        sa.Column("id", BIGINT, nullable=False),
        sa.Column("merchant_id", BIGINT, nullable=False),
        sa.Column("month", sa.String(length=7), nullable=False),
        sa.Column("amount_tiyn", BIGINT, nullable=False),
        sa.Column("status", _enum("fee_invoice_status", "issued", "paid"), nullable=False),
        _ts("issued_at", nullable=False),
        _ts("paid_at"),
        sa.Column("bank_reference", sa.String(length=100), nullable=True),
        sa.Column("transaction_id", BIGINT, nullable=True),
        sa.CheckConstraint("amount_tiyn > 0", name=op.f("ck_fee_invoices_amount_positive")),
        sa.ForeignKeyConstraint(
            ["merchant_id"], ["merchants.id"], name=op.f("fk_fee_invoices_merchant_id_merchants")
        ),
        sa.ForeignKeyConstraint(
            ["transaction_id"],
            ["ledger_transactions.id"],
            name=op.f("fk_fee_invoices_transaction_id_ledger_transactions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_fee_invoices")),
        sa.UniqueConstraint("merchant_id", "month", name=op.f("uq_fee_invoices_merchant_id_month")),
    )
    op.create_index(op.f("ix_fee_invoices_merchant_id"), "fee_invoices", ["merchant_id"])


def downgrade() -> None:
    op.drop_table("fee_invoices")
    op.drop_table("refunds")
