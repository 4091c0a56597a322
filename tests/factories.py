"""Small builders for test data, through the real services."""

from __future__ import annotations

from sqlalchemy.orm import Session

from pos import accounts
from pos.demo_wallets import demo_account_xpub, demo_solana_wallet
from pos.models import Merchant, Role, SettlementMode, User
from pos.settings import Settings

PASSWORD = "correct horse battery"
# Operators must use two-factor sign-in: the factory enrols them with this secret, and
# portal_helpers.login answers the second step with its current code.
TOTP_SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"


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
    """A user with PASSWORD (their own: no forced change); operators enrolled in 2FA."""
    made = accounts.create_user(session, email, PASSWORD, role, merchant_id)
    if role is Role.OPERATOR:
        made.totp_secret = TOTP_SECRET
    return made
