"""one Solana wallet per merchant; the merchant's shop domains

- merchants: a unique index on `solana_wallet` where it is set (a wallet is one merchant's
  payment destination; NULL, no wallet yet, may repeat). Upgrading refuses a database where
  two merchants already share a wallet: the operator must settle whose it is first.
- merchants: `shop_domains` (text, nullable): the domains an invoice's `redirect_url` may
  point to, one per line

Revision ID: 0014_wallet_domains
Revises: 0013_auth_security
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014_wallet_domains"
down_revision = "0013_auth_security"
branch_labels = None
depends_on = None


def upgrade() -> None:
    shared = op.get_bind().execute(
        sa.text(
            "SELECT solana_wallet FROM merchants WHERE solana_wallet IS NOT NULL "
            "GROUP BY solana_wallet HAVING COUNT(*) > 1"
        )
    )
    wallets = [row[0] for row in shared]
    if wallets:
        raise RuntimeError(
            "merchants share Solana wallets (" + ", ".join(wallets) + "): give each its own "
            "wallet (or clear it) before upgrading"
        )
    with op.batch_alter_table("merchants", schema=None) as batch_op:
        batch_op.add_column(sa.Column("shop_domains", sa.Text(), nullable=True))
        batch_op.create_index(
            "uq_merchants_solana_wallet",
            ["solana_wallet"],
            unique=True,
            sqlite_where=sa.text("solana_wallet IS NOT NULL"),
            postgresql_where=sa.text("solana_wallet IS NOT NULL"),
        )


def downgrade() -> None:
    with op.batch_alter_table("merchants", schema=None) as batch_op:
        batch_op.drop_index("uq_merchants_solana_wallet")
        batch_op.drop_column("shop_domains")
