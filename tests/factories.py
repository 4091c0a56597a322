"""Small builders for test data, through the real services."""

from __future__ import annotations

from sqlalchemy.orm import Session

from pos import accounts
from pos.demo_wallets import demo_account_xpub, demo_solana_wallet
from pos.models import Merchant, Role, SettlementMode, User
from pos.settings import Settings

PASSWORD = "correct horse battery"


def merchant(
    session: Session,
    settings: Settings,
    name: str = "Test Shop",
    slug: str = "test",
    mode: SettlementMode = SettlementMode.TENGE,
) -> Merchant:
    """A merchant with its own (demo) keys; `tenge` ones are paid at the zone's destinations."""
    return accounts.create_merchant(
        session,
        settings,
        name,
        btc_xpub=demo_account_xpub(slug, settings.bitcoin_network),
        solana_wallet=demo_solana_wallet(slug),
        settlement_mode=mode,
    )


def user(session: Session, email: str, role: Role, merchant_id: int | None = None) -> User:
    return accounts.create_user(session, email, PASSWORD, role, merchant_id)
