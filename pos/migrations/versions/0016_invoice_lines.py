"""invoice lines: the products of a cart sale, for the owner's sales per product

- invoice_lines (id, invoice_id, catalog_item_id, name, quantity, unit_price_tiyn): written with
  a cart invoice; name and unit price are copied as sold

Revision ID: 0016_invoice_lines
Revises: 0014_wallet_domains
(written on a branch where 0015 did not exist yet; rechain to the newest head when merging)
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016_invoice_lines"
down_revision = "0014_wallet_domains"
branch_labels = None
depends_on = None

_INT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "invoice_lines",
        sa.Column("id", _INT, nullable=False),
        sa.Column("invoice_id", sa.String(length=32), nullable=False),
        sa.Column("catalog_item_id", _INT, nullable=True),
        sa.Column("name", sa.String(length=80), nullable=False),
        sa.Column("quantity", _INT, nullable=False),
        sa.Column("unit_price_tiyn", _INT, nullable=False),
        sa.CheckConstraint("quantity > 0", name=op.f("ck_invoice_lines_quantity_positive")),
        sa.CheckConstraint(
            "unit_price_tiyn > 0", name=op.f("ck_invoice_lines_unit_price_positive")
        ),
        sa.ForeignKeyConstraint(
            ["invoice_id"], ["invoices.id"], name=op.f("fk_invoice_lines_invoice_id_invoices")
        ),
        sa.ForeignKeyConstraint(
            ["catalog_item_id"],
            ["catalog_items.id"],
            name=op.f("fk_invoice_lines_catalog_item_id_catalog_items"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_invoice_lines")),
    )
    op.create_index(
        op.f("ix_invoice_lines_invoice_id"), "invoice_lines", ["invoice_id"], unique=False
    )
    op.create_index(
        op.f("ix_invoice_lines_catalog_item_id"),
        "invoice_lines",
        ["catalog_item_id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_invoice_lines_catalog_item_id"), table_name="invoice_lines")
    op.drop_index(op.f("ix_invoice_lines_invoice_id"), table_name="invoice_lines")
    op.drop_table("invoice_lines")
