"""When the KZTE watcher reads which feed (pure; the only state is when each feed was last read).

Destinations are read at the pace of their most urgent invoice (`Schedule.interval`): a fresh
unpaid invoice makes its destination hot, about one read a second, however many invoices pay
that destination. The reference sweep of unpaid invoices (the only way to see a transfer in
the wrong mint or to the wrong wallet, which never touches the destination) runs beside it at
`sweep_seconds` per reference and at most `sweep_per_pass` references a pass, so its cost is
capped when the number of invoices grows (each reference is then swept less often).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from pos.states import InvoiceStatus
from settlement.kzte_feeds import (
    Feed,
    Strategy,
    Watched,
    destination_feed,
    group_by_destination,
    reference_feed,
)

# The worker runs the duty every ~1 s; a feed due at 1 s must not slip to 2 s by a few ms.
JITTER_SECONDS = 0.2


@dataclass(frozen=True)
class Schedule:
    """Seconds between reads of a feed, by the state of the invoices it covers."""

    hot_seconds: float = 1.0  # a NEW invoice younger than `hot_age`: someone is paying now
    hot_age: timedelta = timedelta(minutes=10)
    open_seconds: float = 5.0  # older NEW invoices, and PROCESSING ones (a top-up may follow)
    late_seconds: float = 30.0  # EXPIRED / SETTLED within the late window (late or extra pay)
    # The reference sweep of unpaid invoices (wrong mint / wrong recipient; a second look).
    sweep_seconds: float = 30.0

    def interval(self, status: InvoiceStatus, created_at: datetime, now: datetime) -> float:
        if status is InvoiceStatus.NEW:
            return self.hot_seconds if now - created_at < self.hot_age else self.open_seconds
        if status is InvoiceStatus.PROCESSING:
            return self.open_seconds
        return self.late_seconds


@dataclass
class Plan:
    feeds: list[Feed]
    destinations: int
    references: int


class FeedPlanner:
    """Chooses the feeds of one pass; remembers when each was last read (monotonic clock)."""

    def __init__(
        self,
        schedule: Schedule,
        strategy: Strategy,
        max_feeds_per_pass: int,
        sweep_per_pass: int,
    ) -> None:
        self.schedule = schedule
        self.strategy = strategy
        self.max_feeds_per_pass = max_feeds_per_pass
        self.sweep_per_pass = sweep_per_pass
        self.polled_at: dict[str, float] = {}  # feed address -> last read
        self.swept_at: dict[str, datetime] = {}  # reference -> last sweep

    def plan(
        self,
        watched: list[Watched],
        programs: Mapping[str, str],
        clock: float,
        now: datetime,
    ) -> Plan:
        self._forget(watched, programs)
        if self.strategy is Strategy.REFERENCE:
            due = self._due({w.reference: [w] for w in watched}, clock, now)
            return Plan([reference_feed(group[0]) for group in due.values()], 0, len(due))
        groups = group_by_destination(watched, programs)
        feeds = [destination_feed(a, g) for a, g in self._due(groups, clock, now).items()]
        sweep = [reference_feed(w) for w in self._sweep(watched, now)]
        return Plan(feeds + sweep, len(feeds), len(sweep))

    def _due(
        self, groups: Mapping[str, list[Watched]], clock: float, now: datetime
    ) -> dict[str, list[Watched]]:
        """Feeds whose most urgent invoice wants a read now, most overdue first, capped."""
        overdue: list[tuple[float, str]] = []
        for address, group in groups.items():
            interval = min(self.schedule.interval(w.status, w.created_at, now) for w in group)
            last = self.polled_at.get(address)
            lateness = float("inf") if last is None else clock - last - interval
            if lateness >= -JITTER_SECONDS:
                overdue.append((lateness, address))
        overdue.sort(reverse=True)
        chosen = {address: groups[address] for _, address in overdue[: self.max_feeds_per_pass]}
        for address in chosen:
            self.polled_at[address] = clock
        return chosen

    def _sweep(self, watched: list[Watched], now: datetime) -> list[Watched]:
        """Unpaid invoices whose reference is due a sweep, at most `sweep_per_pass`.

        Unpaid: new (nothing or too little paid), or expired with nothing paid, within the
        late window. Due: `sweep_seconds` since the last sweep, or since creation (a fresh
        invoice has nothing to find yet). New ones first, then expired ones; the longest
        unswept first within each, so a saturated sweep goes round robin.
        """
        if self.sweep_per_pass <= 0:
            return []
        wait = timedelta(seconds=max(0.0, self.schedule.sweep_seconds - JITTER_SECONDS))
        due = [
            (w.status is not InvoiceStatus.NEW, self.swept_at.get(w.reference, w.created_at), w)
            for w in watched
            if w.status is InvoiceStatus.NEW  # unpaid, or paid short
            or (w.status is InvoiceStatus.EXPIRED and not w.payments)
        ]
        ready = sorted(
            ((late, covered, w) for late, covered, w in due if now - covered >= wait),
            key=lambda item: (item[0], item[1]),
        )
        chosen = [w for _, _, w in ready[: self.sweep_per_pass]]
        for w in chosen:
            self.swept_at[w.reference] = now
        return chosen

    def _forget(self, watched: list[Watched], programs: Mapping[str, str]) -> None:
        """Drop the times of feeds no longer watched."""
        references = {w.reference for w in watched}
        for reference in [r for r in self.swept_at if r not in references]:
            del self.swept_at[reference]
        live = (
            references
            if self.strategy is Strategy.REFERENCE
            else set(group_by_destination(watched, programs))
        )
        for address in [a for a in self.polled_at if a not in live]:
            del self.polled_at[address]
