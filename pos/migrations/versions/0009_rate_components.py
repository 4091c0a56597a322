"""rate components: what each invoice's locked rate was made of

- invoices: `rate_components`, JSON — the sources of the locked rate with their values and
  times (the legs of a cross, the spread or depeg checked, the sources left out). Invoices made
  before it get `{}`: not recorded.

Revision ID: 0009_rate_components
Revises: 0008_payment_facts
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009_rate_components"
down_revision = "0008_payment_facts"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("invoices", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("rate_components", sa.JSON(), nullable=False, server_default="{}")
        )
    # The default was only for the rows already there; new rows always carry their own.
    with op.batch_alter_table("invoices", schema=None) as batch_op:
        batch_op.alter_column("rate_components", server_default=None)


def downgrade() -> None:
    with op.batch_alter_table("invoices", schema=None) as batch_op:
        batch_op.drop_column("rate_components")
