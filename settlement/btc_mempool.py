"""The node's mempool as a set of txids, kept current at a cost of O(changes) per sync.

Today's poll reads the verbose mempool (~500 bytes a transaction, ~74 MB at 150,000) every
second. `MempoolView` reads a full listing only when it must, and otherwise applies the node's
change notifications:

- Primary: the ZMQ `sequence` stream (a `MempoolFeed`). The node numbers every mempool change;
  events are applied on top of the last listing while the numbers run without a gap from that
  listing's `sequence` on.
- Floor: `getrawmempool false true` (a `MempoolSource`), ~70 bytes a transaction, diffed against
  the view. Read at the start, on a gap or a reconnect, while the feed is absent, down or has
  not yet proved it delivers, and every `resync_seconds` as a safety net (then also compared
  with the event-built view, to catch what the numbers cannot: a loss at the very end).

Blocks need one read each: Core uses up a number for every transaction a block takes out of the
mempool without announcing it (the block's own message stands for them). To tell those silent
numbers from lost messages, the view reads the block's txids (getblock verbosity 1) and counts
how many were in the view. The block's message may arrive after the removals it explains (a
conflict's R comes first), so a gap waits up to `settle_seconds` for it before a listing.

Just after a listing, a block message cannot be placed before or after it (it carries no number)
until the next transaction event does. A block that would remove something is held that long
too, then costs a listing rather than a guess: removing a transaction that is still in the
mempool would tell the watcher it was replaced.

One consumer calls `sync()`; the feed's thread only appends events.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from settlement.chains.bitcoin_core import MempoolSnapshot
from settlement.chains.bitcoin_zmq import FeedBatch, MempoolEvent, MempoolEventKind
from settlement.errors import NodeRpcError, NodeUnavailableError

log = logging.getLogger(__name__)

RESYNC_SECONDS = 60.0
# A block's own message may trail the removals it explains (Core sends them asynchronously):
# this long it may, then the view lists instead.
SETTLE_SECONDS = 1.0
MAX_BLOCK_READS = 16  # more connected blocks than this in one sync: one listing is cheaper


class MempoolSource(Protocol):
    """The node's answers the view needs (BitcoinCoreClient has them)."""

    def mempool_snapshot(self) -> MempoolSnapshot: ...

    def mempool_entry_times(self, txids: Sequence[str]) -> dict[str, datetime | None]: ...

    def block_txids(self, block_hash: str) -> list[str] | None: ...


class MempoolFeed(Protocol):
    """The node's change notifications (ZmqSequenceFeed)."""

    def drain(self) -> FeedBatch: ...


@dataclass(frozen=True)
class MempoolDelta:
    """What changed in the mempool since the previous complete sync.

    Net of each other: a transaction that came and went between two syncs is in neither list
    (a block scan sees it if it was mined), one that left and came back likewise.
    """

    added: list[str]  # in arrival order from events; in the node's listing order after a listing
    removed: set[str]  # mined, replaced, evicted or expired
    complete: bool  # False: the node did not answer; unknown, change nothing
    resynced: bool = False  # a full listing was read


@dataclass
class MempoolStats:
    """Counters for logs and benchmarks."""

    syncs: int = 0
    listings: int = 0  # full txid listings read
    events: int = 0  # transaction events applied
    blocks: int = 0  # connected blocks read for their txids
    gaps: int = 0  # listings forced by lost, unexplained or contradictory events
    mismatches: int = 0  # safety-net listings that found the event-built view wrong


class MempoolView:
    """The txids in the node's mempool, brought up to date by `sync()`.

    `feed=None` (no ZMQ): every sync is a listing diffed against the view.
    """

    def __init__(
        self,
        source: MempoolSource,
        feed: MempoolFeed | None = None,
        *,
        resync_seconds: float = RESYNC_SECONDS,
        settle_seconds: float = SETTLE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.source = source
        self.feed = feed
        self.resync_seconds = resync_seconds
        self.settle_seconds = settle_seconds
        self.clock = clock
        self.stats = MempoolStats()
        self._txids: set[str] = set()
        self._times: dict[str, datetime] = {}
        # Changes since the last complete sync (the next delta), kept net of each other.
        self._added: dict[str, None] = {}
        self._removed: set[str] = set()
        # Where the event stream stands against the last listing.
        self._expected: int | None = None  # number of the next change; None: no listing yet
        self._unexplained = 0  # numbers skipped that no block has accounted for yet
        self._credit = 0  # numbers blocks used up that no event has skipped over yet
        self._window = False  # after a listing, until a transaction event places us after it
        self._held: list[MempoolEvent] = []  # block events seen in that window
        self._unsettled_at: float | None = None  # since when a gap or a held block waits
        self._pending: list[MempoolEvent] = []
        self._blocks: dict[str, list[str] | None] = {}
        self._connections = -1
        self._live = False  # the feed has delivered a transaction event since it (re)connected
        self._feed_up = False
        self._needs_listing = True
        self._listed_at = 0.0

    # --- what the watcher reads -----------------------------------------------------------
    def __contains__(self, txid: object) -> bool:
        return txid in self._txids

    def __len__(self) -> int:
        return len(self._txids)

    @property
    def txids(self) -> AbstractSet[str]:
        """The current txids: a live read-only view, valid until the next `sync()`."""
        return self._txids

    @property
    def live(self) -> bool:
        """True while ZMQ events, not listings, keep the view current."""
        return self._feed_up and self._live and not self._needs_listing

    def present(self, txids: Iterable[str]) -> set[str]:
        """Which of `txids` are in the mempool (as of the last sync), without asking the node."""
        return {txid for txid in txids if txid in self._txids}

    def entry_time(self, txid: str) -> datetime | None:
        """When the node accepted `txid` (UTC); None if it is not in the mempool."""
        return self.entry_times([txid])[txid]

    def entry_times(self, txids: Iterable[str]) -> dict[str, datetime | None]:
        """`entry_time` for several txids in one request; NodeUnavailableError propagates."""
        wanted = list(dict.fromkeys(txids))
        unknown = [txid for txid in wanted if txid not in self._times]
        fetched = self.source.mempool_entry_times(unknown) if unknown else {}
        for txid, when in fetched.items():
            if when is not None and txid in self._txids:
                self._times[txid] = when  # forgotten when it leaves the view
        return {txid: self._times.get(txid, fetched.get(txid)) for txid in wanted}

    def reset(self) -> None:
        """Forget everything: the next sync lists and reports the whole mempool as added."""
        self._roll_back()
        self._txids.clear()
        self._times.clear()
        self._expected = None

    # --- sync -----------------------------------------------------------------------------
    def sync(self) -> MempoolDelta:
        """Bring the view up to date; the delta since the previous complete sync."""
        self.stats.syncs += 1
        batch = self.feed.drain() if self.feed is not None else None
        if batch is not None:
            self._pending += batch.events
        self._feed_up = batch is not None and batch.connected
        listed = False
        try:
            reason = self._listing_reason(batch)
            if reason is None:
                if not self._apply_pending():
                    self.stats.gaps += 1
                    reason = "gap"
                elif not self._feed_up:
                    reason = "feed down"
                elif not self._live:
                    reason = "feed unproven"
                elif self.clock() - self._listed_at >= self.resync_seconds:
                    reason = "safety net"
            if reason is not None:
                log.debug("mempool listing: %s", reason)
                self._list(verify=reason == "safety net")
                listed = True
        except NodeUnavailableError:
            self._roll_back()
            return MempoolDelta([], set(), complete=False)
        delta = MempoolDelta(list(self._added), set(self._removed), True, listed)
        self._added, self._removed = {}, set()
        return delta

    def _listing_reason(self, batch: FeedBatch | None) -> str | None:
        """Why events cannot be applied on their own this time; None if they can."""
        if batch is None:
            return "no feed"
        if self._expected is None or self._needs_listing:
            return "start" if self._expected is None else "resync"
        if batch.connections != self._connections:
            self._live = False  # a new connection must prove itself again
            return "reconnect"
        if batch.lost:
            self.stats.gaps += 1
            return "feed lost messages"
        return None

    def _roll_back(self) -> None:
        """Undo the changes not yet reported: the view stays as the last complete sync left it."""
        for txid in self._added:
            self._txids.discard(txid)
        self._txids |= self._removed
        self._added, self._removed = {}, set()
        self._pending = []
        self._needs_listing = True  # events were consumed: only a listing is sound now

    # --- full listing ---------------------------------------------------------------------
    def _list(self, verify: bool) -> None:
        before = self.feed.drain() if self.feed is not None else None
        if before is not None:
            self._connections = before.connections
            self._pending += before.events
            if any(event.is_tx for event in self._pending):
                self._live = True  # in the listing already, but the feed delivers
            if verify:  # bring the events up to the listing, to compare like with like
                applied = not before.lost and self._apply_pending()
                verify = applied and self._unsettled_at is None
        self._pending = []  # anything received so far is in the listing
        expected = None if self._expected is None else self._expected + self._credit
        snapshot = self.source.mempool_snapshot()
        self.stats.listings += 1
        listed = set(snapshot.txids)
        gone = self._txids - listed
        for txid in gone:
            self._remove(txid)
        new = [txid for txid in snapshot.txids if txid not in self._txids]
        for txid in new:
            self._add(txid)
        if verify and (gone or new or snapshot.sequence != expected):
            self.stats.mismatches += 1
            self._live = False  # the feed missed something: poll until it proves itself again
            log.warning(
                "mempool events had drifted from the node (%d missing, %d stale, sequence %s "
                "against %s); listing until the feed catches up",
                len(new),
                len(gone),
                snapshot.sequence,
                expected,
            )
        self._expected = snapshot.sequence
        self._unexplained = self._credit = 0
        self._window, self._held, self._unsettled_at = True, [], None
        self._needs_listing = False
        self._listed_at = self.clock()
        after = self.feed.drain() if self.feed is not None else None
        if after is not None:
            self._pending = after.events  # placed against the listing by their numbers
            if after.lost or after.connections != self._connections:
                self._needs_listing = True

    # --- events ---------------------------------------------------------------------------
    def _apply_pending(self) -> bool:
        """Apply the pending events; False if they do not fit the numbering (list instead)."""
        unread = [
            event.hash
            for event in self._pending
            if event.kind is MempoolEventKind.BLOCK_CONNECTED and event.hash not in self._blocks
        ]
        if len(unread) > MAX_BLOCK_READS:  # a catch-up: one listing costs less
            self._pending = []
            return False
        for block_hash in unread:  # read first: a node that does not answer changes nothing
            try:
                self._blocks[block_hash] = self.source.block_txids(block_hash)
            except NodeRpcError as exc:  # e.g. pruned: count it a gap, list instead
                log.info("cannot read connected block %s: %s", block_hash, exc)
                self._blocks[block_hash] = None
        events, self._pending = self._pending, []
        applied = all(self._apply(event) for event in events)
        while len(self._blocks) > MAX_BLOCK_READS:  # kept for a sync retried after an outage
            del self._blocks[next(iter(self._blocks))]
        if not applied:
            return False
        # Unplaced blocks that would remove nothing are harmless either way.
        self._held = [block for block in self._held if self._in_block(block)]
        if not (self._unexplained or self._held):
            self._unsettled_at = None
            return True
        # Lost messages, or a block whose message is still on its way (a gap), or a block that
        # may precede the listing (held): what was applied stands; wait a little, then list.
        if self._unsettled_at is None:
            self._unsettled_at = self.clock()
        return self.clock() - self._unsettled_at < self.settle_seconds

    def _apply(self, event: MempoolEvent) -> bool:
        if event.kind is MempoolEventKind.BLOCK_DISCONNECTED:
            return True  # its transactions come back as their own "added" events
        if event.kind is MempoolEventKind.BLOCK_CONNECTED:
            if self._window:
                self._held.append(event)
                return True
            return self._connect(event)
        assert self._expected is not None and event.mempool_sequence is not None
        number = event.mempool_sequence
        self._live = True  # the feed delivers (whether this event fits is checked below)
        if self._window:
            if number < self._expected:
                self._held = []  # this and every block before it happened before the listing
                return True
            self._window = False
            held, self._held = self._held, []
            if not all(self._connect(block) for block in held):
                return False
        skipped = number - self._expected
        if skipped < 0 or skipped < self._credit:
            return False  # numbers went back (a restart?) or blocks claimed too much
        self._unexplained += skipped - self._credit
        self._credit = 0
        self._expected = number + 1
        if event.kind is MempoolEventKind.TX_ADDED:
            if event.hash in self._txids:
                return False
            self._add(event.hash)
        else:
            if event.hash not in self._txids:
                return False
            self._remove(event.hash)
        self.stats.events += 1
        return True

    def _in_block(self, block: MempoolEvent) -> list[str]:
        txids = self._blocks.get(block.hash) or []
        return [txid for txid in txids if txid in self._txids]

    def _connect(self, block: MempoolEvent) -> bool:
        """A block took its transactions out of the mempool, each using up a number."""
        if self._blocks.get(block.hash) is None:
            return False
        mined = self._in_block(block)
        paid = min(len(mined), self._unexplained)
        self._unexplained -= paid
        self._credit += len(mined) - paid
        for txid in mined:
            self._remove(txid)
        self.stats.blocks += 1
        return True

    # --- the journal ----------------------------------------------------------------------
    def _add(self, txid: str) -> None:
        self._txids.add(txid)
        if txid in self._removed:
            self._removed.discard(txid)  # left and came back since the last sync: no change
        else:
            self._added[txid] = None

    def _remove(self, txid: str) -> None:
        self._txids.discard(txid)
        self._times.pop(txid, None)
        if txid in self._added:
            del self._added[txid]  # came and went since the last sync: no change
        else:
            self._removed.add(txid)
