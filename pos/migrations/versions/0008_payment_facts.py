"""payment facts and per-key derivation: replacement proof, missing payments, account keys

- payments: `missing` status (vanished from the mempool, unknown rather than failed), the
  outpoints a transaction spends and the conflicting txid (proof of a replacement kept in the
  database), and `missing_since` for the grace window.
- btc_account_keys: the next derivation index belongs to the account key, not the merchant.

Revision ID: 0008_payment_facts
Revises: 0007_merge
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from embit import base58

revision = "0008_payment_facts"
down_revision = "0007_merge"
branch_labels = None
depends_on = None

_INT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_OLD_STATUSES = ("seen", "confirmed", "final", "replaced", "reorged")
_NEW_STATUSES = (*_OLD_STATUSES, "missing")


def _status_enum(values: tuple[str, ...]) -> sa.Enum:
    return sa.Enum(
        *values, name="payment_status", native_enum=False, create_constraint=True, length=20
    )


def _identity(xpub: str) -> str:
    # The same rule as pos.methods.bitcoin.account_identity, frozen here with the migration.
    raw: bytes = base58.decode_check(xpub)
    return (raw[13:45] + raw[45:78]).hex()


def upgrade() -> None:
    op.create_table(
        "btc_account_keys",
        sa.Column("id", _INT, nullable=False),
        sa.Column("merchant_id", _INT, nullable=True),
        sa.Column("xpub", sa.String(length=200), nullable=False),
        sa.Column("identity", sa.String(length=130), nullable=False),
        sa.Column("next_index", _INT, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("next_index >= 0", name=op.f("ck_btc_account_keys_next_index")),
        sa.ForeignKeyConstraint(
            ["merchant_id"],
            ["merchants.id"],
            name=op.f("fk_btc_account_keys_merchant_id_merchants"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_btc_account_keys")),
        sa.UniqueConstraint("identity", name=op.f("uq_btc_account_keys_identity")),
    )
    op.create_index(
        op.f("ix_btc_account_keys_merchant_id"), "btc_account_keys", ["merchant_id"], unique=False
    )
    with op.batch_alter_table("invoices", schema=None) as batch_op:
        batch_op.add_column(sa.Column("btc_account_key_id", _INT, nullable=True))
        batch_op.create_foreign_key(
            batch_op.f("fk_invoices_btc_account_key_id_btc_account_keys"),
            "btc_account_keys",
            ["btc_account_key_id"],
            ["id"],
        )

    # Each merchant's current key continues at the merchant's old index; the invoices derived
    # so far are attributed to it (the old per-merchant index never repeated, so no clash).
    bind = op.get_bind()
    merchants = bind.execute(
        sa.text("SELECT id, btc_xpub, btc_next_index, created_at FROM merchants")
    ).all()
    for merchant_id, xpub, next_index, created_at in merchants:
        if not xpub:
            continue
        key_id = bind.execute(
            sa.text(
                "INSERT INTO btc_account_keys (merchant_id, xpub, identity, next_index, created_at)"
                " VALUES (:m, :x, :i, :n, :c) RETURNING id"
            ),
            {"m": merchant_id, "x": xpub, "i": _identity(xpub), "n": next_index, "c": created_at},
        ).scalar_one()
        bind.execute(
            sa.text(
                "UPDATE invoices SET btc_account_key_id = :k"
                " WHERE merchant_id = :m AND btc_derivation_index IS NOT NULL"
            ),
            {"k": key_id, "m": merchant_id},
        )

    with op.batch_alter_table("invoices", schema=None) as batch_op:
        batch_op.drop_constraint(
            batch_op.f("uq_invoices_merchant_id_btc_derivation_index"), type_="unique"
        )
        batch_op.create_unique_constraint(
            batch_op.f("uq_invoices_btc_account_key_id_btc_derivation_index"),
            ["btc_account_key_id", "btc_derivation_index"],
        )
    with op.batch_alter_table("merchants", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("ck_merchants_btc_next_index"), type_="check")
        batch_op.drop_column("btc_next_index")

    with op.batch_alter_table("payments", schema=None) as batch_op:
        batch_op.alter_column(
            "status",
            existing_type=_status_enum(_OLD_STATUSES),
            type_=_status_enum(_NEW_STATUSES),
            existing_nullable=False,
        )
        batch_op.add_column(
            sa.Column("spent_outpoints", sa.JSON(), nullable=False, server_default="[]")
        )
        batch_op.add_column(sa.Column("replaced_by", sa.String(length=128), nullable=True))
        batch_op.add_column(sa.Column("missing_since", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("payments", schema=None) as batch_op:
        batch_op.alter_column("spent_outpoints", server_default=None)


def downgrade() -> None:
    with op.batch_alter_table("payments", schema=None) as batch_op:
        batch_op.drop_column("missing_since")
        batch_op.drop_column("replaced_by")
        batch_op.drop_column("spent_outpoints")
    op.execute("UPDATE payments SET status = 'reorged' WHERE status = 'missing'")
    with op.batch_alter_table("payments", schema=None) as batch_op:
        batch_op.alter_column(
            "status",
            existing_type=_status_enum(_NEW_STATUSES),
            type_=_status_enum(_OLD_STATUSES),
            existing_nullable=False,
        )
    with op.batch_alter_table("merchants", schema=None) as batch_op:
        batch_op.add_column(sa.Column("btc_next_index", _INT, nullable=False, server_default="0"))
    op.execute(
        "UPDATE merchants SET btc_next_index = COALESCE((SELECT MAX(k.next_index)"
        " FROM btc_account_keys k WHERE k.merchant_id = merchants.id), 0)"
    )
    with op.batch_alter_table("invoices", schema=None) as batch_op:
        batch_op.drop_constraint(
            batch_op.f("uq_invoices_btc_account_key_id_btc_derivation_index"), type_="unique"
        )
        batch_op.drop_constraint(
            batch_op.f("fk_invoices_btc_account_key_id_btc_account_keys"), type_="foreignkey"
        )
        batch_op.drop_column("btc_account_key_id")
        batch_op.create_unique_constraint(
            batch_op.f("uq_invoices_merchant_id_btc_derivation_index"),
            ["merchant_id", "btc_derivation_index"],
        )
    op.drop_index(op.f("ix_btc_account_keys_merchant_id"), table_name="btc_account_keys")
    op.drop_table("btc_account_keys")
