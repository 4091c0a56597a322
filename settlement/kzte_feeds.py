"""What the KZTE watcher reads each pass, and what a read proves (pure; no I/O).

A *feed* is one address whose signatures getSignaturesForAddress lists: a destination token
account (the associated token account of an invoice's recipient wallet for its mint — one for
all the invoices that pay it) or one invoice's reference key. Every valid payment of an
invoice touches both, so a feed read completely, with every new signature decided, proves that
the invoices it covers received nothing else up to that moment (`covered_complete`).

The cursor of a feed (`until`) moves only past signatures that were decided; one undecided
signature holds it, and the ones above it are remembered as decided so they are not read again
(`cursor_target`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from functools import lru_cache

from pos.models import PaymentStatus
from pos.states import InvoiceStatus
from settlement.chains.solana_rpc import SignatureInfo
from settlement.kzte_validation import ExpectedTransfer, associated_token_address

# Block times of a real cluster can lag wall time by minutes; a floor set from our clock must
# leave room for that, or a payment stamped "before" its invoice would be cut off.
FLOOR_SLACK = timedelta(hours=1)
# A destination re-read after a Redis flush lists the whole late window: up to a million
# signatures before the answer counts as incomplete (unknown).
DESTINATION_MAX_PAGES = 1000


class Strategy(StrEnum):
    """How the watcher finds payments."""

    DESTINATION = "destination"  # one feed per destination token account + a slow sweep
    REFERENCE = "reference"  # one feed per reference key (the former strategy, for comparison)


class FeedKind(StrEnum):
    DESTINATION = "destination"
    REFERENCE = "reference"


@dataclass
class Watched:
    """A watched invoice as the watcher needs it (no ORM object kept across passes)."""

    id: str
    reference: str
    recipient: str
    mint: str
    status: InvoiceStatus
    created_at: datetime
    expires_at: datetime
    payments: dict[str, tuple[PaymentStatus, int]] = field(default_factory=dict)

    @property
    def expected(self) -> ExpectedTransfer:
        return ExpectedTransfer(self.recipient, self.mint, self.reference, self.id)


@dataclass(frozen=True)
class Feed:
    """One address to list signatures of, and the invoices a complete read vouches for."""

    kind: FeedKind
    address: str
    covers: tuple[str, ...]  # invoice ids
    not_before: datetime | None = None  # older signatures cannot pay any covered invoice
    max_pages: int = 5


@lru_cache(maxsize=65_536)
def destination(recipient: str, mint: str, token_program: str) -> str:
    """The token account every valid payment of an invoice credits (cached: it is a hash search)."""
    return associated_token_address(recipient, mint, token_program)


def group_by_destination(
    watched: Iterable[Watched], programs: Mapping[str, str]
) -> dict[str, list[Watched]]:
    """Invoices by destination token account; mints whose token program is unknown are left out."""
    groups: dict[str, list[Watched]] = {}
    for w in watched:
        program = programs.get(w.mint)
        if program is not None:
            groups.setdefault(destination(w.recipient, w.mint, program), []).append(w)
    return groups


def destination_feed(address: str, invoices: Sequence[Watched]) -> Feed:
    floor = min(w.created_at for w in invoices) - FLOOR_SLACK
    return Feed(
        FeedKind.DESTINATION,
        address,
        tuple(w.id for w in invoices),
        not_before=floor,
        max_pages=DESTINATION_MAX_PAGES,
    )


def reference_feed(w: Watched) -> Feed:
    return Feed(FeedKind.REFERENCE, w.reference, (w.id,))


def cursor_target(listing: Sequence[SignatureInfo], undecided: set[str]) -> str | None:
    """Where the feed's `until` cursor may move after this read (None: stay where it is).

    `listing` is newest first. The cursor may pass every signature below the oldest undecided
    one, never that one: the next read lists it (and the decided ones above it) again.
    """
    oldest_undecided = max(
        (i for i, s in enumerate(listing) if s.signature in undecided), default=None
    )
    if oldest_undecided is None:
        return listing[0].signature if listing else None
    if oldest_undecided + 1 < len(listing):
        return listing[oldest_undecided + 1].signature
    return None


def covered_complete(
    feed: Feed, listing: Sequence[SignatureInfo], unreadable: set[str], held: set[str]
) -> list[str]:
    """The invoices this complete read proves fully seen.

    `unreadable`: signatures whose transaction could not be read — they could pay any covered
    invoice, so none of them is proven. `held`: invoices with a payment still undecided
    (status not known yet, or its write must be retried) — only they wait.
    """
    if any(s.signature in unreadable for s in listing):
        return []
    return [invoice_id for invoice_id in feed.covers if invoice_id not in held]


def expiry_marks(
    watched: Iterable[Watched], complete_at: Mapping[str, datetime], now: datetime
) -> tuple[datetime, dict[str, datetime]]:
    """The KZTE watermark for the expiry sweeper, and the invoices the watcher expires itself.

    Each unpaid invoice past its window is proven unpaid once it was seen completely after its
    expiry (an invoice never read counts from its creation: nothing paid it before it existed).
    The sweeper reads one watermark per method, so it must stay below every invoice not yet
    proven; the proven invoices that this holds back (they expire later than an unproven one)
    are returned with their marks, for the watcher to expire itself — one undecided invoice
    never holds back the expiry of the others.
    """
    due = [w for w in watched if w.status is InvoiceStatus.NEW and w.expires_at <= now]
    marks = {w.id: complete_at.get(w.id, w.created_at) for w in due}
    waiting = [marks[w.id] for w in due if marks[w.id] < w.expires_at]
    watermark = min([now, *waiting])
    held_back = {
        w.id: marks[w.id] for w in due if marks[w.id] >= w.expires_at and w.expires_at > watermark
    }
    return watermark, held_back
