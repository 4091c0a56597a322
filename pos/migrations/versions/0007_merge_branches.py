"""merge the chain-state, ledger, integrations and portal branches into one head

Revision ID: 0007_merge
Revises: 0003_chain_state, 0004_ledger, 0005_integrations, 0006_portal
"""

from __future__ import annotations

revision = "0007_merge"
down_revision = ("0003_chain_state", "0004_ledger", "0005_integrations", "0006_portal")
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Nothing to change: the branches touch different tables."""


def downgrade() -> None:
    """Nothing to change."""
