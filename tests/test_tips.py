"""Tips: a preset percentage, rounded half-up to the tiyn (pos.tips), exact in integers."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pos import tips
from pos.errors import ValidationError


@pytest.mark.parametrize(
    ("price_tiyn", "percent", "tip_tiyn"),
    [
        (250_000, 10, 25_000),  # exact
        (234_555, 10, 23_456),  # 23 455.5 tiyn: the half goes up
        (234_554, 10, 23_455),  # 23 455.4: down
        (100_001, 5, 5_000),  # 5 000.05: down
        (10, 5, 1),  # 0.5 tiyn: up, so a tip is never silently nothing
        (9, 5, 0),  # 0.45: down
        (1, 15, 0),
        (250_000, 0, 0),
    ],
)
def test_tip_rounds_half_up_to_the_tiyn(price_tiyn: int, percent: int, tip_tiyn: int) -> None:
    tip = tips.add_tip(price_tiyn, percent)
    assert tip.tip_tiyn == tip_tiyn and tip.total_tiyn == price_tiyn + tip_tiyn
    assert tip.rounded is (Decimal(price_tiyn * percent) / 100 != tip_tiyn)


@given(st.integers(min_value=0, max_value=10**14), st.sampled_from(tips.PRESETS_PERCENT))
def test_tip_agrees_with_decimal_half_up(price_tiyn: int, percent: int) -> None:
    tip = tips.add_tip(price_tiyn, percent)
    expected = (Decimal(price_tiyn) * percent / 100).quantize(Decimal(1), rounding=ROUND_HALF_UP)
    assert tip.tip_tiyn == int(expected)
    assert tip.exact_tip_tiyn == Decimal(price_tiyn * percent) / 100
    assert abs(tip.exact_tip_tiyn - tip.tip_tiyn) <= Decimal("0.5")


@pytest.mark.parametrize("percent", [1, 20, 100, -5])
def test_only_the_presets_are_tips(percent: int) -> None:
    with pytest.raises(ValidationError) as caught:
        tips.add_tip(250_000, percent)
    assert caught.value.field == "tip"
