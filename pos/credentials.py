"""Passwords and second factors of existing users (services: take a Session, never commit).

Every change that should end other sessions bumps `User.session_generation`: the portal keeps
the generation in the signed-in session and refuses a session whose generation is old.
"""

from __future__ import annotations

import secrets

from sqlalchemy import or_, update
from sqlalchemy.orm import Session

from pos import totp
from pos.accounts import audit
from pos.errors import ValidationError
from pos.i18n import N_
from pos.models import User
from pos.password_policy import check_password
from pos.passwords import hash_password, verify_password


def generate_one_time_password() -> str:
    """16 URL-safe characters (96 bits), handed over in person and changed at first sign-in."""
    return secrets.token_urlsafe(12)


def end_sessions(user: User) -> None:
    """Every session of `user` (on any device, a copied cookie too) stops working."""
    user.session_generation += 1


def change_password(
    session: Session, user: User, current: str, new: str, ip: str | None = None
) -> None:
    """The user picks a new password, proving the current one; other sessions end."""
    if not verify_password(user.password_hash, current):
        raise ValidationError(N_("the current password is wrong"), field="current_password")
    if current == new:
        raise ValidationError(
            N_("choose a password different from the current one"), field="new_password"
        )
    check_password(new, user.email, field="new_password")
    user.password_hash = hash_password(new)
    user.must_change_password = False
    end_sessions(user)
    audit(
        session,
        "user.password_changed",
        actor_user_id=user.id,
        merchant_id=user.merchant_id,
        ip=ip,
        detail={"user_id": user.id},
    )


def reset_password(
    session: Session, user: User, actor_user_id: int | None, ip: str | None = None
) -> str:
    """A new one-time password for `user` (returned, to show once); their sessions end, and
    they must choose their own at the next sign-in. Re-enables a disabled user."""
    password = generate_one_time_password()
    user.password_hash = hash_password(password)
    user.must_change_password = True
    user.active = True
    end_sessions(user)
    audit(
        session,
        "user.password_reset",
        actor_user_id=actor_user_id,
        merchant_id=user.merchant_id,
        ip=ip,
        detail={"user_id": user.id},
    )
    return password


def set_active(
    session: Session, user: User, active: bool, actor_user_id: int | None, ip: str | None = None
) -> None:
    """Enable or disable a user; disabling ends their sessions at once."""
    user.active = active
    if not active:
        end_sessions(user)
    audit(
        session,
        f"user.{'enabled' if active else 'disabled'}",
        actor_user_id=actor_user_id,
        merchant_id=user.merchant_id,
        ip=ip,
        detail={"user_id": user.id},
    )


def enable_totp(
    session: Session,
    user: User,
    secret: str,
    code: str,
    ip: str | None = None,
    at: float | None = None,
) -> list[str]:
    """Turn on two-factor sign-in with `secret`, once `code` from the app proves it was
    scanned; returns the recovery codes (only their hashes are stored)."""
    step = totp.verify(secret, code, None, at)
    if step is None:
        raise ValidationError(N_("the code does not match; check the phone's clock"), field="code")
    codes = totp.new_recovery_codes()
    user.totp_secret = secret
    user.totp_last_step = step
    user.recovery_code_hashes = [totp.hash_recovery_code(c) for c in codes]
    audit(
        session,
        "user.2fa_enabled",
        actor_user_id=user.id,
        merchant_id=user.merchant_id,
        ip=ip,
        detail={"user_id": user.id},
    )
    return codes


def disable_totp(session: Session, user: User, password: str, ip: str | None = None) -> None:
    """Turn two-factor sign-in off (the password proves it is the user)."""
    if not verify_password(user.password_hash, password):
        raise ValidationError(N_("the password is wrong"), field="password")
    user.totp_secret = None
    user.totp_last_step = None
    user.recovery_code_hashes = []
    end_sessions(user)
    audit(
        session,
        "user.2fa_disabled",
        actor_user_id=user.id,
        merchant_id=user.merchant_id,
        ip=ip,
        detail={"user_id": user.id},
    )


def check_second_factor(
    session: Session, user: User, code: str, ip: str | None = None, at: float | None = None
) -> str | None:
    """ "totp" or "recovery" if `code` is a fresh authenticator code or an unused recovery code
    of `user` (a recovery code is used up), else None. A replayed TOTP code is refused."""
    if user.totp_secret is None:
        return None
    if totp.looks_like_totp(code):
        step = totp.verify(user.totp_secret, code, user.totp_last_step, at)
        if step is None:
            return None
        # Compare-and-set: of two requests racing with one code, only one moves the step on.
        moved = session.execute(
            update(User)
            .where(
                User.id == user.id,
                or_(User.totp_last_step.is_(None), User.totp_last_step < step),
            )
            .values(totp_last_step=step)
            .execution_options(synchronize_session=False)
        )
        if moved.rowcount != 1:  # type: ignore[attr-defined]
            return None
        user.totp_last_step = step
        return "totp"
    digest = totp.hash_recovery_code(code)
    remaining = [h for h in user.recovery_code_hashes if not secrets.compare_digest(h, digest)]
    if len(remaining) == len(user.recovery_code_hashes):
        return None
    # Compare-and-set on the use counter: of two requests racing with one code, one gets in.
    used = session.execute(
        update(User)
        .where(User.id == user.id, User.recovery_codes_used == user.recovery_codes_used)
        .values(recovery_code_hashes=remaining, recovery_codes_used=User.recovery_codes_used + 1)
        .execution_options(synchronize_session=False)
    )
    if used.rowcount != 1:  # type: ignore[attr-defined]
        return None
    session.refresh(user, ["recovery_code_hashes", "recovery_codes_used"])
    audit(
        session,
        "user.recovery_code_used",
        actor_user_id=user.id,
        merchant_id=user.merchant_id,
        ip=ip,
        detail={"user_id": user.id, "remaining": len(remaining)},
    )
    return "recovery"
