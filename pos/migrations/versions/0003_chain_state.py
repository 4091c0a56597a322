"""chain state: scanned blocks and watcher checkpoints

Revision ID: 0003_chain_state
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_chain_state"
down_revision = "0001"
branch_labels = None
depends_on = None

BIGINT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "scanned_blocks",
        sa.Column("id", BIGINT, nullable=False),
        sa.Column("chain", sa.String(length=16), nullable=False),
        sa.Column("height", BIGINT, nullable=False),
        sa.Column("hash", sa.String(length=100), nullable=False),
        sa.Column("scanned_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_scanned_blocks")),
        sa.UniqueConstraint("chain", "height", name=op.f("uq_scanned_blocks_chain_height")),
    )
    op.create_table(
        "chain_cursors",
        sa.Column("chain", sa.String(length=16), nullable=False),
        sa.Column("height", BIGINT, nullable=False),
        sa.Column("block_hash", sa.String(length=100), nullable=False),
        sa.Column("fence", BIGINT, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("chain", name=op.f("pk_chain_cursors")),
    )


def downgrade() -> None:
    op.drop_table("chain_cursors")
    op.drop_table("scanned_blocks")
