"""merchant bank details for KZT payouts

- merchants: `bank_holder`, `bank_iban` (a Kazakhstan IBAN, validated by pos.bank_details),
  `bank_bic`; all nullable: existing merchants have none until the owner enters them, and a
  payout of a merchant without them is left out of the bank export

Revision ID: 0012_bank_details
Revises: 0011_refunds_fee_invoices
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012_bank_details"
down_revision = "0011_refunds_fee_invoices"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("merchants", schema=None) as batch_op:
        batch_op.add_column(sa.Column("bank_holder", sa.String(length=120), nullable=True))
        # 34: the longest IBAN of any country, though only KZ (20) is accepted today.
        batch_op.add_column(sa.Column("bank_iban", sa.String(length=34), nullable=True))
        batch_op.add_column(sa.Column("bank_bic", sa.String(length=11), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("merchants", schema=None) as batch_op:
        batch_op.drop_column("bank_bic")
        batch_op.drop_column("bank_iban")
        batch_op.drop_column("bank_holder")
