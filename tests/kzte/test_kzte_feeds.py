"""The pure rules of the KZTE watcher's feeds: grouping by destination, how far a cursor may
move, what a read proves, and the per-invoice expiry marks. No node, no database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from solders.keypair import Keypair

from pos.states import InvoiceStatus
from settlement.chains.solana_rpc import SignatureInfo
from settlement.kzte_feeds import (
    FLOOR_SLACK,
    FeedKind,
    Watched,
    covered_complete,
    cursor_target,
    destination_feed,
    expiry_marks,
    group_by_destination,
    reference_feed,
)
from settlement.kzte_validation import (
    TOKEN_2022_PROGRAM,
    TOKEN_PROGRAM,
    associated_token_address,
)

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
MINT, OTHER_MINT = str(Keypair().pubkey()), str(Keypair().pubkey())


def _key() -> str:
    return str(Keypair().pubkey())


def _watched(
    recipient: str,
    mint: str = MINT,
    status: InvoiceStatus = InvoiceStatus.NEW,
    created_minutes_ago: int = 5,
    expires_in_minutes: int = 10,
) -> Watched:
    return Watched(
        id=f"inv-{_key()[:8]}",
        reference=_key(),
        recipient=recipient,
        mint=mint,
        status=status,
        created_at=NOW - timedelta(minutes=created_minutes_ago),
        expires_at=NOW + timedelta(minutes=expires_in_minutes),
    )


def _sigs(n: int) -> list[SignatureInfo]:
    return [SignatureInfo(f"sig{i}", 100 - i, False, None) for i in range(n)]  # newest first


def test_invoices_are_grouped_by_the_token_account_they_pay() -> None:
    shop, zone = _key(), _key()
    a, b, c = _watched(shop), _watched(shop), _watched(zone)
    d = _watched(shop, mint=OTHER_MINT)  # another mint: another token account
    e = _watched(shop, mint=str(Keypair().pubkey()))  # token program not known yet: left out
    groups = group_by_destination(
        [a, b, c, d, e], {MINT: TOKEN_PROGRAM, OTHER_MINT: TOKEN_2022_PROGRAM}
    )
    assert groups == {
        associated_token_address(shop, MINT): [a, b],
        associated_token_address(zone, MINT): [c],
        associated_token_address(shop, OTHER_MINT, TOKEN_2022_PROGRAM): [d],
    }


def test_a_destination_feed_reads_back_to_its_oldest_invoice() -> None:
    shop = _key()
    young, old = _watched(shop, created_minutes_ago=1), _watched(shop, created_minutes_ago=30)
    feed = destination_feed("ata", [young, old])
    assert feed.kind is FeedKind.DESTINATION and feed.covers == (young.id, old.id)
    assert feed.not_before == old.created_at - FLOOR_SLACK
    assert feed.max_pages > 5  # a busy destination has long histories
    ref = reference_feed(young)
    assert (ref.kind, ref.address, ref.covers, ref.not_before) == (
        FeedKind.REFERENCE,
        young.reference,
        (young.id,),
        None,
    )


def test_cursor_moves_to_the_newest_when_everything_is_decided() -> None:
    assert cursor_target(_sigs(3), set()) == "sig0"
    assert cursor_target([], set()) is None  # nothing new: it stays


def test_cursor_stops_below_the_oldest_undecided_signature() -> None:
    listing = _sigs(5)
    assert cursor_target(listing, {"sig1"}) == "sig2"
    assert cursor_target(listing, {"sig0", "sig3"}) == "sig4"
    assert cursor_target(listing, {"sig4"}) is None  # the oldest new one: nothing may pass


def test_an_unreadable_transaction_proves_nothing_for_its_feed() -> None:
    feed = destination_feed("ata", [_watched("w"), _watched("w")])
    listing = _sigs(3)
    assert covered_complete(feed, listing, unreadable={"sig2"}, held=set()) == []
    # one undecided payment holds only the invoice it pays
    first, second = feed.covers
    assert covered_complete(feed, listing, unreadable=set(), held={first}) == [second]
    # an unreadable transaction of another feed is no concern of this one
    assert covered_complete(feed, listing, unreadable={"elsewhere"}, held=set()) == [first, second]


def test_expiry_marks_are_per_invoice() -> None:
    older_stuck = _watched("w", created_minutes_ago=30, expires_in_minutes=-3)
    proven = _watched("w", created_minutes_ago=20, expires_in_minutes=-1)
    proven_early = _watched("w", created_minutes_ago=40, expires_in_minutes=-10)
    open_one = _watched("w")
    paid = _watched("w", status=InvoiceStatus.PROCESSING, expires_in_minutes=-5)
    seen = {proven.id: NOW, proven_early.id: NOW, older_stuck.id: NOW - timedelta(minutes=4)}
    watermark, held_back = expiry_marks(
        [older_stuck, proven, proven_early, open_one, paid], seen, NOW
    )
    # The sweeper's one watermark stays below the invoice not seen past its expiry ...
    assert watermark == NOW - timedelta(minutes=4) < older_stuck.expires_at
    # ... which reaches `proven_early` (the sweeper expires it); `proven` expires later than
    # the stuck one, so the watcher expires it itself.
    assert held_back == {proven.id: NOW}


def test_expiry_marks_without_a_stuck_invoice_leave_everything_to_the_sweeper() -> None:
    done = _watched("w", created_minutes_ago=20, expires_in_minutes=-1)
    never_read = _watched("w", created_minutes_ago=20, expires_in_minutes=5)  # not due yet
    watermark, held_back = expiry_marks([done, never_read], {done.id: NOW}, NOW)
    assert watermark == NOW and held_back == {}
    # not read since it expired: its creation is all we know
    watermark, held_back = expiry_marks([done], {}, NOW)
    assert watermark == done.created_at and held_back == {}
