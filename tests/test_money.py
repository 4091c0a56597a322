from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pos import money
from pos.errors import ValidationError

prices = st.integers(min_value=1, max_value=10**12)
rates = st.decimals(
    min_value=Decimal("1000"),
    max_value=Decimal("1000000000"),
    places=2,
    allow_nan=False,
    allow_infinity=False,
)


@pytest.mark.parametrize(
    ("text", "tiyn"),
    [
        ("2500", 250000),
        ("2 500", 250000),
        ("2500.5", 250050),
        ("2500,50", 250050),
        ("1\u202f000\u202f000", 100000000),
        ("0.01", 1),
        ("2500 ₸", 250000),
        (" 7 ", 700),
    ],
)
def test_parse_kzt_accepts_what_people_type(text: str, tiyn: int) -> None:
    assert money.parse_kzt(text) == tiyn


@pytest.mark.parametrize("text", ["", "-5", "1e3", "2500.555", "abc", "2,500.00", "25 00", "NaN"])
def test_parse_kzt_refuses_with_a_field_error(text: str) -> None:
    with pytest.raises(ValidationError) as info:
        money.parse_kzt(text)
    assert info.value.field == "amount"


@given(prices, rates)
def test_btc_due_rounds_up_to_the_next_satoshi(price_tiyn: int, rate: Decimal) -> None:
    due = money.btc_due_sat(price_tiyn, rate)
    # due satoshi are worth at least the price; one satoshi less would not be.
    assert Decimal(due) * rate * 100 >= Decimal(price_tiyn) * money.SAT_PER_BTC
    assert Decimal(due - 1) * rate * 100 < Decimal(price_tiyn) * money.SAT_PER_BTC


@given(prices, rates)
def test_paying_exactly_the_due_amount_is_worth_at_least_the_price(
    price_tiyn: int, rate: Decimal
) -> None:
    due = money.btc_due_sat(price_tiyn, rate)
    assert money.sat_to_tiyn(due, rate) >= price_tiyn


@given(prices, st.integers(min_value=0, max_value=9))
def test_kzte_due_is_exact_or_rounded_up(price_tiyn: int, decimals: int) -> None:
    due = money.kzte_due_base_units(price_tiyn, decimals)
    assert due * 100 >= price_tiyn * 10**decimals
    assert (due - 1) * 100 < price_tiyn * 10**decimals
    assert money.base_units_to_tiyn(due, decimals) >= price_tiyn


def test_worked_example_2500_kzt_at_45_million() -> None:
    # 2,500 KZT / 45,000,000 KZT per BTC = 0.0000555555… BTC -> 5,556 sat (rounded up)
    assert money.btc_due_sat(250000, Decimal("45000000")) == 5556
    assert money.kzte_due_base_units(250000, 6) == 2_500_000_000


@given(st.integers(min_value=0, max_value=10**18), st.integers(min_value=0, max_value=12))
def test_format_and_parse_units_round_trip(amount: int, decimals: int) -> None:
    text = money.format_units(amount, decimals)
    assert "e" not in text.lower() and not text.endswith(".")
    assert money.parse_units(text, decimals) == amount


def test_format_units_examples() -> None:
    assert money.format_units(5556, 8) == "0.00005556"
    assert money.format_units(100_000_000, 8) == "1"
    assert money.format_units(2_500_500_000, 6) == "2500.5"


@pytest.mark.parametrize("text", ["1e-3", "-1", "0.0000001", "1.", ".5", " 1"])
def test_parse_units_refuses_non_plain_decimals(text: str) -> None:
    with pytest.raises(ValidationError):
        money.parse_units(text, 6)


def test_tolerance_floor() -> None:
    assert money.tolerance_floor(10_000, 0) == 10_000
    assert money.tolerance_floor(10_000, 50) == 9_950  # 0.5 %
    assert money.tolerance_floor(999, 100) == 990  # the allowance rounds down, never up


def test_format_kzt_groups_thousands() -> None:
    assert money.format_kzt(123456789) == "1\u202f234\u202f567.89"
    assert money.format_kzt(-5) == "-0.05"


@pytest.mark.parametrize("text", ["0", "-1", "abc", "Infinity", "NaN"])
def test_parse_rate_refuses_nonsense(text: str) -> None:
    with pytest.raises(ValidationError):
        money.parse_rate(text)
