"""settlement model: modes, chart of accounts, postings that follow payments, conversions

DESIGN §7. Existing merchants and invoices become `direct`: their invoices paid the merchants'
own keys, so nothing the zone holds; the operator switches a merchant to `tenge` for invoices
made afterwards. New merchants default to `tenge`.

- merchants: `settlement_mode`, `payout_hold_hours` (24)
- invoices: `settlement_mode` (copied from the merchant at creation)
- ledger_accounts: the chart (zone accounts, and each merchant's), entries reference it
- ledger_entries: `amount_atomic` beside the tiyn on clearing legs
- ledger_transactions: `fact` (what posting the invoice's state calls for) and `payment_id`;
  kinds receipt / owed_back / refund / fee_payment added
- ledger_queue: invoices the booking must look at again; filled with every invoice that has
  anything to book, so the first worker re-books the old postings under the new rules (each old
  settlement is reversed and replaced by receipt + allocation postings)
- conversions
- ledger_handled_events and ledger_checkpoints dropped (the booking needs no event replay)

Revision ID: 0010_settlement_model
Revises: 0009_rate_components
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0010_settlement_model"
down_revision = "0009_rate_components"
branch_labels = None
depends_on = None

BIGINT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
OLD_KINDS = ("settlement", "reversal", "payout", "conversion")
KINDS = (
    "receipt",
    "settlement",
    "owed_back",
    "reversal",
    "payout",
    "conversion",
    "refund",
    "fee_payment",
)
ZONE_ACCOUNTS = (
    ("zone:clearing:btc", "asset", False, "btc"),
    ("zone:clearing:kzte", "asset", False, "kzte"),
    ("zone:unallocated", "liability", False, None),
    ("zone:refunds_due", "liability", False, None),
    ("zone:bank", "asset", False, None),
    ("zone:fees", "income", False, None),
    ("zone:rounding", "income", False, None),
    ("zone:fx_result", "income", False, None),
)


def _merchant_accounts(mid: int) -> list[tuple[str, str, bool, str | None]]:
    return [
        (f"merchant:{mid}:payable", "liability", False, None),
        (f"merchant:{mid}:fees_due", "asset", False, None),
        (f"merchant:{mid}:crypto_received:btc", "asset", True, "btc"),
        (f"merchant:{mid}:crypto_received:kzte", "asset", True, "kzte"),
        (f"merchant:{mid}:sales_unallocated", "liability", True, None),
        (f"merchant:{mid}:sales", "income", True, None),
        (f"merchant:{mid}:refunds_owed", "liability", True, None),
    ]


def _enum(name: str, *values: str) -> sa.Enum:
    return sa.Enum(*values, name=name, native_enum=False, create_constraint=True, length=20)


def upgrade() -> None:
    now = datetime.now(UTC)
    conn = op.get_bind()
    with op.batch_alter_table("merchants", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "settlement_mode",
                _enum("settlement_mode", "tenge", "direct"),
                nullable=False,
                server_default="direct",
            )
        )
        batch_op.add_column(
            sa.Column("payout_hold_hours", BIGINT, nullable=False, server_default="24")
        )
        batch_op.create_check_constraint(
            "ck_merchants_payout_hold", "payout_hold_hours BETWEEN 0 AND 720"
        )
    with op.batch_alter_table("merchants", schema=None) as batch_op:
        batch_op.alter_column("settlement_mode", server_default=None)
        batch_op.alter_column("payout_hold_hours", server_default=None)
    with op.batch_alter_table("invoices", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "settlement_mode",
                _enum("settlement_mode", "tenge", "direct"),
                nullable=False,
                server_default="direct",
            )
        )
    with op.batch_alter_table("invoices", schema=None) as batch_op:
        batch_op.alter_column("settlement_mode", server_default=None)

    accounts = op.create_table(
        "ledger_accounts",
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column(
            "type", _enum("account_type", "asset", "liability", "income", "expense"), nullable=False
        ),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("merchant_id", BIGINT, nullable=True),
        sa.Column("memorandum", sa.Boolean(), nullable=False),
        sa.Column("method", sa.String(length=8), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("currency = 'KZT'", name=op.f("ck_ledger_accounts_currency")),
        sa.ForeignKeyConstraint(
            ["merchant_id"], ["merchants.id"], name=op.f("fk_ledger_accounts_merchant_id_merchants")
        ),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_ledger_accounts")),
    )
    op.create_index(op.f("ix_ledger_accounts_merchant_id"), "ledger_accounts", ["merchant_id"])
    rows = [
        {
            "code": c,
            "type": t,
            "currency": "KZT",
            "merchant_id": None,
            "memorandum": memo,
            "method": m,
            "created_at": now,
        }
        for c, t, memo, m in ZONE_ACCOUNTS
    ]
    for (mid,) in conn.execute(sa.text("SELECT id FROM merchants")):
        rows += [
            {
                "code": c,
                "type": t,
                "currency": "KZT",
                "merchant_id": mid,
                "memorandum": memo,
                "method": m,
                "created_at": now,
            }
            for c, t, memo, m in _merchant_accounts(int(mid))
        ]
    op.bulk_insert(accounts, rows)

    with op.batch_alter_table("ledger_entries", schema=None) as batch_op:
        batch_op.add_column(sa.Column("amount_atomic", BIGINT, nullable=True))
        batch_op.create_foreign_key(
            batch_op.f("fk_ledger_entries_account_ledger_accounts"),
            "ledger_accounts",
            ["account"],
            ["code"],
        )
    with op.batch_alter_table("ledger_transactions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("fact", sa.String(length=80), nullable=True))
        batch_op.add_column(sa.Column("payment_id", BIGINT, nullable=True))
        batch_op.create_foreign_key(
            batch_op.f("fk_ledger_transactions_payment_id_payments"),
            "payments",
            ["payment_id"],
            ["id"],
        )
        batch_op.create_index(batch_op.f("ix_ledger_transactions_payment_id"), ["payment_id"])
        batch_op.drop_constraint(batch_op.f("ck_ledger_transactions_ledger_kind"), type_="check")
        batch_op.create_check_constraint(
            "ck_ledger_transactions_ledger_kind",
            sa.column("kind").in_(KINDS),
        )

    op.create_table(
        "ledger_queue",
        sa.Column("invoice_id", sa.String(length=32), nullable=False),
        sa.Column("queued_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("invoice_id", name=op.f("pk_ledger_queue")),
    )
    op.create_index(op.f("ix_ledger_queue_queued_at"), "ledger_queue", ["queued_at"])
    conn.execute(
        sa.text(
            "INSERT INTO ledger_queue (invoice_id, queued_at) SELECT id, :now FROM invoices "
            "WHERE status <> 'new' OR id IN (SELECT invoice_id FROM payments)"
        ),
        {"now": now},
    )

    op.create_table(
        "conversions",
        sa.Column("id", BIGINT, nullable=False),
        sa.Column("method", sa.String(length=8), nullable=False),
        sa.Column("amount_atomic", BIGINT, nullable=False),
        sa.Column("proceeds_tiyn", BIGINT, nullable=False),
        sa.Column("book_value_tiyn", BIGINT, nullable=False),
        sa.Column("reference", sa.String(length=100), nullable=True),
        sa.Column("recorded_by_user_id", BIGINT, nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("transaction_id", BIGINT, nullable=False),
        sa.CheckConstraint("amount_atomic > 0", name=op.f("ck_conversions_amount_positive")),
        sa.CheckConstraint("proceeds_tiyn >= 0", name=op.f("ck_conversions_proceeds_nonnegative")),
        sa.ForeignKeyConstraint(
            ["recorded_by_user_id"],
            ["users.id"],
            name=op.f("fk_conversions_recorded_by_user_id_users"),
        ),
        sa.ForeignKeyConstraint(
            ["transaction_id"],
            ["ledger_transactions.id"],
            name=op.f("fk_conversions_transaction_id_ledger_transactions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_conversions")),
        sa.UniqueConstraint("reference", name=op.f("uq_conversions_reference")),
    )
    op.drop_table("ledger_handled_events")
    op.drop_table("ledger_checkpoints")


def downgrade() -> None:
    raise NotImplementedError(
        "0010 re-books the ledger under the settlement model; restore a backup to go back"
    )
