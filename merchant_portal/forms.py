"""Small helpers for hand-written forms: read fields, turn domain errors into field messages."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from datetime import date

from flask import flash, redirect, request
from flask.typing import ResponseReturnValue
from flask_babel import gettext

from merchant_portal.context import db
from merchant_portal.errors import translated
from merchant_portal.labels import format_kzt
from pos import money
from pos.errors import PosError, ValidationError

# The database stores amounts as BIGINT: nothing typed may go beyond it.
BIGINT_MAX = 2**63 - 1
# A whole number typed in a form has at most this many digits (int() of a 5000-digit text is
# refused by Python itself, and no field of ours needs more than a BIGINT's 19).
MAX_DIGITS = 19
# Dates typed in filters and forms: a sane range, so date arithmetic (day ranges, time zones)
# can never overflow at year 1 or 9999.
FIRST_DATE = date(2000, 1, 1)
LAST_DATE = date(2100, 12, 31)
# The largest amount in tenge any form accepts (10 billion ₸); fields have their own lower caps.
MAX_FORM_TIYN = 10_000_000_000 * money.TIYN_PER_KZT


def form_values(names: Iterable[str]) -> dict[str, str]:
    """The submitted values of `names` (missing ones as ''), stripped, for re-rendering."""
    return {name: request.form.get(name, "").strip() for name in names}


def field_error(exc: PosError, default_field: str = "form") -> dict[str, str]:
    """{field: message} for a domain error; errors without a field land on the whole form."""
    field = exc.field if isinstance(exc, ValidationError) and exc.field else default_field
    return {field: translated(exc)}


def is_whole_number(text: str) -> bool:
    """ASCII digits only, at most MAX_DIGITS of them.

    `str.isdigit()` alone is not enough: '²' is a digit to it but `int('²')` raises, and an
    Arabic-Indic '٣' would be read as a number a person never meant to type.
    """
    return 0 < len(text) <= MAX_DIGITS and text.isascii() and text.isdigit()


def parse_int(text: str, field: str, low: int, high: int, what: str) -> int:
    """A whole number between `low` and `high`, or a ValidationError naming `field`."""
    cleaned = text.strip()
    if not is_whole_number(cleaned) or not low <= int(cleaned) <= high:
        raise ValidationError(
            gettext(
                "%(what)s must be a whole number from %(low)d to %(high)d",
                what=what,
                low=low,
                high=high,
            ),
            field=field,
        )
    return int(cleaned)


def parse_date(text: str, field: str) -> date:
    """A `YYYY-MM-DD` date from FIRST_DATE to LAST_DATE, or a ValidationError naming `field`."""
    cleaned = text.strip()
    try:
        day = date.fromisoformat(cleaned) if cleaned.isascii() else None
    except ValueError:
        day = None
    if day is None:
        raise ValidationError(gettext("Use a date like 2026-11-23."), field=field)
    if not FIRST_DATE <= day <= LAST_DATE:
        raise ValidationError(
            gettext(
                "Choose a date from %(first)s to %(last)s.",
                first=FIRST_DATE.isoformat(),
                last=LAST_DATE.isoformat(),
            ),
            field=field,
        )
    return day


def parse_optional_date(text: str | None, field: str) -> date | None:
    """Like `parse_date`, but an empty or missing value is None (an open end of a filter)."""
    return parse_date(text, field) if text and text.strip() else None


# At most this many digits before the decimal point of a typed tenge amount (999 999 999 ₸).
MAX_TENGE_DIGITS = 9
# The spaces people put between thousands: ASCII, no-break (ru/kk keyboards), narrow no-break.
GROUP_SPACES = " \u00a0\u202f"
_TENGE_CHARS = frozenset("0123456789.," + GROUP_SPACES)


def _grouped_digits(whole: str) -> tuple[str, str] | None:
    """(digits, separator kind) of a whole part: plain '2500' (kind ''), or groups of three
    after a first group of 1-3 with one kind of separator throughout: '2,500' (kind ','),
    '2 500' with any of GROUP_SPACES (kind ' '). None when it is neither."""
    kind = "," if "," in whole else " " if any(c in whole for c in GROUP_SPACES) else ""
    if not kind:
        return (whole, "") if whole.isdigit() else None
    if kind == "," and any(c in whole for c in GROUP_SPACES):
        return None  # '2,500 000' mixes two separators
    groups = re.split("[" + (GROUP_SPACES if kind == " " else ",") + "]", whole)
    head, tail = groups[0], groups[1:]
    if not (1 <= len(head) <= 3 and head.isdigit()):
        return None
    if not all(len(group) == 3 and group.isdigit() for group in tail):
        return None
    return "".join(groups), kind


def parse_tenge(text: str, field: str, max_tiyn: int = MAX_FORM_TIYN) -> int:
    """An amount in tenge typed by a person, in tiyn, from 0 to `max_tiyn`.

    Accepted: '2500', '2 500' (ASCII, no-break or narrow no-break spaces), '2,500', with tiyn
    after a point ('2 500.50', '2,500.5') or a decimal comma. One rule settles what a comma is:
    a comma after 1-3 leading digits is a thousands separator and must be followed by exactly
    three digits; a comma is a decimal comma only where it cannot be one (after four or more
    plain digits, after space-grouped thousands, or after a lone 0). So '2500,50' and
    '2 500,50' are 2500.50 ₸, while '2,50' (2.50 or a mistyped 2,500?) and '2.500,00' are
    refused rather than guessed. ASCII digits only; at most MAX_TENGE_DIGITS before the point.
    """
    cleaned = text.strip().removesuffix("₸").strip(GROUP_SPACES)
    hint = gettext("That is not an amount in tenge: type e.g. 2500, 2 500 or 2500.50.")
    if not cleaned or len(cleaned) > 2 * MAX_DIGITS or not set(cleaned) <= _TENGE_CHARS:
        raise ValidationError(hint, field=field)
    whole, frac = cleaned, ""
    if "." in cleaned:
        whole, _, frac = cleaned.partition(".")
    elif "," in cleaned:
        before, _, after = cleaned.rpartition(",")
        if 1 <= len(after) <= 2 and after.isdigit():
            parts = _grouped_digits(before)
            decimal_comma = parts is not None and (
                parts[1] == " " or (parts[1] == "" and (len(before) >= 4 or before == "0"))
            )
            if not decimal_comma:
                raise ValidationError(
                    gettext(
                        "%(text)s is ambiguous: write tiyn after a point (2.50) "
                        "or thousands in full (2500).",
                        text=cleaned,
                    ),
                    field=field,
                )
            whole, frac = before, after
    parts = _grouped_digits(whole)
    if parts is None or not (frac == "" or (len(frac) <= 2 and frac.isdigit())):
        raise ValidationError(hint, field=field)
    digits = parts[0]
    if len(digits) > MAX_TENGE_DIGITS:
        raise ValidationError(
            gettext("At most %(count)d digits before the point.", count=MAX_TENGE_DIGITS),
            field=field,
        )
    tiyn = int(digits) * money.TIYN_PER_KZT + int(frac.ljust(2, "0"))
    if tiyn > min(max_tiyn, BIGINT_MAX):
        raise ValidationError(
            gettext("At most %(amount)s ₸.", amount=format_kzt(max_tiyn)), field=field
        )
    return tiyn


def parse_percent_bp(text: str, field: str, high_bp: int) -> int:
    """'0.5' or '1,25' percent as basis points (at most two decimals), 0..high_bp."""
    cleaned = text.strip().removesuffix("%").strip().replace(",", ".")
    whole, _, frac = cleaned.partition(".")
    if not is_whole_number(whole) or (frac and (not is_whole_number(frac) or len(frac) > 2)):
        raise ValidationError(gettext("enter a percentage such as 0, 0.5 or 1.25"), field=field)
    bp = int(whole) * 100 + int(frac.ljust(2, "0") or 0)
    if bp > high_bp:
        raise ValidationError(
            gettext("at most %(percent)d %%", percent=high_bp // 100), field=field
        )
    return bp


def requested_page() -> int:
    """The `page` query argument as a positive int (1 when absent or silly)."""
    page = request.args.get("page", "1")
    return int(page) if is_whole_number(page) and 0 < int(page) < 100_000 else 1


def form_action(
    work: Callable[[], str], errors: tuple[type[PosError], ...], back: str
) -> ResponseReturnValue:
    """A POST of a list page: run `work` and commit, flashing the message it returns; on one of
    `errors` roll back (nothing is kept) and flash the error instead. Then back to `back`."""
    session = db()
    try:
        message = work()
    except errors as exc:
        session.rollback()
        flash(translated(exc))
        return redirect(back), 303
    session.commit()
    flash(message)
    return redirect(back), 303
