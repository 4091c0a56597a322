"""The posting rules as plain functions: fee rounding, allocation, book value, balanced legs."""

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pos.states import PaymentMethod
from settlement.ledger.errors import UnbalancedPostingError
from settlement.ledger.models import Side
from settlement.ledger.posting import (
    BANK,
    FEES,
    FX_RESULT,
    Leg,
    allocation,
    allocation_legs,
    book_value_tiyn,
    check_balanced,
    conversion_legs,
    fee_tiyn,
    gross_tiyn,
    payout_legs,
    receipt_legs,
    reversal_legs,
)


def test_fee_rounds_half_up_to_the_tiyn() -> None:
    assert fee_tiyn(100_100, 150) == 1502  # 1501.5 tiyn -> 1502
    assert fee_tiyn(100_099, 150) == 1501  # 1501.485 -> 1501
    assert fee_tiyn(250_000, 100) == 2500
    assert fee_tiyn(1, 4_999) == 0 and fee_tiyn(1, 5_000) == 1
    with pytest.raises(ValueError):
        fee_tiyn(100, 10_001)


def test_gross_rounds_down_at_the_locked_rate() -> None:
    # 0.00123457 BTC at 45 000 000.55 KZT/BTC = 55 555.6506... KZT -> 5 555 565 tiyn
    assert gross_tiyn(PaymentMethod.BTC, 123_457, Decimal("45000000.55"), 6) == 5_555_565
    assert gross_tiyn(PaymentMethod.KZTE, 1_002_234_567, Decimal(1), 6) == 100_223


def test_allocation_splits_the_due_value_into_net_fee_and_rounding() -> None:
    # A BTC quote's satoshi ceiling: 2 500 ₸ asked, the due satoshi are worth 2 500.06 ₸.
    split = allocation(250_000, 250_006, 100)
    assert (split.owed_tiyn, split.fee_tiyn, split.net_tiyn) == (250_000, 2500, 247_500)
    assert split.rounding_tiyn == 6
    assert allocation_legs(False, 7, split) == [
        Leg("zone:unallocated", Side.DEBIT, 250_006),
        Leg("merchant:7:payable", Side.CREDIT, 247_500),
        Leg(FEES, Side.CREDIT, 2500),
        Leg("zone:rounding", Side.CREDIT, 6),
    ]


def test_direct_allocation_records_the_sale_and_the_fee_owed() -> None:
    split = allocation(100_000, 100_000, 100)
    assert allocation_legs(True, 3, split) == [
        Leg("merchant:3:sales_unallocated", Side.DEBIT, 100_000),
        Leg("merchant:3:sales", Side.CREDIT, 100_000),
        Leg("merchant:3:fees_due", Side.DEBIT, 1000),
        Leg(FEES, Side.CREDIT, 1000),
    ]


def test_underpayment_within_tolerance_owes_what_came_in() -> None:
    split = allocation(100_000, 99_500, 100)
    assert split.owed_tiyn == 99_500 and split.rounding_tiyn == 0
    assert split.fee_tiyn == 1000 and split.net_tiyn == 98_500


def test_fee_never_exceeds_what_is_owed() -> None:
    split = allocation(10_000, 50, 10_000)
    assert split.fee_tiyn == 50 and split.net_tiyn == 0
    check_balanced(allocation_legs(False, 1, split))


def test_receipts_carry_the_quantity_on_the_holding_account() -> None:
    assert receipt_legs(False, PaymentMethod.BTC, 2, 5_000, 12_345) == [
        Leg("zone:clearing:btc", Side.DEBIT, 5_000, 12_345),
        Leg("zone:unallocated", Side.CREDIT, 5_000),
    ]
    assert receipt_legs(True, PaymentMethod.KZTE, 2, 5_000, 50_000_000) == [
        Leg("merchant:2:crypto_received:kzte", Side.DEBIT, 5_000, 50_000_000),
        Leg("merchant:2:sales_unallocated", Side.CREDIT, 5_000),
    ]


@given(
    price=st.integers(1, 10**12),
    allocated=st.integers(1, 2 * 10**12),
    fee_bp=st.integers(0, 10_000),
    direct=st.booleans(),
)
def test_allocated_is_net_plus_fee_plus_rounding(
    price: int, allocated: int, fee_bp: int, direct: bool
) -> None:
    a = allocation(price, allocated, fee_bp)
    assert a.allocated_tiyn == a.net_tiyn + a.fee_tiyn + a.rounding_tiyn
    assert min(a.net_tiyn, a.fee_tiyn, a.rounding_tiyn) >= 0
    legs = allocation_legs(direct, 3, a)
    check_balanced(legs)
    check_balanced(reversal_legs(legs))


@given(
    balance_atomic=st.integers(1, 10**15),
    balance_tiyn=st.integers(1, 10**13),
    data=st.data(),
)
def test_book_value_is_proportional_and_takes_all_of_a_whole_balance(
    balance_atomic: int, balance_tiyn: int, data: st.DataObject
) -> None:
    amount = data.draw(st.integers(1, balance_atomic))
    book = book_value_tiyn(balance_tiyn, balance_atomic, amount)
    exact = Decimal(balance_tiyn) * amount / balance_atomic
    assert abs(Decimal(book) - exact) <= Decimal("0.5")
    assert book_value_tiyn(balance_tiyn, balance_atomic, balance_atomic) == balance_tiyn
    assert 0 <= book <= balance_tiyn


def test_reversal_swaps_every_side() -> None:
    legs = payout_legs(4, 500)
    assert reversal_legs(legs) == [
        Leg("merchant:4:payable", Side.CREDIT, 500),
        Leg(BANK, Side.DEBIT, 500),
    ]


@pytest.mark.parametrize(
    ("received", "fx"),
    [
        (10_500, [Leg(FX_RESULT, Side.CREDIT, 500)]),  # sold above the locked rate: a gain
        (9_700, [Leg(FX_RESULT, Side.DEBIT, 300)]),  # below: a loss
        (10_000, []),
    ],
)
def test_conversion_books_the_rate_difference(received: int, fx: list[Leg]) -> None:
    legs = conversion_legs(PaymentMethod.BTC, 40_000, 10_000, received)
    assert legs == [
        Leg(BANK, Side.DEBIT, received),
        Leg("zone:clearing:btc", Side.CREDIT, 10_000, 40_000),
        *fx,
    ]
    check_balanced(legs)


@pytest.mark.parametrize(
    "legs",
    [
        [Leg("a", Side.DEBIT, 5), Leg("b", Side.CREDIT, 4)],
        [Leg("a", Side.DEBIT, 5)],
        [Leg("a", Side.DEBIT, 0), Leg("b", Side.CREDIT, 0)],
        [Leg("a", Side.DEBIT, -5), Leg("b", Side.CREDIT, -5)],
    ],
)
def test_unbalanced_or_empty_postings_are_refused(legs: list[Leg]) -> None:
    with pytest.raises(UnbalancedPostingError):
        check_balanced(legs)


def test_stacked_bars_scale_to_a_nice_ceiling() -> None:
    from settlement.ledger.charts import nice_ceiling, stacked_bars

    assert [nice_ceiling(v) for v in (0, 1, 3, 7, 120, 5_000)] == [1, 1, 5, 10, 200, 5_000]
    chart = stacked_bars(
        [("01.11", {"btc": 300, "kzte": 100}), ("02.11", {"btc": 0, "kzte": 500})],
        ["btc", "kzte"],
        str,
    )
    assert chart.y_ticks[-1].text == "500" and not chart.empty
    first_btc, first_kzte, second_kzte = chart.rects
    assert first_btc.series == "btc" and first_btc.y + first_btc.height == chart.plot_bottom
    assert first_kzte.y + first_kzte.height == first_btc.y  # stacked on top
    assert second_kzte.height == chart.plot_bottom - 8  # the tallest bar fills the plot
    assert stacked_bars([], ["btc"], str).empty
