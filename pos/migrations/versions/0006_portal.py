"""portal: the product catalog for the terminal's cart mode

Revision ID: 0006_portal
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_portal"
down_revision = "0001"
branch_labels = None
depends_on = None

_INT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "catalog_items",
        sa.Column("id", _INT, nullable=False),
        sa.Column("merchant_id", _INT, nullable=False),
        sa.Column("name", sa.String(length=80), nullable=False),
        sa.Column("price_tiyn", _INT, nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("price_tiyn > 0", name=op.f("ck_catalog_items_price_positive")),
        sa.ForeignKeyConstraint(
            ["merchant_id"],
            ["merchants.id"],
            name=op.f("fk_catalog_items_merchant_id_merchants"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_catalog_items")),
    )
    op.create_index(
        op.f("ix_catalog_items_merchant_id"), "catalog_items", ["merchant_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_catalog_items_merchant_id"), table_name="catalog_items")
    op.drop_table("catalog_items")
