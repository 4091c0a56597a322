"""The posting rules as plain functions: fee rounding, the split of gross, balanced legs."""

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
    REFUNDS_DUE,
    Leg,
    check_balanced,
    conversion_legs,
    fee_tiyn,
    gross_tiyn,
    payout_legs,
    reversal_legs,
    settlement_amounts,
    settlement_legs,
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


def test_overpayment_goes_to_refunds_due() -> None:
    amounts = settlement_amounts(100_100, 100_223, 150)
    assert (amounts.owed_tiyn, amounts.fee_tiyn, amounts.net_tiyn) == (100_100, 1502, 98_598)
    assert amounts.overpayment_tiyn == 123
    assert settlement_legs(PaymentMethod.KZTE, 7, amounts) == [
        Leg("zone:clearing:kzte", Side.DEBIT, 100_223),
        Leg("merchant:7:payable", Side.CREDIT, 98_598),
        Leg(FEES, Side.CREDIT, 1502),
        Leg(REFUNDS_DUE, Side.CREDIT, 123),
    ]


def test_underpayment_within_tolerance_owes_what_came_in() -> None:
    amounts = settlement_amounts(100_000, 99_500, 100)
    assert amounts.owed_tiyn == 99_500 and amounts.overpayment_tiyn == 0
    assert amounts.fee_tiyn == 1000 and amounts.net_tiyn == 98_500
    legs = settlement_legs(PaymentMethod.BTC, 1, amounts)
    assert [leg.account for leg in legs] == ["zone:clearing:btc", "merchant:1:payable", FEES]


def test_fee_never_exceeds_what_is_owed() -> None:
    amounts = settlement_amounts(10_000, 50, 10_000)
    assert amounts.fee_tiyn == 50 and amounts.net_tiyn == 0
    check_balanced(settlement_legs(PaymentMethod.KZTE, 1, amounts))


@given(
    price=st.integers(1, 10**12),
    gross=st.integers(0, 2 * 10**12),
    fee_bp=st.integers(0, 10_000),
)
def test_gross_is_net_plus_fee_plus_overpayment(price: int, gross: int, fee_bp: int) -> None:
    a = settlement_amounts(price, gross, fee_bp)
    assert a.gross_tiyn == a.net_tiyn + a.fee_tiyn + a.overpayment_tiyn
    assert min(a.net_tiyn, a.fee_tiyn, a.overpayment_tiyn) >= 0
    legs = settlement_legs(PaymentMethod.KZTE, 3, a)
    if gross > 0:
        check_balanced(legs)
        check_balanced(reversal_legs(legs))
    else:
        assert legs == []


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
    legs = conversion_legs(PaymentMethod.BTC, 10_000, received)
    assert legs == [
        Leg(BANK, Side.DEBIT, received),
        Leg("zone:clearing:btc", Side.CREDIT, 10_000),
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
