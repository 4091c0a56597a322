"""Which feeds a pass reads (settlement.kzte_schedule): pure, with a hand-driven clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from solders.keypair import Keypair

from pos.models import PaymentStatus
from pos.states import InvoiceStatus
from settlement.kzte_feeds import FeedKind, Strategy, Watched
from settlement.kzte_schedule import FeedPlanner, Schedule
from settlement.kzte_validation import TOKEN_PROGRAM, associated_token_address

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
MINT = str(Keypair().pubkey())
PROGRAMS = {MINT: TOKEN_PROGRAM}


def _watched(
    wallet: str, status: InvoiceStatus = InvoiceStatus.NEW, age: timedelta = timedelta(0)
) -> Watched:
    key = str(Keypair().pubkey())
    return Watched(
        f"inv-{key[:6]}", key, wallet, MINT, status, NOW - age, NOW - age + timedelta(minutes=15)
    )


def _addresses(
    planner: FeedPlanner, watched: list[Watched], clock: float, now: datetime
) -> set[str]:
    return {f.address for f in planner.plan(watched, PROGRAMS, clock, now).feeds}


def test_a_destination_is_read_at_the_pace_of_its_most_urgent_invoice() -> None:
    busy, quiet = str(Keypair().pubkey()), str(Keypair().pubkey())
    hot = _watched(busy)
    late = _watched(busy, InvoiceStatus.SETTLED, timedelta(hours=2))
    settled = _watched(quiet, InvoiceStatus.SETTLED, timedelta(hours=2))
    planner = FeedPlanner(Schedule(), Strategy.DESTINATION, 400, sweep_per_pass=0)
    busy_ata, quiet_ata = (associated_token_address(w, MINT) for w in (busy, quiet))
    watched = [hot, late, settled]
    assert _addresses(planner, watched, 0.0, NOW) == {busy_ata, quiet_ata}
    assert _addresses(planner, watched, 0.9, NOW) == {busy_ata}  # hot: ~1 s (jitter allowed)
    assert _addresses(planner, watched, 1.5, NOW) == set()
    assert _addresses(planner, watched, 30.0, NOW) == {busy_ata, quiet_ata}  # late: 30 s


def test_one_feed_per_destination_whatever_the_number_of_invoices() -> None:
    wallet = str(Keypair().pubkey())
    planner = FeedPlanner(Schedule(), Strategy.DESTINATION, 400, sweep_per_pass=0)
    plan = planner.plan([_watched(wallet) for _ in range(500)], PROGRAMS, 0.0, NOW)
    (feed,) = plan.feeds
    assert feed.kind is FeedKind.DESTINATION and len(feed.covers) == 500
    assert (plan.destinations, plan.references) == (1, 0)


def test_the_reference_strategy_reads_every_reference_capped() -> None:
    wallet = str(Keypair().pubkey())
    planner = FeedPlanner(Schedule(), Strategy.REFERENCE, 400, sweep_per_pass=0)
    plan = planner.plan([_watched(wallet) for _ in range(500)], PROGRAMS, 0.0, NOW)
    assert plan.references == len(plan.feeds) == 400
    assert {f.kind for f in plan.feeds} == {FeedKind.REFERENCE}


def test_the_sweep_skips_fresh_and_paid_invoices_and_prefers_open_ones() -> None:
    wallet = str(Keypair().pubkey())
    fresh = _watched(wallet, age=timedelta(seconds=10))
    waiting = _watched(wallet, age=timedelta(minutes=2))
    expired = _watched(wallet, InvoiceStatus.EXPIRED, timedelta(minutes=40))
    paid = _watched(wallet, InvoiceStatus.PROCESSING, timedelta(minutes=3))
    paid.payments["sig"] = (PaymentStatus.SEEN, 1)
    expired_short = _watched(wallet, InvoiceStatus.EXPIRED, timedelta(minutes=50))
    expired_short.payments["sig2"] = (PaymentStatus.FINAL, 1)
    settled = _watched(wallet, InvoiceStatus.SETTLED, timedelta(minutes=5))
    planner = FeedPlanner(Schedule(), Strategy.DESTINATION, 400, sweep_per_pass=1)
    watched = [fresh, waiting, expired, paid, expired_short, settled]

    def swept(now: datetime) -> list[str]:
        feeds = planner.plan(watched, PROGRAMS, 0.0, now).feeds
        return [f.address for f in feeds if f.kind is FeedKind.REFERENCE]

    assert swept(NOW) == [waiting.reference]  # open before expired; budget of one
    assert swept(NOW) == [expired.reference]
    assert swept(NOW) == []  # the fresh one has nothing to find yet; paid ones need none
    # 30 s on: the longest unswept open invoice first (the fresh one, never swept, 40 s old)
    assert swept(NOW + timedelta(seconds=30)) == [fresh.reference]
    assert swept(NOW + timedelta(seconds=30)) == [waiting.reference]
