"""Exact money: integers in minor units, `Decimal` only at conversion.

Units: KZT in tiyn (1 KZT = 100 tiyn), BTC in satoshi, KZTE in token base units (10**decimals
per KZTE). The one rounding rule: when a KZT price is converted to the crypto amount due, the
result is rounded UP to the next minor unit, so the merchant never receives less than the price.
When crypto received is valued back in KZT (ledger, reports) it is rounded DOWN, so the zone never
books value it did not receive.
"""

from __future__ import annotations

import re
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal, InvalidOperation, localcontext

from pos.errors import ValidationError
from pos.i18n import N_

TIYN_PER_KZT = 100
SAT_PER_BTC = 100_000_000
BASIS_POINTS = 10_000
# Prices go up to 10**12 tiyn and rates carry a few decimals; 60 digits keeps every step exact.
_PRECISION = 60

_KZT_INPUT = re.compile(
    r"^(?P<whole>\d{1,3}(?:[ \u00a0\u202f]?\d{3})*|\d+)(?:[.,](?P<frac>\d{1,2}))?$"
)


def parse_kzt(text: str) -> int:
    """Parse a KZT amount typed by a person ("2500", "2 500", "2500.5", "2500,50") into tiyn."""
    cleaned = text.strip().removesuffix("₸").removesuffix("KZT").strip()
    match = _KZT_INPUT.match(cleaned)
    if match is None:
        raise ValidationError(
            N_(
                "%(text)s is not an amount in tenge; use digits with at most two decimals, "
                "e.g. 2500 or 2500.50"
            ),
            field="amount",
            text=repr(text),
        )
    whole = int(re.sub(r"\D", "", match["whole"]))
    frac = (match["frac"] or "").ljust(2, "0")
    return whole * TIYN_PER_KZT + int(frac or 0)


def format_kzt(tiyn: int) -> str:
    """Render tiyn as tenge with a thin space between thousands: 250000 -> '2 500.00'."""
    sign = "-" if tiyn < 0 else ""
    whole, frac = divmod(abs(tiyn), TIYN_PER_KZT)
    return f"{sign}{whole:,}".replace(",", "\u202f") + f".{frac:02d}"


def btc_due_sat(price_tiyn: int, kzt_per_btc: Decimal) -> int:
    """Satoshi due for a KZT price at a BTC/KZT rate, rounded up to the next satoshi."""
    _check_rate(kzt_per_btc)
    with localcontext() as ctx:
        ctx.prec = _PRECISION
        sat = Decimal(price_tiyn) * SAT_PER_BTC / (kzt_per_btc * TIYN_PER_KZT)
        return int(sat.to_integral_value(rounding=ROUND_CEILING))


def kzte_due_base_units(price_tiyn: int, decimals: int) -> int:
    """KZTE base units due for a KZT price (KZTE is 1:1 with KZT), rounded up."""
    with localcontext() as ctx:
        ctx.prec = _PRECISION
        units = Decimal(price_tiyn) * (Decimal(10) ** decimals) / TIYN_PER_KZT
        return int(units.to_integral_value(rounding=ROUND_CEILING))


def sat_to_tiyn(amount_sat: int, kzt_per_btc: Decimal) -> int:
    """KZT value of satoshi at a rate, rounded down to the tiyn."""
    _check_rate(kzt_per_btc)
    with localcontext() as ctx:
        ctx.prec = _PRECISION
        tiyn = Decimal(amount_sat) * kzt_per_btc * TIYN_PER_KZT / SAT_PER_BTC
        return int(tiyn.to_integral_value(rounding=ROUND_FLOOR))


def base_units_to_tiyn(amount_base_units: int, decimals: int) -> int:
    """KZT value of KZTE base units (1:1), rounded down to the tiyn."""
    with localcontext() as ctx:
        ctx.prec = _PRECISION
        tiyn = Decimal(amount_base_units) * TIYN_PER_KZT / (Decimal(10) ** decimals)
        return int(tiyn.to_integral_value(rounding=ROUND_FLOOR))


def format_units(amount: int, decimals: int) -> str:
    """An integer amount of minor units as a plain decimal string without trailing zeros.

    Used for BIP21 `amount=` (decimals 8) and Solana Pay `amount=` (mint decimals): both want a
    decimal number in the major unit, never scientific notation.
    """
    if amount < 0:
        raise ValueError("amounts in payment requests are never negative")
    whole, frac = divmod(amount, 10**decimals)
    if decimals == 0 or frac == 0:
        return str(whole)
    return f"{whole}.{frac:0{decimals}d}".rstrip("0")


def parse_units(text: str, decimals: int, field: str = "amount") -> int:
    """Parse a plain decimal string ("0.001", "2500") into minor units; no signs, no exponents."""
    if not re.fullmatch(r"\d+(\.\d+)?", text):
        raise ValidationError(
            N_("%(text)s is not a plain positive decimal number"), field=field, text=repr(text)
        )
    whole, _, frac = text.partition(".")
    if len(frac) > decimals:
        raise ValidationError(
            N_("%(text)s has more than %(decimals)d decimal places"),
            field=field,
            text=repr(text),
            decimals=decimals,
        )
    scale: int = 10**decimals
    return int(whole) * scale + int(frac.ljust(decimals, "0") or 0)


def tolerance_floor(due: int, tolerance_bp: int) -> int:
    """The smallest amount that still counts as paid in full under a tolerance in basis points."""
    return due - (due * tolerance_bp) // BASIS_POINTS


def parse_rate(text: str) -> Decimal:
    """A rate from a feed or a file: a positive finite decimal."""
    try:
        rate = Decimal(text)
    except InvalidOperation:
        raise ValidationError(
            N_("%(text)s is not a decimal rate"), field="rate", text=repr(text)
        ) from None
    _check_rate(rate)
    return rate


def _check_rate(rate: Decimal) -> None:
    if not rate.is_finite() or rate <= 0:
        raise ValidationError(
            N_("rate must be a positive number, got %(rate)s"), field="rate", rate=rate
        )
