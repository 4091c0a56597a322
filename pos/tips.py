"""Tips on a sale: a preset percentage of the price, rounded half-up to the tiyn.

The one rounding rule: the exact tip `price * percent / 100` is rounded to the nearest tiyn,
a half tiyn going up (2 345.55 ₸ * 10 % = 234.555 ₸ → 234.56 ₸). The cashier sees the exact
value and the rounded one before charging, so nobody wonders where a tiyn went.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from pos.errors import ValidationError

PRESETS_PERCENT = (0, 5, 10, 15)
_PERCENT = 100


@dataclass(frozen=True)
class Tip:
    """A sale's price, its tip and the total, all in tiyn, with the exact tip behind it."""

    price_tiyn: int
    percent: int
    tip_tiyn: int
    exact_tip_tiyn: Decimal  # price * percent / 100 before rounding, in tiyn

    @property
    def total_tiyn(self) -> int:
        return self.price_tiyn + self.tip_tiyn

    @property
    def rounded(self) -> bool:
        """Whether rounding changed the tip (only then is the exact value worth showing)."""
        return self.exact_tip_tiyn != self.tip_tiyn


def tip_tiyn(price_tiyn: int, percent: int) -> int:
    """`percent` of `price_tiyn`, rounded half-up to the tiyn (integers only, so exact)."""
    if price_tiyn < 0 or percent < 0:
        raise ValueError("prices and tip percentages are never negative")
    return (price_tiyn * percent + _PERCENT // 2) // _PERCENT


def add_tip(price_tiyn: int, percent: int) -> Tip:
    """The tip of one of PRESETS_PERCENT on `price_tiyn`; another percentage is refused."""
    if percent not in PRESETS_PERCENT:
        raise ValidationError("choose one of the tip buttons", field="tip")
    exact = Decimal(price_tiyn * percent) / _PERCENT
    return Tip(price_tiyn, percent, tip_tiyn(price_tiyn, percent), exact)
