"""The rate rules, as plain functions: staleness, the median, the spread, the depeg, the cross.

Nothing here reads a clock, a file or the network; `pos.rates.RateBook` feeds these functions
the quotes it has, and the worker's refresher uses the same functions for its alarms. Basis
points are rounded up, so a value at the boundary counts against the rate, never for it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from decimal import ROUND_CEILING, ROUND_HALF_EVEN, Decimal, localcontext

from pos.money import BASIS_POINTS

# A quote stamped a little ahead of our clock is a skewed clock, not news from the future.
MAX_CLOCK_SKEW = timedelta(seconds=60)
_PRECISION = 60
CENT = Decimal("0.01")


def staleness(as_of: datetime, now: datetime, max_age: timedelta) -> str | None:
    """Why a quote stamped `as_of` may not be used at `now` (None: it is fresh)."""
    age = now - as_of
    if age < -MAX_CLOCK_SKEW:
        return f"stamped {as_of.isoformat()}, ahead of our clock"
    if age > max_age:
        return f"stale: as of {as_of.isoformat()}, older than {int(max_age.total_seconds())} s"
    return None


def median(rates: Sequence[Decimal]) -> Decimal:
    """The middle rate; with an even count, the mean of the middle two."""
    if not rates:
        raise ValueError("the median of no rates")
    ordered = sorted(rates)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[middle]
    with localcontext() as ctx:
        ctx.prec = _PRECISION
        return (ordered[middle - 1] + ordered[middle]) / 2


def spread_bp(rates: Sequence[Decimal]) -> int:
    """How far apart the rates are: (highest - lowest) / median, in basis points, rounded up."""
    if len(rates) < 2:
        return 0
    with localcontext() as ctx:
        ctx.prec = _PRECISION
        spread = (max(rates) - min(rates)) * BASIS_POINTS / median(rates)
        return int(spread.to_integral_value(rounding=ROUND_CEILING))


def deviation_bp(rate: Decimal, reference: Decimal) -> int:
    """|rate - reference| / reference in basis points, rounded up (for the Rates page)."""
    with localcontext() as ctx:
        ctx.prec = _PRECISION
        off = abs(rate - reference) * BASIS_POINTS / reference
        return int(off.to_integral_value(rounding=ROUND_CEILING))


def depeg_bp(kzte_kzt: Decimal) -> int:
    """How far KZTE trades from its 1:1 peg to KZT, in basis points, rounded up."""
    return deviation_bp(kzte_kzt, Decimal(1))


def cross_rate(crypto_per_usd: Decimal, kzt_per_usd: Decimal) -> Decimal:
    """BTC/KZT from BTC/USD(T) and USD/KZT: exact product, then to the tiyn (half-even)."""
    with localcontext() as ctx:
        ctx.prec = _PRECISION
        return (crypto_per_usd * kzt_per_usd).quantize(CENT, rounding=ROUND_HALF_EVEN)
