"""sessions that can be revoked, forced password change, TOTP two-factor sign-in

- users: `session_generation` (compared on every request; bumped by sign-out, password change,
  reset and disable), `must_change_password` (a one-time password someone else chose),
  `totp_secret`, `totp_last_step` (the replay guard), `recovery_code_hashes` (JSON list),
  `recovery_codes_used` (the compare-and-set of a recovery code's one use)

Revision ID: 0013_auth_security
Revises: 0012_bank_details
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013_auth_security"
down_revision = "0012_bank_details"
branch_labels = None
depends_on = None

_INT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")  # as the models' `int`


def upgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("session_generation", _INT, nullable=False, server_default="0")
        )
        batch_op.add_column(
            sa.Column(
                "must_change_password", sa.Boolean(), nullable=False, server_default=sa.false()
            )
        )
        batch_op.add_column(sa.Column("totp_secret", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("totp_last_step", _INT, nullable=True))
        batch_op.add_column(
            sa.Column("recovery_code_hashes", sa.JSON(), nullable=False, server_default="[]")
        )
        batch_op.add_column(
            sa.Column("recovery_codes_used", _INT, nullable=False, server_default="0")
        )
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.alter_column("session_generation", server_default=None)
        batch_op.alter_column("must_change_password", server_default=None)
        batch_op.alter_column("recovery_code_hashes", server_default=None)
        batch_op.alter_column("recovery_codes_used", server_default=None)


def downgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("recovery_codes_used")
        batch_op.drop_column("recovery_code_hashes")
        batch_op.drop_column("totp_last_step")
        batch_op.drop_column("totp_secret")
        batch_op.drop_column("must_change_password")
        batch_op.drop_column("session_generation")
