"""ledger: transactions, entries, handled events, checkpoints, payouts

Revision ID: 0004_ledger
Revises: 0001
Create Date: 2026-11-23 23:50:00

On PostgreSQL the ledger's invariants are also the database's: a DEFERRABLE INITIALLY DEFERRED
constraint trigger checks at commit that every touched transaction has at least two entries
and that its debits equal its credits, and entries/transactions refuse UPDATE and DELETE
(corrections are reversal transactions). SQLite relies on the checks in code.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_ledger"
down_revision = "0001"
branch_labels = None
depends_on = None

BIGINT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _enum(name: str, *values: str) -> sa.Enum:
    return sa.Enum(*values, name=name, native_enum=False, create_constraint=True, length=20)


BALANCE_FUNCTION = """
CREATE FUNCTION ledger_check_balance() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  txn_id bigint;
  n_entries bigint;
  difference numeric;
BEGIN
  IF TG_TABLE_NAME = 'ledger_transactions' THEN
    txn_id := NEW.id;
  ELSE
    txn_id := NEW.transaction_id;
  END IF;
  SELECT count(*),
         coalesce(sum(CASE WHEN side = 'debit' THEN amount_tiyn ELSE -amount_tiyn END), 0)
    INTO n_entries, difference
    FROM ledger_entries WHERE transaction_id = txn_id;
  IF n_entries < 2 THEN
    RAISE EXCEPTION 'ledger transaction % has % entries; at least two are required',
      txn_id, n_entries USING ERRCODE = 'check_violation';
  END IF;
  IF difference <> 0 THEN
    RAISE EXCEPTION 'ledger transaction % is unbalanced: debits - credits = % tiyn',
      txn_id, difference USING ERRCODE = 'check_violation';
  END IF;
  RETURN NULL;
END $$;
"""

APPEND_ONLY_FUNCTION = """
CREATE FUNCTION ledger_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION '% is append-only: post a reversal instead of %', TG_TABLE_NAME, TG_OP
    USING ERRCODE = 'restrict_violation';
END $$;
"""


def upgrade() -> None:
    op.create_table(
        "ledger_transactions",
        sa.Column("id", BIGINT, nullable=False),
        sa.Column("idempotency_key", sa.String(length=120), nullable=False),
        sa.Column(
            "kind",
            _enum("ledger_kind", "settlement", "reversal", "payout", "conversion"),
            nullable=False,
        ),
        sa.Column("invoice_id", sa.String(length=32), nullable=True),
        sa.Column("merchant_id", BIGINT, nullable=True),
        sa.Column("method", sa.String(length=8), nullable=True),
        sa.Column("reverses_id", BIGINT, nullable=True),
        sa.Column("description", sa.String(length=200), nullable=False),
        sa.Column("effective_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("posted_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["invoice_id"],
            ["invoices.id"],
            name=op.f("fk_ledger_transactions_invoice_id_invoices"),
        ),
        sa.ForeignKeyConstraint(
            ["merchant_id"],
            ["merchants.id"],
            name=op.f("fk_ledger_transactions_merchant_id_merchants"),
        ),
        sa.ForeignKeyConstraint(
            ["reverses_id"],
            ["ledger_transactions.id"],
            name=op.f("fk_ledger_transactions_reverses_id_ledger_transactions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ledger_transactions")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_ledger_transactions_idempotency_key")),
        sa.UniqueConstraint("reverses_id", name=op.f("uq_ledger_transactions_reverses_id")),
    )
    op.create_index(
        op.f("ix_ledger_transactions_invoice_id"), "ledger_transactions", ["invoice_id"]
    )
    op.create_index(
        op.f("ix_ledger_transactions_merchant_id"), "ledger_transactions", ["merchant_id"]
    )
    op.create_index(
        op.f("ix_ledger_transactions_effective_at"), "ledger_transactions", ["effective_at"]
    )

    op.create_table(
        "ledger_entries",
        sa.Column("id", BIGINT, nullable=False),
        sa.Column("transaction_id", BIGINT, nullable=False),
        sa.Column("account", sa.String(length=64), nullable=False),
        sa.Column("side", _enum("ledger_side", "debit", "credit"), nullable=False),
        sa.Column("amount_tiyn", BIGINT, nullable=False),
        sa.Column("effective_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("amount_tiyn > 0", name=op.f("ck_ledger_entries_amount_positive")),
        sa.ForeignKeyConstraint(
            ["transaction_id"],
            ["ledger_transactions.id"],
            name=op.f("fk_ledger_entries_transaction_id_ledger_transactions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ledger_entries")),
    )
    op.create_index(op.f("ix_ledger_entries_transaction_id"), "ledger_entries", ["transaction_id"])
    op.create_index(
        "ix_ledger_entries_account_effective_at", "ledger_entries", ["account", "effective_at"]
    )

    op.create_table(
        "ledger_handled_events",
        sa.Column("event_id", sa.String(length=36), nullable=False),
        sa.Column("transaction_id", BIGINT, nullable=True),
        sa.Column("handled_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["event_id"],
            ["invoice_events.id"],
            name=op.f("fk_ledger_handled_events_event_id_invoice_events"),
        ),
        sa.ForeignKeyConstraint(
            ["transaction_id"],
            ["ledger_transactions.id"],
            name=op.f("fk_ledger_handled_events_transaction_id_ledger_transactions"),
        ),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_ledger_handled_events")),
    )
    op.create_table(
        "ledger_checkpoints",
        sa.Column("name", sa.String(length=40), nullable=False),
        sa.Column("position", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_ledger_checkpoints")),
    )

    op.create_table(
        "payouts",
        sa.Column("id", BIGINT, nullable=False),
        sa.Column("merchant_id", BIGINT, nullable=False),
        sa.Column("business_date", sa.Date(), nullable=False),
        sa.Column("amount_tiyn", BIGINT, nullable=False),
        sa.Column("status", _enum("payout_status", "pending", "paid"), nullable=False),
        sa.Column("bank_reference", sa.String(length=100), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("paid_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("paid_by_user_id", BIGINT, nullable=True),
        sa.Column("transaction_id", BIGINT, nullable=True),
        sa.CheckConstraint("amount_tiyn > 0", name=op.f("ck_payouts_amount_positive")),
        sa.CheckConstraint(
            "(status = 'paid') = (bank_reference IS NOT NULL)",
            name=op.f("ck_payouts_paid_has_reference"),
        ),
        sa.ForeignKeyConstraint(
            ["merchant_id"], ["merchants.id"], name=op.f("fk_payouts_merchant_id_merchants")
        ),
        sa.ForeignKeyConstraint(
            ["paid_by_user_id"], ["users.id"], name=op.f("fk_payouts_paid_by_user_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["transaction_id"],
            ["ledger_transactions.id"],
            name=op.f("fk_payouts_transaction_id_ledger_transactions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payouts")),
        sa.UniqueConstraint(
            "merchant_id", "business_date", name=op.f("uq_payouts_merchant_id_business_date")
        ),
    )
    op.create_index(op.f("ix_payouts_merchant_id"), "payouts", ["merchant_id"])
    op.create_index(op.f("ix_payouts_business_date"), "payouts", ["business_date"])
    op.create_index(op.f("ix_payouts_status"), "payouts", ["status"])

    op.create_table(
        "payout_lines",
        sa.Column("id", BIGINT, nullable=False),
        sa.Column("payout_id", BIGINT, nullable=False),
        sa.Column("entry_id", BIGINT, nullable=False),
        sa.Column("amount_tiyn", BIGINT, nullable=False),
        sa.ForeignKeyConstraint(
            ["payout_id"], ["payouts.id"], name=op.f("fk_payout_lines_payout_id_payouts")
        ),
        sa.ForeignKeyConstraint(
            ["entry_id"],
            ["ledger_entries.id"],
            name=op.f("fk_payout_lines_entry_id_ledger_entries"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payout_lines")),
        sa.UniqueConstraint("entry_id", name=op.f("uq_payout_lines_entry_id")),
    )
    op.create_index(op.f("ix_payout_lines_payout_id"), "payout_lines", ["payout_id"])

    if op.get_bind().dialect.name == "postgresql":
        op.execute(BALANCE_FUNCTION)
        op.execute(APPEND_ONLY_FUNCTION)
        for table in ("ledger_entries", "ledger_transactions"):
            op.execute(
                f"CREATE CONSTRAINT TRIGGER {table}_balanced AFTER INSERT ON {table} "
                "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION ledger_check_balance()"
            )
            op.execute(
                f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION ledger_append_only()"
            )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in ("ledger_entries", "ledger_transactions"):
            op.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
            op.execute(f"DROP TRIGGER IF EXISTS {table}_balanced ON {table}")
        op.execute("DROP FUNCTION IF EXISTS ledger_append_only()")
        op.execute("DROP FUNCTION IF EXISTS ledger_check_balance()")
    op.drop_table("payout_lines")
    op.drop_table("payouts")
    op.drop_table("ledger_checkpoints")
    op.drop_table("ledger_handled_events")
    op.drop_table("ledger_entries")
    op.drop_table("ledger_transactions")
