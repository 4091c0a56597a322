"""refund kind: money owed back, or a settled sale returned by its merchant

- refunds.kind: 'owed_back' (paid over, late, short: what the booking owes back; every refund so
  far) or 'sale_return' (the owner returns a sale, or part of it: the booking moves that much from
  the merchant's payable, or its memorandum sales, to what is owed back)

Revision ID: 0017_refund_kind
Revises: 0016_invoice_lines
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017_refund_kind"
down_revision = "0016_invoice_lines"
branch_labels = None
depends_on = None

_KIND = sa.Enum(
    "owed_back",
    "sale_return",
    name="refund_kind",
    native_enum=False,
    create_constraint=True,
    length=20,
)


def upgrade() -> None:
    with op.batch_alter_table("refunds", schema=None) as batch_op:
        batch_op.add_column(sa.Column("kind", _KIND, nullable=False, server_default="owed_back"))


def downgrade() -> None:
    with op.batch_alter_table("refunds", schema=None) as batch_op:
        batch_op.drop_column("kind")
