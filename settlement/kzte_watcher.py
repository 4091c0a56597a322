"""The KZTE watcher: finds Solana Pay payments and tracks them to finality.

Where it looks (`Strategy.DESTINATION`, the default). Every valid payment of an invoice credits
one token account: the associated token account (ATA) of the invoice's recipient wallet for
its mint — the merchant's in `direct` mode, the zone's one account in `tenge` mode. Open
invoices are grouped by that destination, and each destination's signatures are listed once
per poll, whatever the number of invoices paying it; the references in the fetched
transactions' account keys say which invoice a transfer is for. A slow, budgeted sweep also
lists the references of unpaid invoices, because a transfer in the wrong mint or to the wrong
wallet never touches the destination (those are logged and noted in the invoice's timeline as
"payment not accepted", never counted). `Strategy.REFERENCE`
is the former way (one feed per reference at the schedule's rate), kept for the benchmark.

One pass (`KzteWatcher.poll`), run by the leader worker about every second:
  1. read the watched KZTE invoices from the database (open ones, and expired / settled ones
     within the late window) and their recorded Solana payments;
  2. list the signatures of the feeds that are due — destinations by the schedule of their
     most urgent invoice, plus the sweep — since each feed's `until` cursor, paged, complete
     or unknown (settlement.kzte_schedule, settlement.kzte_feeds);
  3. read each signature not decided yet with getTransaction (once, whichever feeds list it),
     match its account keys against the references, validate (settlement.kzte_validation);
  4. read the commitment of new payments and of every not-yet-final one with
     getSignatureStatuses: `confirmed` -> PaymentStatus.SEEN (processing), `finalized` ->
     FINAL (settled); one still not finalized `FINALITY_TIMEOUT` after it was confirmed ->
     MISSING, with an ERROR log and an audit row (kzte_store explains the rest);
  5. record, commit, publish; move each feed's cursor past what was decided; note which
     invoices were seen completely, then the expiry watermark (per invoice, see
     `kzte_feeds.expiry_marks`).

Unknown is not "not paid": a timeout, an RPC error or a partial list leaves a feed's cursor
where it was and proves nothing, so the same signatures are looked at again next pass. A
signature the node does not have (yet — or any more, after a local validator restart) is
unknown too. A recorded payment is never taken back on a missing status before the finality
timeout: Solana has no reorg of `confirmed` in practice, and a local validator that lost its
history must not unpay an invoice at once; past the timeout it is unknown like a Bitcoin
payment that left the mempool (it counts for a grace window, then no more). WebSocket
subscriptions are not used yet: polling is the floor the design asks for, and the hot tier
keeps detection around one second.

A Payment row's output_index is 0: only a transaction's last instruction can pay an invoice.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from pos.db import utcnow
from pos.errors import CoordinationUnavailableError
from pos.models import PaymentStatus
from pos.runtime import Runtime
from settlement import kzte_store as store
from settlement.chains.solana_rpc import (
    Answer,
    CallStats,
    ChainTransaction,
    SignatureInfo,
    SigStatus,
    SolanaRpc,
    SolanaRpcError,
)
from settlement.kzte_feeds import (
    Feed,
    Strategy,
    Watched,
    covered_complete,
    cursor_target,
    expiry_marks,
)
from settlement.kzte_schedule import FeedPlanner, Schedule
from settlement.kzte_store import (
    FINALITY_TIMEOUT,
    Unfinal,
    missing_observation,
    observation,
    payment_status,
)
from settlement.kzte_validation import Verdict, validate_transfer
from settlement.payments import Observation
from settlement.worker import Duty

log = logging.getLogger(__name__)

CHAIN = store.CHAIN
METHOD = store.METHOD
CURSOR_PREFIX = store.CURSOR_PREFIX
DESTINATION_CURSOR_PREFIX = store.DESTINATION_CURSOR_PREFIX
DECIDED_MEMORY = 100_000  # signatures remembered as decided (not read again) per process

__all__ = [
    "CHAIN",
    "CURSOR_PREFIX",
    "DESTINATION_CURSOR_PREFIX",
    "FINALITY_TIMEOUT",
    "METHOD",
    "KzteWatcher",
    "Schedule",
    "Strategy",
    "duty",
]


@dataclass
class PassReport:
    """What one pass did, for logs, tests and the benchmark."""

    polled: int = 0  # feeds listed (destinations, references), plus mints looked up
    unknown: int = 0  # of those, the ones without a usable answer
    destinations: int = 0
    references: int = 0
    fetched: int = 0  # getTransaction reads
    candidates: int = 0
    rejected: int = 0
    changed: int = 0
    events: int = 0
    expired: int = 0
    timed_out: int = 0  # confirmed payments that passed the finality timeout this pass


@dataclass
class _Reads:
    """The outcome of one pass's chain reads, before anything is written."""

    listings: dict[Feed, list[SignatureInfo]]
    infos: dict[str, SignatureInfo]
    fetched: list[str]
    unreadable: set[str]  # signatures that may pay any invoice of their feeds
    held: dict[str, set[str]]  # signature -> invoices it leaves undecided
    valid: list[tuple[Watched, str, int]]
    statuses: dict[str, SigStatus] | None
    # (invoice id, signature, reason code, detail) of transfers that name an invoice but
    # cannot pay it and that its owner should see (kzte_validation's suspicious verdicts).
    rejected: list[tuple[str, str, str, str]] = field(default_factory=list)


class KzteWatcher:
    """Polls the Solana node for KZTE invoice payments.

    What it keeps between passes is a schedule, the mints' token programs, which signatures
    were decided, and when each invoice was last seen completely; losing it (a restart, a new
    leader) costs re-reads and delays expiry by a pass, never a payment.
    """

    def __init__(
        self,
        schedule: Schedule | None = None,
        *,
        strategy: Strategy = Strategy.DESTINATION,
        concurrency: int = 16,
        max_feeds_per_pass: int = 400,
        sweep_per_pass: int = 5,
        timeout_seconds: float = 5.0,
        attempts: int = 3,
        finality_timeout: timedelta = FINALITY_TIMEOUT,
    ) -> None:
        self.schedule = schedule or Schedule()
        self.strategy = strategy
        # sweep_per_pass 5 at a 1 s duty: at most 300 reference reads a minute
        self.planner = FeedPlanner(self.schedule, strategy, max_feeds_per_pass, sweep_per_pass)
        self.concurrency = concurrency
        self.timeout_seconds = timeout_seconds
        self.attempts = attempts
        self.finality_timeout = finality_timeout
        self.stats = CallStats()
        self.programs: dict[str, str] = {}  # mint -> its token program (never changes)
        # When each invoice was last seen completely (a feed covering it read, all decided).
        self.complete_at: dict[str, datetime] = {}
        self.decided: OrderedDict[str, None] = OrderedDict()
        self.last_report = PassReport()

    def run(self, rt: Runtime) -> int:
        """The worker duty: one pass; returns payments changed plus invoice events."""
        report = asyncio.run(self.poll(rt))
        return report.changed + report.events + report.expired

    async def poll(self, rt: Runtime) -> PassReport:
        """One pass over the due feeds and the not-yet-final payments."""
        report = PassReport()
        self.last_report = report
        now = utcnow()
        clock = time.monotonic()
        watched = store.load_watched(rt, now)
        self._forget(watched)
        unfinal = store.load_unfinal(rt, now)
        pending = [u.signature for u in unfinal]
        rpc = SolanaRpc(
            rt.settings.solana_rpc_url,
            timeout_seconds=self.timeout_seconds,
            attempts=self.attempts,
            stats=self.stats,
        )
        async with rpc:
            feeds = await self._due_feeds(rpc, watched, clock, now, report)
            reads = await self._read(rt, rpc, feeds, watched, pending, now, report)
        if reads is not None:
            self._conclude(rt, reads, unfinal, now, report)
        lapsed = [u.invoice_id for u in unfinal if u.lapsed(now)]
        if lapsed:
            report.events += store.reevaluate_lapsed(rt, lapsed)
        self._expire(rt, watched, now, report)
        return report

    # --- which feeds --------------------------------------------------------------------------
    async def _due_feeds(
        self,
        rpc: SolanaRpc,
        watched: list[Watched],
        clock: float,
        now: datetime,
        report: PassReport,
    ) -> list[Feed]:
        if self.strategy is Strategy.DESTINATION:
            await self._resolve_programs(rpc, {w.mint for w in watched}, report)
        plan = self.planner.plan(watched, self.programs, clock, now)
        report.destinations, report.references = plan.destinations, plan.references
        return plan.feeds

    async def _resolve_programs(self, rpc: SolanaRpc, mints: set[str], report: PassReport) -> None:
        """The token program of each mint (it decides the ATA); asked once per mint."""
        missing = sorted(m for m in mints if m not in self.programs)
        answers = await asyncio.gather(*(rpc.account_owner(m) for m in missing))
        for mint, answer in zip(missing, answers, strict=True):
            report.polled += 1
            if answer.known and answer.value is not None:
                self.programs[mint] = answer.value
                continue
            report.unknown += 1  # its invoices' destinations stay unread this pass
            log.warning(
                "token program of mint %s unknown (%s); its invoices wait",
                mint,
                answer.error or "no such account on chain",
            )

    # --- reading the chain --------------------------------------------------------------------
    async def _read(
        self,
        rt: Runtime,
        rpc: SolanaRpc,
        feeds: list[Feed],
        watched: list[Watched],
        pending: list[str],
        now: datetime,
        report: PassReport,
    ) -> _Reads | None:
        if not feeds and not pending:
            return None
        limit = asyncio.Semaphore(self.concurrency)
        cursors = store.read_cursors(rt, feeds)
        answers = await asyncio.gather(
            *(self._signatures(rpc, limit, f, cursors.get(store.cursor_key(f))) for f in feeds)
        )
        listings: dict[Feed, list[SignatureInfo]] = {}
        silent: list[tuple[Feed, object]] = []
        for feed, answer in zip(feeds, answers, strict=True):
            if answer.known and answer.value is not None:
                listings[feed] = answer.value
            else:
                silent.append((feed, answer.error))
        report.polled += len(feeds)
        report.unknown += len(silent)
        if silent:
            feed, error = silent[0]
            log.warning(
                "Solana node %s gave no answer for %d of %d feeds (e.g. %s %s: %s); "
                "nothing changes for them",
                rt.settings.solana_rpc_url,
                len(silent),
                len(feeds),
                feed.kind,
                feed.address,
                error,
            )
        recorded = {sig for w in watched for sig in w.payments}
        infos: dict[str, SignatureInfo] = {}
        for listing in listings.values():
            for s in listing:
                # a failed transaction moved nothing: decided, never read
                if not s.failed and s.signature not in recorded and s.signature not in self.decided:
                    infos.setdefault(s.signature, s)
        fetched = list(infos)
        report.fetched = len(fetched)
        txs = await asyncio.gather(*(self._transaction(rpc, limit, sig) for sig in fetched))
        reads = _Reads(listings, infos, fetched, set(), defaultdict(set), [], None)
        self._judge_all(rt, reads, txs, watched, now, report)
        status_answer = await rpc.signature_statuses([s for _, s, _ in reads.valid] + pending)
        if status_answer.known and status_answer.value is not None:
            reads.statuses = status_answer.value
        else:
            log.warning("Solana statuses unknown (%s); nothing changes", status_answer.error)
        return reads

    def _judge_all(
        self,
        rt: Runtime,
        reads: _Reads,
        txs: Sequence[Answer[ChainTransaction | None]],
        watched: list[Watched],
        now: datetime,
        report: PassReport,
    ) -> None:
        by_ref = {w.reference: w for w in watched}
        unmatched: dict[str, ChainTransaction] = {}
        for sig, answer in zip(reads.fetched, txs, strict=True):
            tx = answer.value
            if not answer.known or tx is None:
                reads.unreadable.add(sig)  # not readable yet: it may pay any invoice here
                continue
            matched = [by_ref[k] for k in dict.fromkeys(tx.account_keys) if k in by_ref]
            if not matched:
                unmatched[sig] = tx
            for w in matched:
                verdict = _judge(w, tx, report)
                if verdict.ok:
                    reads.valid.append((w, sig, verdict.amount_base_units))
                elif verdict.code:
                    reads.rejected.append((w.id, sig, verdict.code, verdict.reason))
        if unmatched:
            late = store.references_in_scope(
                rt, {k for tx in unmatched.values() for k in tx.account_keys}, now
            )
            for sig, tx in unmatched.items():
                if late.intersection(tx.account_keys):
                    reads.unreadable.add(sig)  # pays an invoice this pass did not load
        report.candidates = len(reads.valid)

    async def _signatures(
        self, rpc: SolanaRpc, limit: asyncio.Semaphore, feed: Feed, until: str | None
    ) -> Answer[list[SignatureInfo]]:
        async with limit:
            answer = await rpc.signatures_for_address(
                feed.address, until, max_pages=feed.max_pages, not_before=feed.not_before
            )
            if until is not None and isinstance(answer.error, SolanaRpcError):
                # The node refuses the cursor (it forgot that signature, e.g. a restarted local
                # validator or a pruned node): read the whole history down to the floor.
                log.info("cursor of %s refused (%s); reading all of it", feed.address, answer.error)
                answer = await rpc.signatures_for_address(
                    feed.address, None, max_pages=feed.max_pages, not_before=feed.not_before
                )
            return answer

    async def _transaction(
        self, rpc: SolanaRpc, limit: asyncio.Semaphore, signature: str
    ) -> Answer[ChainTransaction | None]:
        async with limit:
            return await rpc.transaction(signature)

    # --- writing what was learned -------------------------------------------------------------
    def _conclude(
        self,
        rt: Runtime,
        reads: _Reads,
        unfinal: list[Unfinal],
        now: datetime,
        report: PassReport,
    ) -> None:
        observations: dict[str, list[Observation]] = defaultdict(list)
        for w, sig, amount in reads.valid:
            status = payment_status(None if reads.statuses is None else reads.statuses.get(sig))
            if status is None or reads.statuses is None:
                reads.held[sig].add(w.id)  # processed only, or not visible yet: decide later
                continue
            seen = reads.statuses[sig]
            observations[w.id].append(observation(sig, amount, status, seen, reads.infos[sig]))
        timeouts = self._track_unfinal(reads, unfinal, now, observations)
        report.timed_out = sum(len(t) for t in timeouts.values())
        report.changed, report.events, failed = store.record(rt, observations, timeouts, now)
        for w, sig, _amount in reads.valid:
            if w.id in failed:
                reads.held[sig].add(w.id)
        for invoice_id, sig in store.record_rejections(rt, reads.rejected):
            reads.held[sig].add(invoice_id)  # not written: look at it again next pass
        for sig in reads.fetched:
            if sig not in reads.unreadable and sig not in reads.held:
                self._remember(sig)
        blocked = reads.unreadable | set(reads.held)
        held_invoices: set[str] = set()
        for ids in reads.held.values():
            held_invoices |= ids
        moves: dict[str, str] = {}
        for feed, listing in reads.listings.items():
            target = cursor_target(listing, blocked)
            if target is not None:
                moves[store.cursor_key(feed)] = target
            for invoice_id in covered_complete(feed, listing, reads.unreadable, held_invoices):
                self.complete_at[invoice_id] = now
        store.write_cursors(rt, moves, timedelta(hours=rt.settings.late_watch_hours + 1))

    def _track_unfinal(
        self,
        reads: _Reads,
        unfinal: list[Unfinal],
        now: datetime,
        observations: dict[str, list[Observation]],
    ) -> dict[str, list[Unfinal]]:
        """Finality of the recorded payments not final yet; the ones past the timeout.

        Only an answer counts: with the statuses unknown (the node did not answer) nothing
        changes and no timeout is declared. A MISSING payment stays MISSING until it is
        finalized (seen `confirmed` again it would restart its grace window forever).
        """
        timeouts: dict[str, list[Unfinal]] = defaultdict(list)
        if reads.statuses is None:
            return timeouts
        for payment in unfinal:
            seen = reads.statuses.get(payment.signature)
            if payment_status(seen) is PaymentStatus.FINAL and seen is not None:
                observations[payment.invoice_id].append(
                    observation(
                        payment.signature, payment.amount_atomic, PaymentStatus.FINAL, seen, None
                    )
                )
            elif payment.timed_out(now, self.finality_timeout):
                # Still `confirmed` (or no longer known to the node) long after it should
                # have finalized: unknown, never settled on it.
                observations[payment.invoice_id].append(missing_observation(payment))
                timeouts[payment.invoice_id].append(payment)
        return timeouts

    def _expire(
        self, rt: Runtime, watched: list[Watched], now: datetime, report: PassReport
    ) -> None:
        """Publish the watermark; expire what it cannot reach yet (kzte_feeds.expiry_marks)."""
        watermark, proven = expiry_marks(watched, self.complete_at, now)
        try:
            rt.coordinator.set_watermark(METHOD, watermark)
        except CoordinationUnavailableError as exc:
            log.warning("could not publish the KZTE watermark: %s", exc)
        if proven:
            expired = store.expire_proven(rt, proven, now)
            report.expired = len(expired)
            if expired:
                log.info("expired %d KZTE invoices seen unpaid past their window", len(expired))

    # --- memory -------------------------------------------------------------------------------
    def _remember(self, signature: str) -> None:
        self.decided[signature] = None
        self.decided.move_to_end(signature)
        while len(self.decided) > DECIDED_MEMORY:
            self.decided.popitem(last=False)

    def _forget(self, watched: list[Watched]) -> None:
        """Drop what is known of invoices no longer watched."""
        ids = {w.id for w in watched}
        for invoice_id in [i for i in self.complete_at if i not in ids]:
            del self.complete_at[invoice_id]


def _judge(w: Watched, tx: ChainTransaction, report: PassReport) -> Verdict:
    verdict = validate_transfer(tx, w.expected)
    if verdict.ok:
        return verdict
    report.rejected += 1
    level = logging.WARNING if verdict.suspicious else logging.INFO
    log.log(level, "invoice %s: %s not counted: %s", w.id, tx.signature, verdict.reason)
    return verdict


def duty(watcher: KzteWatcher | None = None) -> Duty:
    """The worker duty: one leader polls the Solana node about every second."""
    active = watcher or KzteWatcher()
    return Duty("kzte-watcher", 1.0, active.run, leader_only=True)
