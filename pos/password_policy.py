"""What a password chosen by a person must be: long enough, not a common one, not the e-mail.

The common list (`pos/data/common-passwords.txt`, 20,000 entries) ships with the project, so
the check needs no network. One-time passwords made by the system (`secrets`) are not checked.
"""

from __future__ import annotations

import functools
from pathlib import Path

from pos.errors import ValidationError
from pos.passwords import MIN_PASSWORD_LENGTH


class PasswordPolicyError(ValidationError):
    """A chosen password breaks the policy; `reason` is one of "short", "long", "email",
    "common" (the portal shows a translated sentence per reason)."""

    def __init__(self, message: str, reason: str, field: str) -> None:
        super().__init__(message, field=field)
        self.reason = reason


MAX_PASSWORD_LENGTH = 256  # longer is no safer, and scrypt would hash whatever is sent
_COMMON_FILE = Path(__file__).resolve().parent / "data" / "common-passwords.txt"


@functools.cache
def common_passwords() -> frozenset[str]:
    lines = _COMMON_FILE.read_text(encoding="utf-8").splitlines()
    return frozenset(line.strip() for line in lines if line.strip() and not line.startswith("#"))


def check_password(password: str, email: str = "", field: str = "password") -> None:
    """Raise ValidationError (with `field`) unless `password` may be used by `email`."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise PasswordPolicyError(
            f"the password needs at least {MIN_PASSWORD_LENGTH} characters", "short", field
        )
    if len(password) > MAX_PASSWORD_LENGTH:
        raise PasswordPolicyError(
            f"the password is limited to {MAX_PASSWORD_LENGTH} characters", "long", field
        )
    folded = password.strip().lower()
    email = email.strip().lower()
    if email and (folded == email or folded == email.split("@")[0]):
        raise PasswordPolicyError("the password must not be your e-mail address", "email", field)
    if folded in common_passwords() or len(set(folded)) < 4:
        raise PasswordPolicyError(
            "this password is too common; choose one that is hard to guess", "common", field
        )
