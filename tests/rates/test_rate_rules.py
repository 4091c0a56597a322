"""The rate rules as properties: median, spread, staleness, depeg and the cross (pure, no I/O)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pos import rate_rules
from pos.errors import KzteDepegError, RateDisagreementError, RateUnavailableError
from pos.rates import BTC_KZT, KZTE_KZT, RateQuote, Reading, assess_btc, assess_kzte

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
MAX_AGE = timedelta(minutes=5)

# BTC/KZT in whole tiyn, from 10 million to 100 million KZT.
rates = st.integers(10_000_000_00, 100_000_000_00).map(lambda tiyn: Decimal(tiyn) / 100)
rate_lists = st.lists(rates, min_size=1, max_size=9)
spreads = st.integers(1, 2_000)


def _reading(i: int, rate: Decimal, problem: str | None = None) -> Reading:
    return Reading(f"s{i}", RateQuote(BTC_KZT, rate, f"s{i}", NOW), problem)


@given(rate_lists, st.randoms())
def test_median_lies_between_the_extremes_in_any_order(values: list[Decimal], rnd: object) -> None:
    middle = rate_rules.median(values)
    assert min(values) <= middle <= max(values)
    shuffled = list(values)
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]
    assert rate_rules.median(shuffled) == middle
    if len(values) % 2:
        assert middle in values


@given(rates, rates)
def test_spread_of_two_is_their_distance_over_their_mean_rounded_up(a: Decimal, b: Decimal) -> None:
    bp = rate_rules.spread_bp([a, b])
    exact = abs(a - b) * 10_000 / ((a + b) / 2)
    assert bp - 1 < exact <= bp
    assert (bp == 0) == (a == b)


@given(rate_lists)
def test_spread_ignores_order_and_never_goes_negative(values: list[Decimal]) -> None:
    bp = rate_rules.spread_bp(values)
    assert bp >= 0 and bp == rate_rules.spread_bp(list(reversed(values)))
    assert rate_rules.spread_bp(values[:1]) == 0


@given(rate_lists, spreads)
def test_btc_is_refused_exactly_when_the_fresh_sources_spread_too_far(
    values: list[Decimal], max_bp: int
) -> None:
    assessment = assess_btc([_reading(i, r) for i, r in enumerate(values)], max_bp)
    if rate_rules.spread_bp(values) > max_bp:
        assert isinstance(assessment.refusal, RateDisagreementError)
        assert assessment.quote is None and "operator is alerted" in str(assessment.refusal)
    else:
        assert assessment.refusal is None and assessment.quote is not None
        assert assessment.quote.rate == rate_rules.median(values)
        assert sorted(leg.rate for leg in assessment.quote.legs) == sorted(values)


@given(rate_lists, st.lists(rates, max_size=5), spreads)
def test_stale_or_failing_sources_never_change_the_verdict(
    fresh: list[Decimal], stale: list[Decimal], max_bp: int
) -> None:
    readings = [_reading(i, r) for i, r in enumerate(fresh)]
    alone = assess_btc(readings, max_bp)
    noisy = readings + [_reading(100 + i, r, "stale") for i, r in enumerate(stale)]
    noisy.append(Reading("down", None, "timeout"))
    with_noise = assess_btc(noisy, max_bp)
    assert type(with_noise.refusal) is type(alone.refusal)
    if alone.quote is not None:
        assert with_noise.quote is not None and with_noise.quote.rate == alone.quote.rate
        assert {s for s, _ in with_noise.quote.ignored} == {r.source for r in noisy[len(fresh) :]}


@given(st.lists(rates, max_size=4))
def test_no_fresh_source_refuses_btc_but_says_kzte_works(stale: list[Decimal]) -> None:
    assessment = assess_btc([_reading(i, r, "stale") for i, r in enumerate(stale)], 200)
    assert type(assessment.refusal) is RateUnavailableError
    assert "KZTE invoices still work" in str(assessment.refusal)


@given(st.integers(-3_600, 3_600 * 4), st.integers(5, 86_400))
def test_a_quote_is_fresh_within_its_age_limit_and_a_minute_of_skew(
    age_seconds: int, max_age_seconds: int
) -> None:
    as_of = NOW - timedelta(seconds=age_seconds)
    why = rate_rules.staleness(as_of, NOW, timedelta(seconds=max_age_seconds))
    fresh = -rate_rules.MAX_CLOCK_SKEW.total_seconds() <= age_seconds <= max_age_seconds
    assert (why is None) == fresh


@given(st.integers(90_00, 110_00).map(lambda c: Decimal(c) / 10_000), st.integers(1, 1_000))
def test_kzte_pauses_exactly_beyond_the_depeg_limit(kzte_kzt: Decimal, max_bp: int) -> None:
    reading = Reading("kzte", RateQuote(KZTE_KZT, kzte_kzt, "kzte", NOW), None)
    assessment = assess_kzte([reading], max_bp, NOW)
    depeg = rate_rules.depeg_bp(kzte_kzt)
    assert depeg == int((abs(kzte_kzt - 1) * 10_000).to_integral_value(rounding="ROUND_CEILING"))
    if depeg > max_bp:
        assert isinstance(assessment.refusal, KzteDepegError)
    else:
        assert assessment.quote is not None and assessment.quote.rate == 1
        assert assessment.quote.depeg_bp == depeg


def test_kzte_keeps_parity_when_its_quote_is_stale_or_missing() -> None:
    stale = Reading("kzte", RateQuote(KZTE_KZT, Decimal("0.5"), "kzte", NOW), "stale")
    for readings in ([], [stale], [Reading("kzte", None, "unreadable")]):
        assessment = assess_kzte(readings, 100, NOW)
        assert assessment.refusal is None and assessment.quote is not None
        assert assessment.quote.rate == 1


@given(
    st.integers(1_000_00, 500_000_00).map(lambda c: Decimal(c) / 100),
    st.integers(100_00, 2_000_00).map(lambda c: Decimal(c) / 100),
)
def test_the_cross_is_the_exact_product_to_the_tiyn(btc_usd: Decimal, usd_kzt: Decimal) -> None:
    crossed = rate_rules.cross_rate(btc_usd, usd_kzt)
    assert crossed == crossed.quantize(Decimal("0.01"))
    assert abs(crossed - btc_usd * usd_kzt) <= Decimal("0.005")


def test_spread_at_the_boundary_counts_against_the_rate() -> None:
    # 45 000 000 and 45 900 000: 900 000 / 45 450 000 = 198.02 bp -> 199 bp, within 200.
    assert rate_rules.spread_bp([Decimal(45_000_000), Decimal(45_900_000)]) == 199
    with pytest.raises(ValueError):
        rate_rules.median([])
