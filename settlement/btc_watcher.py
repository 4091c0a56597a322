"""The Bitcoin watcher: finds payments to invoice addresses and follows them to finality.

It speaks only standard Bitcoin Core RPC (settlement.chains.bitcoin_core), so the same code runs
against a real bitcoind. One poll, under the `watch:bitcoin` lease:

1. Snapshot the mempool FIRST, then read the tip: a transaction that leaves the mempool after
   the snapshot is in a block at or below the tip we scan, so nothing falls between the two.
2. Reorgs: walk back from the checkpoint comparing stored block hashes with the node's; payments
   in disconnected blocks go back to the mempool state (or `reorged` if the node dropped them).
3. Scan every block after the fork point / checkpoint (catch-up after downtime included),
   matching outputs against the Redis watch index; a block transaction spending the inputs of
   a reorged payment marks that payment double-spent.
4. Examine mempool transactions not seen before.
5. Refresh tracked payments: confirmations, finality by the merchant's policy, and payments
   that vanished from the mempool without being mined (replaced / double-spent).
6. Re-evaluate the touched invoices, commit, publish; set the watermark that lets the expiry
   sweeper expire BTC invoices only up to the moment this watcher had a complete view.
A node that times out makes the whole poll UNKNOWN: nothing changes, the next poll retries.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from pos import invoices
from pos.coordination import chunked
from pos.db import utcnow
from pos.models import Invoice, Payment, PaymentStatus
from pos.runtime import Runtime
from pos.settings import BitcoinNetwork
from pos.states import InvoiceStatus
from settlement.chain_state import ChainCursor, ScannedBlock
from settlement.chains.bitcoin_core import BitcoinCoreClient, BlockView, TxView
from settlement.chains.bitcoin_zmq import ZmqWakeup
from settlement.errors import (
    LostLeadershipError,
    NodeAuthError,
    NodeRpcError,
    NodeUnavailableError,
)
from settlement.payments import Observation, observe_payment, reevaluate
from settlement.worker import Duty

log = logging.getLogger(__name__)

CHAIN = "bitcoin"
METHOD = "btc"
LEASE = "watch:bitcoin"
LEASE_MS = 30_000
CATCH_UP_COMMIT_BLOCKS = 100
KEEP_BLOCKS = 144  # a day of block hashes is far deeper than any reorg we expect
LOOKUP_CHUNK = 2_000
TRACKED = (PaymentStatus.SEEN, PaymentStatus.CONFIRMED, PaymentStatus.REORGED)
FINAL_REFRESH_DEPTH = 6  # keep counting confirmations of final payments up to this depth
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


@dataclass
class BitcoinWatcher:
    """Holds what one leader remembers between polls (all of it can be rebuilt)."""

    rt: Runtime
    client: BitcoinCoreClient
    holder: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}:btc")
    examined_mempool: set[str] = field(default_factory=set)
    # Inputs of payments whose block was disconnected: a new block spending them elsewhere
    # proves a double spend.
    reorged_spends: dict[tuple[str, int], str] = field(default_factory=dict)
    network_checked: bool = False

    # --- the duty ---------------------------------------------------------------------------
    def run(self, rt: Runtime) -> int:
        fence = rt.coordinator.acquire_lease(LEASE, self.holder, LEASE_MS)
        if fence is None:
            return 0  # another worker leads the Bitcoin watcher
        try:
            result = self.poll(fence)
        except NodeUnavailableError as exc:
            log.warning("bitcoin node unavailable, state unknown until it answers: %s", exc)
            return 0
        except NodeAuthError as exc:
            log.error("%s", exc)
            return 0
        except LostLeadershipError:
            log.warning("lost the bitcoin watcher lease mid-poll; another worker leads now")
            self.examined_mempool.clear()
            return 0
        return result.blocks_scanned + result.payments_changed

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
        mempool = self.client.mempool_times()
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
            total = tip - start + 1
            for number, height in enumerate(range(start, tip + 1), start=1):
                block = self.client.block(self.client.block_hash(height))
                touched |= self._scan_block(session, block)
                self._checkpoint(session, block, fence)
                result.blocks_scanned += 1
                if total > 10 and (number % 50 == 0 or number == total):
                    log.info("bitcoin catch-up: block %d/%d (height %d)", number, total, height)
                if number % CATCH_UP_COMMIT_BLOCKS == 0 and number < total:
                    # A long catch-up keeps its progress: commit every so many blocks.
                    if not self._commit(session, touched, epoch, result):
                        return PollResult()
                    touched = set()
            touched |= self._scan_mempool(session, mempool)
            touched |= self._refresh(session, tip, mempool)
            if not self._commit(session, touched, epoch, result):
                return PollResult()
        self.rt.coordinator.set_watermark(METHOD, snapshot_at)
        return result

    def _commit(self, session: Session, touched: set[str], epoch: str, result: PollResult) -> bool:
        """Re-evaluate the touched invoices, commit, publish; False if Redis was rebuilt."""
        if self.rt.coordinator.epoch() != epoch:
            session.rollback()  # the watch index changed under us: redo next poll
            return False
        for invoice_id in sorted(touched):
            invoice = session.get(Invoice, invoice_id)
            if invoice is not None:
                result.events += len(reevaluate(session, invoice))
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

    def _disconnect(self, session: Session, fork: int, mempool: dict[str, datetime]) -> set[str]:
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
            if not in_mempool:
                self._remember_spends(payment)
            observe_payment(
                session,
                payment.invoice,
                Observation(
                    CHAIN,
                    payment.txid,
                    payment.output_index,
                    payment.amount_atomic,
                    PaymentStatus.SEEN if in_mempool else PaymentStatus.REORGED,
                ),
            )
            touched.add(payment.invoice_id)
        session.execute(
            delete(ScannedBlock).where(ScannedBlock.chain == CHAIN, ScannedBlock.height > fork)
        )
        return touched

    def _remember_spends(self, payment: Payment) -> None:
        if payment.block_hash is None:
            return
        try:
            raw = self.client.call("getrawtransaction", payment.txid, True, payment.block_hash)
        except NodeRpcError as exc:  # e.g. a pruned node: we only lose double-spend precision
            log.info("cannot read the inputs of reorged %s: %s", payment.txid, exc)
            return
        for vin in raw.get("vin", []):
            if "txid" in vin:
                self.reorged_spends[(vin["txid"], int(vin["vout"]))] = payment.txid

    # --- scanning ---------------------------------------------------------------------------
    def _match(self, txs: Iterable[TxView]) -> list[tuple[TxView, int, str]]:
        """(tx, output index, invoice id) for every output paying a watched address."""
        outputs = [(tx, out) for tx in txs for out in tx.outputs if out.address]
        found: list[tuple[TxView, int, str]] = []
        for batch in chunked(outputs, LOOKUP_CHUNK):
            owners = self.rt.coordinator.lookup(METHOD, [out.address for _, out in batch])
            found += [
                (tx, out.vout, owners[out.address]) for tx, out in batch if out.address in owners
            ]
        return found

    def _scan_block(self, session: Session, block: BlockView) -> set[str]:
        touched: set[str] = set()
        if self.reorged_spends:
            for tx in block.txs:
                for outpoint in tx.spends:
                    victim = self.reorged_spends.get(outpoint)
                    if victim is not None and victim != tx.txid:
                        touched |= self._mark_replaced(session, victim)
        for tx, vout, invoice_id in self._match(block.txs):
            invoice = session.get(Invoice, invoice_id)
            if invoice is None:
                continue
            amount = next(o.amount_sat for o in tx.outputs if o.vout == vout)
            observe_payment(
                session,
                invoice,
                Observation(
                    CHAIN,
                    tx.txid,
                    vout,
                    amount,
                    PaymentStatus.CONFIRMED,
                    confirmations=1,
                    block_hash=block.hash,
                    block_height=block.height,
                    seen_at=block.time,
                ),
            )
            self.reorged_spends = {k: v for k, v in self.reorged_spends.items() if v != tx.txid}
            touched.add(invoice_id)
        return touched

    def _mark_replaced(self, session: Session, txid: str) -> set[str]:
        touched: set[str] = set()
        for payment in session.scalars(
            select(Payment).where(Payment.chain == CHAIN, Payment.txid == txid)
        ):
            observe_payment(
                session,
                payment.invoice,
                Observation(
                    CHAIN, txid, payment.output_index, payment.amount_atomic, PaymentStatus.REPLACED
                ),
            )
            touched.add(payment.invoice_id)
        self.reorged_spends = {k: v for k, v in self.reorged_spends.items() if v != txid}
        return touched

    def _scan_mempool(self, session: Session, mempool: dict[str, datetime]) -> set[str]:
        new = [txid for txid in mempool if txid not in self.examined_mempool]
        touched: set[str] = set()
        for batch in chunked(new, 200):
            views = [v for v in self.client.transactions(batch).values() if v is not None]
            for tx, vout, invoice_id in self._match(views):
                invoice = session.get(Invoice, invoice_id)
                if invoice is None:
                    continue
                amount = next(o.amount_sat for o in tx.outputs if o.vout == vout)
                existing = session.scalar(
                    select(Payment).where(
                        Payment.chain == CHAIN,
                        Payment.txid == tx.txid,
                        Payment.output_index == vout,
                    )
                )
                if existing is not None and existing.block_hash is not None:
                    continue  # already mined (a block we scanned this poll)
                observe_payment(
                    session,
                    invoice,
                    Observation(
                        CHAIN, tx.txid, vout, amount, PaymentStatus.SEEN, seen_at=mempool[tx.txid]
                    ),
                )
                touched.add(invoice_id)
        self.examined_mempool = set(mempool)
        return touched

    def _refresh(self, session: Session, tip: int, mempool: dict[str, datetime]) -> set[str]:
        """Confirmations and finality of tracked payments; vanished ones are replaced."""
        touched: set[str] = set()
        payments = session.scalars(
            select(Payment).where(
                Payment.chain == CHAIN,
                (Payment.status.in_(TRACKED))
                | (
                    (Payment.status == PaymentStatus.FINAL)
                    & (Payment.confirmations < FINAL_REFRESH_DEPTH)
                ),
            )
        ).all()
        for payment in payments:
            invoice = payment.invoice
            if invoice.status is InvoiceStatus.INVALID:
                continue
            required = required_confirmations(invoice)
            if payment.block_height is not None:
                confirmations = tip - payment.block_height + 1
            elif payment.txid in mempool:
                confirmations = 0
            elif payment.status is PaymentStatus.REORGED:
                continue  # waits for a re-mine, a double spend in a block, or the grace window
            else:
                # Neither mined (we scanned every block) nor in the mempool: double-spent,
                # replaced by fee bump, or evicted. The money is not coming from this tx.
                confirmations = -1
            if confirmations < 0:
                status = PaymentStatus.REPLACED
            elif confirmations >= required:  # required 0: the merchant accepts 0-conf here
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
            changed = observe_payment(session, invoice, seen)[1]
            if changed:
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
    """Make the next poll rescan from `height` (operators: `cryptocity rescan bitcoin`)."""
    session.execute(
        delete(ScannedBlock).where(ScannedBlock.chain == CHAIN, ScannedBlock.height >= height)
    )
    cursor = session.get(ChainCursor, CHAIN)
    if cursor is None:
        return 0
    below = session.scalar(
        select(ScannedBlock).where(ScannedBlock.chain == CHAIN, ScannedBlock.height == height - 1)
    )
    if below is None:
        # Nothing stored below: anchor the cursor there; the fork check walks back safely.
        session.delete(cursor)
        return 0
    cursor.height, cursor.block_hash = below.height, below.hash
    return cursor.height


def duty(zmq_url: str | None = None) -> Duty:
    """The worker duty; its watcher (and node connection) is created on first use.

    With `zmq_url` (bitcoind's -zmqpubsequence endpoint) a notification runs it at once;
    without, it polls every second.
    """
    watchers: list[BitcoinWatcher] = []

    def run(rt: Runtime) -> int:
        if not watchers or watchers[0].rt is not rt:
            watchers[:] = [BitcoinWatcher(rt, BitcoinCoreClient(rt.settings.bitcoin_rpc_url))]
        return watchers[0].run(rt)

    listeners: list[ZmqWakeup] = []

    def start(wake: Callable[[], None]) -> None:
        if zmq_url:
            listeners.append(ZmqWakeup(zmq_url, wake))
            listeners[0].start()

    def close() -> None:
        for listener in listeners:
            listener.stop()
        for watcher in watchers:
            watcher.client.close()

    return Duty("watch-bitcoin", 1.0, run, close=close, start=start)
