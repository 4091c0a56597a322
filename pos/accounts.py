"""Merchants, users and the audit log (services: take a Session, never commit)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from pos import bank_details, chart, shop_domains
from pos.db import utcnow
from pos.errors import NotFoundError, ShopSuspendedError, ValidationError
from pos.i18n import N_
from pos.methods import bitcoin, kzte
from pos.models import (
    ALLOWED_CONFIRMATIONS,
    AuditLog,
    BtcAccountKey,
    Merchant,
    MerchantStatus,
    Role,
    SettlementMode,
    User,
)
from pos.password_policy import check_password
from pos.passwords import MIN_PASSWORD_LENGTH, burn_time, hash_password, verify_password
from pos.settings import Settings

_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,190}\.[^@\s]{2,63}$")


def audit(
    session: Session,
    action: str,
    *,
    actor_user_id: int | None = None,
    merchant_id: int | None = None,
    ip: str | None = None,
    detail: dict[str, Any] | None = None,
) -> AuditLog:
    row = AuditLog(
        action=action,
        actor_user_id=actor_user_id,
        merchant_id=merchant_id,
        ip=ip,
        detail=dict(detail or {}),
        at=utcnow(),
    )
    session.add(row)
    return row


def create_merchant(
    session: Session,
    settings: Settings,
    name: str,
    *,
    btc_xpub: str | None = None,
    solana_wallet: str | None = None,
    status: MerchantStatus = MerchantStatus.ACTIVE,
    settlement_mode: SettlementMode = SettlementMode.TENGE,
    actor_user_id: int | None = None,
) -> Merchant:
    """Register a merchant and open its ledger accounts; keys are validated before anything
    is stored."""
    name = name.strip()
    if not 2 <= len(name) <= 120:
        raise ValidationError(N_("the merchant name needs 2 to 120 characters"), field="name")
    merchant = Merchant(name=name, status=status, settlement_mode=settlement_mode)
    key = bitcoin.parse_account_xpub(btc_xpub, settings.bitcoin_network) if btc_xpub else None
    if solana_wallet:
        merchant.solana_wallet = check_solana_wallet(session, settings, solana_wallet, None)
    session.add(merchant)
    session.flush()
    if key is not None:
        set_btc_account_key(session, merchant, key)
    chart.open_merchant_accounts(session, merchant.id)
    audit(
        session,
        "merchant.created",
        actor_user_id=actor_user_id,
        merchant_id=merchant.id,
        detail={"name": name, "status": status.value, "settlement_mode": settlement_mode.value},
    )
    return merchant


WALLET_TAKEN = N_("this Solana wallet is already another merchant's payment destination")
ZONE_WALLET = N_(
    "this is the zone's own KZTE wallet (where `tenge` sales are paid), not a merchant's; "
    "enter your own wallet"
)


def check_solana_wallet(
    session: Session, settings: Settings, text: str, merchant_id: int | None
) -> str:
    """The wallet `text` as merchant `merchant_id` (None: a new one) may register it, or a
    `ValidationError` on field `solana_wallet`: a wallet a payment is told apart by is one
    merchant's, and the zone's own wallet is nobody's."""
    wallet = kzte.parse_wallet(text, mint=settings.kzte_mint)
    if settings.zone_kzte_wallet and wallet == settings.zone_kzte_wallet:
        raise ValidationError(ZONE_WALLET, field="solana_wallet")
    taken = select(Merchant.id).where(Merchant.solana_wallet == wallet)
    if merchant_id is not None:
        taken = taken.where(Merchant.id != merchant_id)
    if session.scalar(taken.limit(1)) is not None:
        raise ValidationError(WALLET_TAKEN, field="solana_wallet")
    return wallet


def destination_taken(error: IntegrityError) -> ValidationError | None:
    """The clear error for a unique-destination race lost at commit (another request took the
    wallet between the check and the write); None when the violation is something else."""
    text = str(error.orig).lower()
    if "uq_merchants_solana_wallet" in text or "merchants.solana_wallet" in text:
        return ValidationError(WALLET_TAKEN, field="solana_wallet")
    return None


def set_solana_wallet(
    session: Session,
    settings: Settings,
    merchant: Merchant,
    text: str,
    actor_user_id: int | None = None,
) -> bool:
    """Point the merchant's KZTE invoices at a new wallet (checked offline); changed?"""
    wallet = check_solana_wallet(session, settings, text, merchant.id)
    if wallet == merchant.solana_wallet:
        return False
    merchant.solana_wallet = wallet
    audit(
        session,
        "merchant.solana_wallet_set",
        actor_user_id=actor_user_id,
        merchant_id=merchant.id,
        detail={"wallet": wallet},
    )
    return True


def set_shop_domains(
    session: Session, merchant: Merchant, text: str, actor_user_id: int | None = None
) -> bool:
    """The owner's shop domains (pos.shop_domains), where return links may lead; changed?"""
    domains = shop_domains.stored(shop_domains.parse_domains(text))
    if domains == merchant.shop_domains:
        return False
    merchant.shop_domains = domains
    audit(
        session,
        "merchant.shop_domains_set",
        actor_user_id=actor_user_id,
        merchant_id=merchant.id,
        detail={"domains": shop_domains.domains_of(domains)},
    )
    return True


def set_settlement_mode(
    session: Session, merchant: Merchant, mode: SettlementMode, actor_user_id: int | None = None
) -> bool:
    """The operator changes who holds the crypto; invoices made before keep their mode."""
    if merchant.settlement_mode is mode:
        return False
    old = merchant.settlement_mode
    merchant.settlement_mode = mode
    audit(
        session,
        "merchant.settlement_mode",
        actor_user_id=actor_user_id,
        merchant_id=merchant.id,
        detail={"from": old.value, "to": mode.value},
    )
    return True


def get_merchant(session: Session, merchant_id: int) -> Merchant:
    merchant = session.get(Merchant, merchant_id)
    if merchant is None:
        raise NotFoundError(N_("there is no merchant %(id)s"), id=merchant_id)
    return merchant


def set_payout_hold(
    session: Session, merchant: Merchant, hours: int, actor_user_id: int | None = None
) -> None:
    """How long a `tenge` sale waits, final, before it is paid out (0 to 720 hours)."""
    if not 0 <= hours <= 720:
        raise ValidationError(N_("the payout hold is 0 to 720 hours"), field="payout_hold_hours")
    if hours != merchant.payout_hold_hours:
        audit(
            session,
            "merchant.payout_hold",
            actor_user_id=actor_user_id,
            merchant_id=merchant.id,
            detail={"from": merchant.payout_hold_hours, "to": hours},
        )
        merchant.payout_hold_hours = hours


def set_bank_details(
    session: Session,
    merchant: Merchant,
    holder: str,
    iban: str,
    bic: str,
    actor_user_id: int | None = None,
) -> bool:
    """Set where the merchant's KZT payouts are transferred; all three are checked first.

    The audit row shows the IBAN masked but for its last 4 characters. False: nothing changed.
    """
    details = bank_details.parse_bank_details(holder, iban, bic)
    old = (merchant.bank_holder, merchant.bank_iban, merchant.bank_bic)
    if old == (details.holder, details.iban, details.bic):
        return False
    merchant.bank_holder, merchant.bank_iban, merchant.bank_bic = (
        details.holder,
        details.iban,
        details.bic,
    )
    audit(
        session,
        "merchant.bank_details",
        actor_user_id=actor_user_id,
        merchant_id=merchant.id,
        detail={
            "holder": details.holder,
            "iban": bank_details.mask_iban(details.iban),
            "bic": details.bic,
            "previous_iban": bank_details.mask_iban(old[1]) if old[1] else None,
        },
    )
    return True


def set_btc_account_key(
    session: Session, merchant: Merchant, key: bitcoin.AccountKey
) -> BtcAccountKey:
    """Make `key` the merchant's current BIP84 account; its own derivation index goes with it.

    A key seen before (in any SLIP-132 encoding) continues at its own next index; an account
    that another merchant registered is refused, so nobody receives into someone else's wallet.
    """
    row = session.scalar(select(BtcAccountKey).where(BtcAccountKey.identity == key.identity))
    if row is None:
        row = BtcAccountKey(merchant_id=merchant.id, xpub=key.text, identity=key.identity)
        session.add(row)
        session.flush()
    elif row.merchant_id != merchant.id:
        raise ValidationError(
            N_(
                "this account key is already registered in the zone; export the account key of "
                "your own wallet"
            ),
            field="btc_xpub",
        )
    merchant.btc_xpub = key.text
    return row


def set_policies(
    session: Session,
    merchant: Merchant,
    *,
    confirmations_required: int | None = None,
    expiry_minutes: int | None = None,
    tolerance_bp: int | None = None,
    zero_conf_limit_tiyn: int | None = None,
    actor_user_id: int | None = None,
) -> None:
    """Change a merchant's payment policies, each checked, with one audit row."""
    changes: dict[str, int] = {}
    if confirmations_required is not None:
        if confirmations_required not in ALLOWED_CONFIRMATIONS:
            raise ValidationError(
                N_("confirmations must be 0, 1, 2 or 6"), field="confirmations_required"
            )
        changes["confirmations_required"] = confirmations_required
    if expiry_minutes is not None:
        if not 1 <= expiry_minutes <= 1440:
            raise ValidationError(N_("expiry must be 1 to 1440 minutes"), field="expiry_minutes")
        changes["expiry_minutes"] = expiry_minutes
    if tolerance_bp is not None:
        if not 0 <= tolerance_bp <= 1000:
            raise ValidationError(N_("tolerance must be 0 to 10 %"), field="tolerance_bp")
        changes["tolerance_bp"] = tolerance_bp
    if zero_conf_limit_tiyn is not None:
        if zero_conf_limit_tiyn < 0:
            raise ValidationError(
                N_("the 0-conf limit cannot be negative"), field="zero_conf_limit_tiyn"
            )
        changes["zero_conf_limit_tiyn"] = zero_conf_limit_tiyn
    for key, value in changes.items():
        setattr(merchant, key, value)
    if changes:
        audit(
            session,
            "merchant.policies_changed",
            actor_user_id=actor_user_id,
            merchant_id=merchant.id,
            detail=changes,
        )


def set_merchant_status(
    session: Session,
    merchant: Merchant,
    status: MerchantStatus,
    actor_user_id: int | None,
    reason: str = "",
) -> None:
    previous = merchant.status
    merchant.status = status
    audit(
        session,
        f"merchant.{status.value}",
        actor_user_id=actor_user_id,
        merchant_id=merchant.id,
        detail={"from": previous.value, "reason": reason},
    )


def normalize_email(email: str) -> str:
    email = email.strip().lower()
    if not _EMAIL.match(email):
        raise ValidationError(N_("enter a valid e-mail address"), field="email")
    return email


class EmailInUseError(ValidationError):
    """The e-mail already signs somebody in (in this shop or any other): logins are global."""


def create_user(
    session: Session,
    email: str,
    password: str,
    role: Role,
    merchant_id: int | None = None,
    display_name: str = "",
    actor_user_id: int | None = None,
    one_time_password: bool = False,
) -> User:
    """A new user. `one_time_password`: the password was generated for someone else to hand
    over (invite, registration): the user must change it at first sign-in. A password chosen
    by a person must pass the policy (pos.password_policy)."""
    email = normalize_email(email)
    if one_time_password:
        if len(password) < MIN_PASSWORD_LENGTH:
            raise ValidationError("a generated password is too short", field="password")
    else:
        check_password(password, email)
    if role is Role.OPERATOR and merchant_id is not None:
        raise ValidationError("operators belong to the zone, not to a merchant", field="merchant")
    if role is not Role.OPERATOR:
        if merchant_id is None:
            raise ValidationError(f"a {role} belongs to a merchant", field="merchant")
        if session.get(Merchant, merchant_id) is None:
            raise NotFoundError(N_("no such merchant"))
    if session.scalar(select(func.count()).where(User.email == email)):
        raise EmailInUseError(N_("a user with this e-mail already exists"), field="email")
    user = User(
        email=email,
        password_hash=hash_password(password),
        role=role,
        merchant_id=merchant_id,
        display_name=display_name.strip(),
        active=True,
        must_change_password=one_time_password,
    )
    session.add(user)
    session.flush()
    audit(
        session,
        "user.created",
        actor_user_id=actor_user_id,
        merchant_id=merchant_id,
        detail={"user_id": user.id, "role": role.value},
    )
    return user


def authenticate(
    session: Session, email: str, password: str, now: datetime | None = None
) -> User | None:
    """The user if the e-mail and password match an active account, else None; raises
    ShopSuspendedError for a right password of a suspended merchant's cashier."""
    try:
        email = normalize_email(email)
    except ValidationError:
        burn_time(password)
        return None
    user = session.scalar(select(User).where(User.email == email))
    if user is None:
        burn_time(password)
        return None
    if not verify_password(user.password_hash, password) or not user.active:
        return None
    merchant = user.merchant
    if (
        merchant is not None
        and merchant.status is MerchantStatus.SUSPENDED
        and (user.role is Role.CASHIER)
    ):
        # A suspended merchant's tills are closed (the owner may still sign in). Only someone
        # who knows the password learns it, and "wrong password" would send them guessing.
        raise ShopSuspendedError(N_("this shop is suspended; its tills are closed"))
    user.last_login_at = now or utcnow()
    return user
