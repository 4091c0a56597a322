"""Small helpers for hand-written forms: read fields, turn domain errors into field messages."""

from __future__ import annotations

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


def parse_tenge(text: str, field: str, max_tiyn: int = MAX_FORM_TIYN) -> int:
    """An amount in tenge typed by a person, in tiyn, from 0 to `max_tiyn`; ASCII digits only."""
    cleaned = text.strip()
    if not cleaned.isascii() or len(cleaned) > 2 * MAX_DIGITS:
        raise ValidationError(
            gettext("Enter the amount in tenge, e.g. 2500 or 2500.50."), field=field
        )
    try:
        tiyn = money.parse_kzt(cleaned)
    except ValidationError as exc:
        raise ValidationError(translated(exc), field=field) from None
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
