"""The Bitcoin watcher: finds payments to invoice addresses and follows them to finality.

It speaks only standard Bitcoin Core RPC (settlement.chains.bitcoin_core), so the same code runs
against a real bitcoind. One poll, under the `watch:bitcoin` lease:

1. Snapshot the mempool FIRST, then read the tip: a transaction that leaves the mempool after
   the snapshot is in a block at or below the tip we scan, so nothing falls between the two.
2. Reorgs: walk back from the checkpoint comparing stored block hashes with the node's; payments
   in disconnected blocks go back to the mempool state, or to `reorged` (unknown) if the node
   dropped them.
3. Scan every block after the fork point / checkpoint (catch-up after downtime included),
   matching outputs against the Redis watch index. Coinbase outputs and outputs below the dust
   limit never count. A transaction spending an input of a tracked payment is the proof that
   the payment was replaced; the inputs are stored with each payment, so the proof survives a
   restart.
4. Examine mempool transactions not seen before: payments, and conflicts with tracked ones.
5. Refresh tracked payments: confirmations and finality by the merchant's policy. One that
   vanished from the mempool without a block and without a seen conflict is `missing`: unknown,
   still counting for a grace window, revived if it is mined after all (DESIGN §5).
6. Re-evaluate the touched invoices (each on its own, so a concurrent change by a person only
   retries that invoice), commit, publish; set the watermark that lets the expiry sweeper expire
   BTC invoices only up to the moment this watcher had a complete view.
A node that times out makes the whole poll UNKNOWN: nothing changes, the next poll retries. A
pruned node that no longer has a block we must scan stops the watcher with one clear error and
the rescan instruction, never a crash loop.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable, Container, Iterable
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from pos import invoices
from pos.coordination import chunked
from pos.db import utcnow
from pos.methods.bitcoin import DUST_LIMIT_SAT
from pos.models import Invoice, Payment, PaymentStatus
from pos.runtime import Runtime
from pos.settings import BitcoinNetwork
from pos.states import WATCHED_STATUSES, InvoiceStatus, PaymentMethod
from settlement.btc_mempool import MempoolView
from settlement.chain_state import ChainCursor, ScannedBlock
from settlement.chains.bitcoin_core import BitcoinCoreClient, BlockView, TxView
from settlement.chains.bitcoin_zmq import ZmqSequenceFeed
from settlement.errors import (
    BlocksPrunedError,
    LostLeadershipError,
    NodeAuthError,
    NodeRpcError,
    NodeUnavailableError,
)
from settlement.payments import (
    UNKNOWN,
    UNKNOWN_GRACE,
    Observation,
    observe_payment,
    reevaluate_safely,
)
from settlement.worker import Duty, recorded_fence

log = logging.getLogger(__name__)

CHAIN = "bitcoin"
METHOD = "btc"
LEASE = "watch:bitcoin"
LEASE_MS = 30_000
CATCH_UP_COMMIT_BLOCKS = 100
KEEP_BLOCKS = 144  # a day of block hashes is far deeper than any reorg we expect
LOOKUP_CHUNK = 2_000
# Payments whose state can still change: in the mempool, in a block not yet final, or unknown.
TRACKED = (
    PaymentStatus.SEEN,
    PaymentStatus.CONFIRMED,
    PaymentStatus.REORGED,
    PaymentStatus.MISSING,
)
FINAL_REFRESH_DEPTH = 6  # keep counting confirmations of final payments up to this depth
# Unknown payments are looked for this long (Core's own mempool expiry is two weeks).
UNKNOWN_TRACKING = timedelta(days=14)
PAID_STATUSES = (InvoiceStatus.PROCESSING, InvoiceStatus.SETTLED)
# After a start, a mempool larger than this is filtered by entry time before it is examined.
START_SCAN_FILTER_ABOVE = 1_000
START_SCAN_SLACK = timedelta(minutes=10)  # node and server clocks differ a little
PRUNED_LOG_EVERY_SECONDS = 600.0
CORE_CHAIN_NAMES = {
    BitcoinNetwork.MAINNET: "main",
    BitcoinNetwork.TESTNET: "test",
    BitcoinNetwork.SIGNET: "signet",
    BitcoinNetwork.REGTEST: "regtest",
}


def required_confirmations(invoice: Invoice) -> int:
    """The merchant's policy; 0-conf only for invoices at or under the merchant's KZT limit."""
    merchant = invoice.merchant
    required = merchant.confirmations_required
    if required == 0 and invoice.price_tiyn > merchant.zero_conf_limit_tiyn:
        return 1
    return required


@dataclass
class PollResult:
    blocks_scanned: int = 0
    payments_changed: int = 0
    events: int = 0
    reorg_depth: int = 0


def outpoint(txid: str, vout: int) -> str:
    return f"{txid}:{vout}"


def _is_coinbase(tx: TxView) -> bool:
    # Only a coinbase has no previous outputs; its outputs are immature for 100 blocks and
    # vanish in a reorg, so they never pay an invoice.
    return not tx.spends


@dataclass
class Conflicts:
    """Outpoints spent by tracked payments: a different transaction spending one replaces it."""

    spent_by: dict[str, str] = field(default_factory=dict)  # outpoint -> the payment's txid

    @classmethod
    def load(cls, session: Session) -> Conflicts:
        rows = session.execute(
            select(Payment.txid, Payment.spent_outpoints).where(
                Payment.chain == CHAIN, Payment.status.in_(TRACKED)
            )
        ).all()
        return cls({point: txid for txid, points in rows for point in points or ()})

    def add(self, txid: str, points: Iterable[str]) -> None:
        for point in points:
            self.spent_by[point] = txid

    def victims(self, tx: TxView) -> set[str]:
        """Tracked payment txids that `tx` conflicts with (it spends one of their inputs)."""
        found: set[str] = set()
        for prev_txid, vout in tx.spends:
            victim = self.spent_by.get(outpoint(prev_txid, vout))
            if victim is not None and victim != tx.txid:
                found.add(victim)
        return found

    def forget(self, txid: str) -> None:
        self.spent_by = {k: v for k, v in self.spent_by.items() if v != txid}


@dataclass
class BitcoinWatcher:
    """Holds what one leader remembers between polls (all of it can be rebuilt)."""

    rt: Runtime
    client: BitcoinCoreClient
    holder: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}:btc")
    mempool: MempoolView = field(init=False)
    feed: ZmqSequenceFeed | None = None
    network_checked: bool = False
    last_error: str | None = None
    _last_error_logged: float = 0.0
    # Mempool txids reported new but not yet examined in a committed poll, in arrival order.
    _unexamined: dict[str, None] = field(default_factory=dict)
    _first_examination: bool = True

    def __post_init__(self) -> None:
        self.mempool = MempoolView(self.client, self.feed)

    # --- the duty ---------------------------------------------------------------------------
    def run(self, rt: Runtime) -> int:
        # The database's fence is the floor: a flushed Redis never hands out an older token.
        floor = recorded_fence(rt, CHAIN)
        fence = rt.coordinator.acquire_lease(LEASE, self.holder, LEASE_MS, floor=floor)
        if fence is None:
            return 0  # another worker leads the Bitcoin watcher
        try:
            result = self.poll(fence)
        except NodeUnavailableError as exc:
            log.warning("bitcoin node unavailable, state unknown until it answers: %s", exc)
            return 0
        except (NodeAuthError, BlocksPrunedError) as exc:
            self._report(str(exc))
            return 0
        except LostLeadershipError:
            log.warning("lost the bitcoin watcher lease mid-poll; another worker leads now")
            return 0
        self.last_error = None
        return result.blocks_scanned + result.payments_changed

    def _report(self, message: str) -> None:
        """Log a standing error once, then every few minutes while it lasts (no log flood)."""
        now = time.monotonic()
        if message != self.last_error or now - self._last_error_logged > PRUNED_LOG_EVERY_SECONDS:
            log.error("%s", message)
            self._last_error_logged = now
        self.last_error = message

    # --- one poll ---------------------------------------------------------------------------
    def _check_network(self) -> None:
        """Refuse to watch a node of another network than BITCOIN_NETWORK."""
        if self.network_checked:
            return
        chain = self.client.chain_name()
        expected = CORE_CHAIN_NAMES[self.rt.settings.bitcoin_network]
        if chain != expected:
            raise NodeAuthError(
                f"the Bitcoin node runs {chain!r} but BITCOIN_NETWORK is "
                f"{self.rt.settings.bitcoin_network}; refusing to watch it"
            )
        self.network_checked = True

    def poll(self, fence: int) -> PollResult:
        self._check_network()
        epoch = self.rt.coordinator.epoch()
        if epoch is None:
            return PollResult()  # Redis was flushed: wait for the rebuild of the watch index
        snapshot_at = utcnow()
        delta = self.mempool.sync()
        if not delta.complete:
            raise NodeUnavailableError("the mempool could not be read")
        self._unexamined.update(dict.fromkeys(delta.added))
        mempool = self.mempool
        tip = self.client.block_count()
        result = PollResult()
        touched: set[str] = set()
        with self.rt.session_factory() as session:
            cursor = session.get(ChainCursor, CHAIN)
            if cursor is None:
                start = tip  # first run: from the current tip on (invoices are newer)
            else:
                fork = self._find_fork(session, cursor.height)
                if fork < cursor.height:
                    result.reorg_depth = cursor.height - fork
                    touched |= self._disconnect(session, fork, mempool)
                start = fork + 1
            conflicts = Conflicts.load(session)
            total = tip - start + 1
            for number, height in enumerate(range(start, tip + 1), start=1):
                block = self._fetch_block(height)
                touched |= self._scan_block(session, block, conflicts)
                self._checkpoint(session, block, fence)
                result.blocks_scanned += 1
                if total > 10 and (number % 50 == 0 or number == total):
                    log.info("bitcoin catch-up: block %d/%d (height %d)", number, total, height)
                if number % CATCH_UP_COMMIT_BLOCKS == 0 and number < total:
                    # A long catch-up keeps its progress: commit every so many blocks.
                    if not self._commit(session, touched, epoch, result):
                        return PollResult()
                    touched = set()
            examined = list(self._unexamined)
            touched |= self._scan_mempool(session, examined, conflicts)
            touched |= self._refresh(session, tip, mempool)
            if not self._commit(session, touched, epoch, result):
                return PollResult()
        # Only now are they done: a poll that failed before the commit sees them again.
        for txid in examined:
            self._unexamined.pop(txid, None)
        self.rt.coordinator.set_watermark(METHOD, snapshot_at)
        return result

    def _fetch_block(self, height: int) -> BlockView:
        try:
            return self.client.block(self.client.block_hash(height))
        except NodeRpcError as exc:
            if "pruned" not in exc.message.lower():
                raise
            info = self.client.call("getblockchaininfo")
            prune_height = int(info.get("pruneheight", height + 1))
            raise BlocksPrunedError(height, prune_height) from None

    def _commit(self, session: Session, touched: set[str], epoch: str, result: PollResult) -> bool:
        """Re-evaluate the touched invoices, commit, publish; False if Redis was rebuilt."""
        if self.rt.coordinator.epoch() != epoch:
            session.rollback()  # the watch index changed under us: redo next poll
            return False
        late_window = timedelta(hours=self.rt.settings.late_watch_hours)
        for invoice_id in sorted(touched):
            result.events += len(reevaluate_safely(session, invoice_id, late_window=late_window))
        result.payments_changed += len(touched)
        session.commit()
        invoices.publish_after_commit(self.rt.session_factory, self.rt.coordinator, session)
        return True

    # --- reorgs -----------------------------------------------------------------------------
    def _find_fork(self, session: Session, height: int) -> int:
        """The highest stored height whose hash is still on the node's best chain."""
        stored = dict(
            session.execute(
                select(ScannedBlock.height, ScannedBlock.hash)
                .where(ScannedBlock.chain == CHAIN, ScannedBlock.height <= height)
                .order_by(ScannedBlock.height.desc())
                .limit(KEEP_BLOCKS)
            ).all()
        )
        node_tip = self.client.block_count()
        for candidate in sorted(stored, reverse=True):
            if candidate <= node_tip and self.client.block_hash(candidate) == stored[candidate]:
                return candidate
        # Deeper than everything we remember (or nothing stored): rescan from the oldest.
        return min(stored, default=height + 1) - 1

    def _disconnect(self, session: Session, fork: int, mempool: Container[str]) -> set[str]:
        """Blocks above `fork` left the best chain: reset the payments they held."""
        gone = set(
            session.scalars(
                select(ScannedBlock.hash).where(
                    ScannedBlock.chain == CHAIN, ScannedBlock.height > fork
                )
            )
        )
        log.warning("bitcoin reorg: %d block(s) above height %d disconnected", len(gone), fork)
        touched: set[str] = set()
        payments = session.scalars(
            select(Payment).where(Payment.chain == CHAIN, Payment.block_hash.in_(gone))
        ).all()
        for payment in payments:
            in_mempool = payment.txid in mempool
            spends = tuple(payment.spent_outpoints) or self._inputs_of(payment)
            observe_payment(
                session,
                payment.invoice,
                Observation(
                    CHAIN,
                    payment.txid,
                    payment.output_index,
                    payment.amount_atomic,
                    PaymentStatus.SEEN if in_mempool else PaymentStatus.REORGED,
                    spends=spends,
                ),
            )
            touched.add(payment.invoice_id)
        session.execute(
            delete(ScannedBlock).where(ScannedBlock.chain == CHAIN, ScannedBlock.height > fork)
        )
        return touched

    def _inputs_of(self, payment: Payment) -> tuple[str, ...]:
        """The inputs of a payment recorded before they were stored (read from its old block)."""
        if payment.block_hash is None:
            return ()
        try:
            view = self.client.transaction_in_block(payment.txid, payment.block_hash)
        except NodeRpcError as exc:  # e.g. a pruned node: we only lose double-spend precision
            log.info("cannot read the inputs of reorged %s: %s", payment.txid, exc)
            return ()
        return tuple(outpoint(txid, vout) for txid, vout in view.spends)

    # --- scanning ---------------------------------------------------------------------------
    def _match(self, txs: Iterable[TxView]) -> list[tuple[TxView, int, int, str]]:
        """(tx, output index, satoshi, invoice id) for every output that may pay an invoice."""
        outputs = [
            (tx, out)
            for tx in txs
            if not _is_coinbase(tx)
            for out in tx.outputs
            if out.address and out.amount_sat >= DUST_LIMIT_SAT
        ]
        found: list[tuple[TxView, int, int, str]] = []
        for batch in chunked(outputs, LOOKUP_CHUNK):
            owners = self.rt.coordinator.lookup(METHOD, [out.address for _, out in batch])
            found += [
                (tx, out.vout, out.amount_sat, owners[out.address])
                for tx, out in batch
                if out.address in owners
            ]
        return found

    def _replace(
        self, session: Session, conflicts: Conflicts, victims: set[str], by_txid: str
    ) -> set[str]:
        """Mark the payments of each victim txid replaced by `by_txid` (the proof is stored)."""
        touched: set[str] = set()
        for victim in victims:
            for payment in session.scalars(
                select(Payment).where(Payment.chain == CHAIN, Payment.txid == victim)
            ):
                log.warning("bitcoin payment %s replaced by conflicting %s", victim, by_txid)
                observe_payment(
                    session,
                    payment.invoice,
                    Observation(
                        CHAIN,
                        victim,
                        payment.output_index,
                        payment.amount_atomic,
                        PaymentStatus.REPLACED,
                        replaced_by=by_txid,
                    ),
                )
                touched.add(payment.invoice_id)
            conflicts.forget(victim)
        return touched

    def _observe(self, session: Session, invoice_id: str, seen: Observation) -> bool:
        """Record one payment in its own savepoint: one bad output never stops a scan."""
        invoice = session.get(Invoice, invoice_id)
        if invoice is None:
            return False
        try:
            with session.begin_nested():
                observe_payment(session, invoice, seen)
        except (IntegrityError, ValueError) as exc:
            log.error(
                "bitcoin output %s:%d to invoice %s not recorded: %s",
                seen.txid,
                seen.output_index,
                invoice_id,
                exc,
            )
            return False
        return True

    def _scan_block(self, session: Session, block: BlockView, conflicts: Conflicts) -> set[str]:
        touched: set[str] = set()
        for tx in block.txs:
            victims = conflicts.victims(tx)
            if victims:
                touched |= self._replace(session, conflicts, victims, tx.txid)
        for tx, vout, amount, invoice_id in self._match(block.txs):
            seen = Observation(
                CHAIN,
                tx.txid,
                vout,
                amount,
                PaymentStatus.CONFIRMED,
                confirmations=1,
                block_hash=block.hash,
                block_height=block.height,
                seen_at=block.time,
                spends=tuple(outpoint(t, v) for t, v in tx.spends),
            )
            if self._observe(session, invoice_id, seen):
                touched.add(invoice_id)
        return touched

    def _scan_mempool(self, session: Session, new: list[str], conflicts: Conflicts) -> set[str]:
        """Examine transactions new to the mempool: payments, and conflicts with tracked ones."""
        new = self._recent_only(session, new)
        touched: set[str] = set()
        for batch in chunked(new, 200):
            views = [v for v in self.client.transactions(batch).values() if v is not None]
            for tx in views:
                victims = conflicts.victims(tx)
                if victims:
                    touched |= self._replace(session, conflicts, victims, tx.txid)
            matches = self._match(views)
            # When the chain first knew each payment: asked only for the few that pay us.
            times = self.mempool.entry_times(tx.txid for tx, *_ in matches)
            for tx, vout, amount, invoice_id in matches:
                existing = session.scalar(
                    select(Payment).where(
                        Payment.chain == CHAIN,
                        Payment.txid == tx.txid,
                        Payment.output_index == vout,
                    )
                )
                if existing is not None and existing.block_hash is not None:
                    continue  # already mined (a block we scanned this poll)
                spends = tuple(outpoint(t, v) for t, v in tx.spends)
                seen = Observation(
                    CHAIN,
                    tx.txid,
                    vout,
                    amount,
                    PaymentStatus.SEEN,
                    seen_at=times.get(tx.txid),
                    spends=spends,
                )
                if self._observe(session, invoice_id, seen):
                    conflicts.add(tx.txid, spends)
                    touched.add(invoice_id)
        return touched

    def _recent_only(self, session: Session, txids: list[str]) -> list[str]:
        """After a start the whole mempool is new to us: keep what may pay a watched invoice.

        A payment cannot be older than its invoice, so one verbose listing (once per start,
        not per poll) drops every transaction the node had before the oldest watched invoice.
        """
        if not self._first_examination or len(txids) <= START_SCAN_FILTER_ABOVE:
            self._first_examination = False
            return txids
        horizon = session.scalar(
            select(func.min(Invoice.created_at)).where(
                Invoice.method == PaymentMethod.BTC,
                Invoice.status.in_(WATCHED_STATUSES),
                Invoice.created_at
                >= utcnow()
                - timedelta(hours=self.rt.settings.late_watch_hours)
                - timedelta(days=1),
            )
        )
        times = self.client.mempool_times()
        self._first_examination = False
        if horizon is None:
            return []  # nothing is watched: nothing in today's mempool can pay us
        cutoff = horizon - START_SCAN_SLACK
        kept = [txid for txid in txids if times.get(txid, cutoff) >= cutoff]
        for txid in set(txids) - set(kept):
            self._unexamined.pop(txid, None)  # so a failed first poll does not list them again
        log.info(
            "bitcoin mempool after start: %d of %d transactions are newer than the oldest "
            "watched invoice",
            len(kept),
            len(txids),
        )
        return kept

    def _refresh(self, session: Session, tip: int, mempool: Container[str]) -> set[str]:
        """Confirmations and finality of tracked payments; vanished ones become unknown."""
        touched: set[str] = set()
        now = utcnow()
        payments = session.scalars(
            select(Payment).where(
                Payment.chain == CHAIN,
                (Payment.status.in_(TRACKED))
                | (
                    (Payment.status == PaymentStatus.FINAL)
                    & (Payment.confirmations < FINAL_REFRESH_DEPTH)
                ),
                # Unknown payments are looked for two weeks, like Core's own mempool expiry.
                (Payment.missing_since.is_(None))
                | (Payment.missing_since > now - UNKNOWN_TRACKING),
            )
        ).all()
        for payment in payments:
            invoice = payment.invoice
            if invoice.marked:
                continue  # a person decided this invoice
            required = required_confirmations(invoice)
            if payment.block_height is not None:
                confirmations = tip - payment.block_height + 1
            elif payment.txid in mempool:
                confirmations = 0
            elif payment.status in UNKNOWN:
                # Still nowhere. Once its grace window has passed, an invoice it helped pay is
                # re-evaluated so it can turn invalid (idempotent; only while paid or settled).
                since = payment.missing_since or payment.updated_at
                if now - since >= UNKNOWN_GRACE and invoice.status in PAID_STATUSES:
                    touched.add(invoice.id)
                continue
            else:
                # Not mined (we scanned every block), not in the mempool, no conflict seen: a
                # node restart, an eviction or an expiry. Unknown, not failed (DESIGN §5).
                log.info("bitcoin payment %s left the mempool unmined: missing", payment.txid)
                observe_payment(
                    session,
                    invoice,
                    Observation(
                        CHAIN,
                        payment.txid,
                        payment.output_index,
                        payment.amount_atomic,
                        PaymentStatus.MISSING,
                    ),
                    now,
                )
                touched.add(invoice.id)
                continue
            if confirmations >= required:  # required 0: the merchant accepts 0-conf here
                status = PaymentStatus.FINAL
            else:
                status = PaymentStatus.CONFIRMED if confirmations else PaymentStatus.SEEN
            seen = Observation(
                CHAIN,
                payment.txid,
                payment.output_index,
                payment.amount_atomic,
                status,
                max(confirmations, 0),
                payment.block_hash,
                payment.block_height,
            )
            if observe_payment(session, invoice, seen, now)[1]:
                touched.add(invoice.id)
        return touched

    # --- checkpoint -------------------------------------------------------------------------
    def _checkpoint(self, session: Session, block: BlockView, fence: int) -> None:
        session.execute(
            delete(ScannedBlock).where(
                ScannedBlock.chain == CHAIN, ScannedBlock.height >= block.height
            )
        )
        session.add(ScannedBlock(chain=CHAIN, height=block.height, hash=block.hash))
        session.execute(
            delete(ScannedBlock).where(
                ScannedBlock.chain == CHAIN, ScannedBlock.height <= block.height - KEEP_BLOCKS
            )
        )
        cursor = session.get(ChainCursor, CHAIN)
        if cursor is None:
            session.add(
                ChainCursor(
                    chain=CHAIN,
                    height=block.height,
                    block_hash=block.hash,
                    fence=fence,
                    updated_at=utcnow(),
                )
            )
            session.flush()
            return
        # Fencing: a stale leader (paused past its lease) cannot move the checkpoint back.
        moved = session.execute(
            update(ChainCursor)
            .where(ChainCursor.chain == CHAIN, ChainCursor.fence <= fence)
            .values(height=block.height, block_hash=block.hash, fence=fence, updated_at=utcnow())
            .execution_options(synchronize_session=False)
        ).rowcount  # type: ignore[attr-defined]
        if moved != 1:
            session.rollback()
            raise LostLeadershipError("a newer leader owns the bitcoin checkpoint")


def rewind(session: Session, height: int) -> int:
    """Make the next poll scan from `height` on (operators: `cryptocity rescan bitcoin`).

    Backwards it rescans what was scanned; forwards (past a pruned node's missing blocks) it
    skips ahead: the blocks in between are not scanned at all.
    """
    cursor = session.get(ChainCursor, CHAIN)
    forward = cursor is not None and height > cursor.height + 1
    scope = delete(ScannedBlock).where(ScannedBlock.chain == CHAIN)
    session.execute(scope if forward else scope.where(ScannedBlock.height >= height))
    if cursor is None:
        return 0
    # With nothing stored at or below it, the fork check keeps the cursor: the scan starts at
    # `height`.
    below = session.scalar(
        select(ScannedBlock).where(ScannedBlock.chain == CHAIN, ScannedBlock.height == height - 1)
    )
    cursor.height = height - 1
    cursor.block_hash = below.hash if below is not None else ""
    cursor.updated_at = utcnow()
    return cursor.height


def duty(zmq_url: str | None = None) -> Duty:
    """The worker duty; its watcher (and node connection) is created on first use.

    With `zmq_url` (bitcoind's -zmqpubsequence endpoint) a notification runs it at once and
    the mempool view follows the notifications; without, it polls every second and lists the
    mempool's txids each time.
    """
    watchers: list[BitcoinWatcher] = []
    feeds: list[ZmqSequenceFeed] = []

    def run(rt: Runtime) -> int:
        if not watchers or watchers[0].rt is not rt:
            client = BitcoinCoreClient(rt.settings.bitcoin_rpc_url)
            watchers[:] = [BitcoinWatcher(rt, client, feed=feeds[0] if feeds else None)]
        return watchers[0].run(rt)

    def start(wake: Callable[[], None]) -> None:
        if zmq_url:
            feeds.append(ZmqSequenceFeed(zmq_url, wake))
            feeds[0].start()

    def close() -> None:
        for feed in feeds:
            feed.stop()
        for watcher in watchers:
            watcher.client.close()

    return Duty("watch-bitcoin", 1.0, run, close=close, start=start)
