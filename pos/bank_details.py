"""A merchant's bank account for KZT payouts: holder, Kazakhstan IBAN, BIC (pure, no I/O).

The zone pays `tenge` merchants by bank transfer (DESIGN §7); a typo in the account would send
the money to someone else, so the IBAN's ISO 13616 check digits are verified and its shape is
Kazakhstan's: "KZ", 2 check digits, a 3-digit bank code and a 13-character account (20 in all).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pos.errors import ValidationError
from pos.i18n import N_

KZ_IBAN_LENGTH = 20
HOLDER_MIN, HOLDER_MAX = 2, 120
_ALNUM = re.compile(r"^[A-Z0-9]*$")
_KZ_BBAN = re.compile(r"^[0-9]{3}[A-Z0-9]{13}$")
_BIC = re.compile(r"^[A-Z]{4}[A-Z]{2}[A-Z0-9]{2}([A-Z0-9]{3})?$")
_SPACES = re.compile(r"\s+")
# A spreadsheet opening the bank CSV would run a cell starting with these as a formula.
_FORMULA_START = ("=", "+", "-", "@")


@dataclass(frozen=True)
class BankDetails:
    holder: str
    iban: str
    bic: str


def iban_mod97(iban: str) -> int:
    """ISO 13616 / ISO 7064 MOD 97-10: the remainder a valid IBAN leaves is 1.

    The first four characters move to the end and every letter becomes two digits (A=10 ..
    Z=35); `iban` must be upper-case letters and digits.
    """
    rearranged = iban[4:] + iban[:4]
    remainder = 0
    for char in rearranged:
        # Digit by digit keeps the numbers small; int(char, 36) maps A..Z to 10..35.
        for digit in str(int(char, 36)):
            remainder = (remainder * 10 + int(digit)) % 97
    return remainder


def parse_kz_iban(text: str) -> str:
    """A Kazakhstan IBAN without spaces, upper-case, with valid check digits."""
    iban = _SPACES.sub("", text).upper()
    if not iban:
        raise ValidationError(
            N_("enter the account's IBAN (KZ and 18 characters)"), field="bank_iban"
        )
    if not _ALNUM.match(iban):
        raise ValidationError(N_("an IBAN holds only letters and digits"), field="bank_iban")
    if not iban.startswith("KZ"):
        raise ValidationError(
            N_("payouts go to accounts in Kazakhstan: the IBAN starts with KZ"), field="bank_iban"
        )
    if len(iban) != KZ_IBAN_LENGTH:
        raise ValidationError(
            N_(
                "a Kazakhstan IBAN is KZ and 18 characters (%(length)d in all); "
                "this one has %(count)d"
            ),
            field="bank_iban",
            length=KZ_IBAN_LENGTH,
            count=len(iban),
        )
    if not iban[2:4].isdigit():
        raise ValidationError(
            N_("the IBAN's check digits (3rd and 4th characters) must be digits"), field="bank_iban"
        )
    if not _KZ_BBAN.match(iban[4:]):
        raise ValidationError(
            N_(
                "after KZ and the check digits comes a 3-digit bank code, then 13 letters or digits"
            ),
            field="bank_iban",
        )
    if iban_mod97(iban) != 1:
        raise ValidationError(
            N_("the IBAN's check digits do not match: look for a mistyped character"),
            field="bank_iban",
        )
    return iban


def parse_bic(text: str, iban: str | None = None) -> str:
    """An ISO 9362 BIC (8 or 11 characters); for a KZ `iban` the bank must be in Kazakhstan."""
    bic = _SPACES.sub("", text).upper()
    if not bic:
        raise ValidationError(N_("enter the bank's BIC (SWIFT code)"), field="bank_bic")
    if len(bic) not in (8, 11):
        raise ValidationError(
            N_("a BIC has 8 or 11 characters; this one has %(count)d"),
            field="bank_bic",
            count=len(bic),
        )
    if not _BIC.match(bic):
        raise ValidationError(
            N_(
                "a BIC is 4 letters (bank), 2 letters (country), 2 letters or digits (location) "
                "and optionally 3 letters or digits (branch), e.g. HSBKKZKX"
            ),
            field="bank_bic",
        )
    if iban is not None and iban.startswith("KZ") and bic[4:6] != "KZ":
        raise ValidationError(
            N_("the BIC's country is %(country)s, but the IBAN is a Kazakhstan account (KZ)"),
            field="bank_bic",
            country=bic[4:6],
        )
    return bic


def parse_holder(text: str) -> str:
    """The account holder's name as the bank knows it, 2 to 120 characters."""
    holder = _SPACES.sub(" ", text).strip()
    if not HOLDER_MIN <= len(holder) <= HOLDER_MAX:
        raise ValidationError(
            N_("the account holder's name needs %(low)d to %(high)d characters"),
            field="bank_holder",
            low=HOLDER_MIN,
            high=HOLDER_MAX,
        )
    if not holder.isprintable():
        raise ValidationError(
            N_("the account holder's name holds characters that cannot be printed"),
            field="bank_holder",
        )
    if holder.startswith(_FORMULA_START):
        raise ValidationError(
            N_("the account holder's name cannot start with =, +, - or @"), field="bank_holder"
        )
    return holder


def parse_bank_details(holder: str, iban: str, bic: str) -> BankDetails:
    """All three checked, holder first (the first error found is raised)."""
    parsed_holder = parse_holder(holder)
    parsed_iban = parse_kz_iban(iban)
    return BankDetails(parsed_holder, parsed_iban, parse_bic(bic, parsed_iban))


def field_problems(holder: str, iban: str, bic: str) -> dict[str, ValidationError]:
    """{field: error} for every one of the three that is wrong (empty: all are fine), so a
    form can show each error beside its field at once (translated by the portal)."""
    errors: dict[str, ValidationError] = {}
    parsed_iban: str | None = None
    try:
        parse_holder(holder)
    except ValidationError as exc:
        errors["bank_holder"] = exc
    try:
        parsed_iban = parse_kz_iban(iban)
    except ValidationError as exc:
        errors["bank_iban"] = exc
    try:
        parse_bic(bic, parsed_iban)
    except ValidationError as exc:
        errors["bank_bic"] = exc
    return errors


def field_errors(holder: str, iban: str, bic: str) -> dict[str, str]:
    """`field_problems` as {field: English message}."""
    return {field: str(exc) for field, exc in field_problems(holder, iban, bic).items()}


def mask_iban(iban: str) -> str:
    """The IBAN with all but its last 4 characters hidden, for logs and audit rows."""
    return "*" * max(len(iban) - 4, 0) + iban[-4:]


def format_iban(iban: str) -> str:
    """Groups of four, as printed on bank statements (KZ86 125K ZT50 0410 0100)."""
    return " ".join(iban[i : i + 4] for i in range(0, len(iban), 4))
