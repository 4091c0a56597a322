"""Small helpers for hand-written forms: read fields, turn domain errors into field messages."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from flask import flash, redirect, request
from flask.typing import ResponseReturnValue

from merchant_portal.context import db
from pos.errors import PosError, ValidationError


def form_values(names: Iterable[str]) -> dict[str, str]:
    """The submitted values of `names` (missing ones as ''), stripped, for re-rendering."""
    return {name: request.form.get(name, "").strip() for name in names}


def field_error(exc: PosError, default_field: str = "form") -> dict[str, str]:
    """{field: message} for a domain error; errors without a field land on the whole form."""
    field = exc.field if isinstance(exc, ValidationError) and exc.field else default_field
    return {field: str(exc)}


def parse_int(text: str, field: str, low: int, high: int, what: str) -> int:
    """A whole number between `low` and `high`, or a ValidationError naming `field`."""
    cleaned = text.strip()
    if not cleaned.isdigit() or not low <= int(cleaned) <= high:
        raise ValidationError(f"{what} must be a whole number from {low} to {high}", field=field)
    return int(cleaned)


def parse_percent_bp(text: str, field: str, high_bp: int) -> int:
    """'0.5' or '1,25' percent as basis points (at most two decimals), 0..high_bp."""
    cleaned = text.strip().removesuffix("%").strip().replace(",", ".")
    whole, _, frac = cleaned.partition(".")
    if not whole.isdigit() or (frac and (not frac.isdigit() or len(frac) > 2)):
        raise ValidationError("enter a percentage such as 0, 0.5 or 1.25", field=field)
    bp = int(whole) * 100 + int(frac.ljust(2, "0") or 0)
    if bp > high_bp:
        raise ValidationError(f"at most {high_bp // 100} %", field=field)
    return bp


def requested_page() -> int:
    """The `page` query argument as a positive int (1 when absent or silly)."""
    page = request.args.get("page", "1")
    return int(page) if page.isdigit() and 0 < int(page) < 100_000 else 1


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
        flash(str(exc))
        return redirect(back), 303
    session.commit()
    flash(message)
    return redirect(back), 303
