"""Node state: chain + mempool + notifications behind one lock.

All chain-changing operations go through here so the mempool follows the
chain (mined txs leave, disconnected txs return, conflicts are evicted) and
ZMQ messages go out in bitcoind's order.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bitcoin.core import CBlock as _CBlock
from bitcoin.core import CTransaction, b2lx

from .chain import MAX_BLOCK_WEIGHT, BlockIndex, Chain
from .errors import AlreadyInChain, SandboxBitcoinError, TransactionError
from .mempool import Mempool, MempoolEntry
from .zmq_pub import ZmqPublisher


class NodeState:
    """The whole node; every public method takes ``self.lock``."""

    def __init__(
        self,
        datadir: Path,
        zmq_endpoints: dict[str, str | None] | None = None,
        txindex: bool = True,
        prune: bool = False,
    ) -> None:
        self.lock = threading.RLock()
        self.datadir = datadir
        self.txindex = txindex  # -txindex: getrawtransaction finds mined txs without a block hash
        self.prune = prune  # -prune=1: blocks up to chain.pruned_upto have no data
        self.started = time.time()
        self.chain = Chain(datadir)
        self.mempool = Mempool()
        self.zmq = ZmqPublisher(zmq_endpoints or {}, self.chain.fresh)
        self.json_cache: dict[tuple[str, int], str] = {}  # (blockhash, verbosity) -> tx array
        self._disconnected: list[BlockIndex] = []
        self.stop_hooks: list[Callable[[], None]] = []  # run by the ``stop`` RPC
        self.chain.on_connect.append(self._block_connected)
        self.chain.on_disconnect.append(self._block_disconnected)
        self._load_mempool()

    def close(self) -> None:
        """Save the mempool (like bitcoind's mempool.dat), release database and sockets."""
        with self.lock:
            # Entry times travel with the transactions, as in mempool.dat.
            saved = [
                {"hex": self.mempool.entries[t].raw.hex(), "time": self.mempool.entries[t].time}
                for t in self.mempool.block_order()
            ]
            tmp = self.datadir / "mempool.json.tmp"
            tmp.write_text(json.dumps(saved))
            tmp.replace(self.datadir / "mempool.json")
            self.zmq.close()
            self.chain.close()

    def _load_mempool(self) -> None:
        # Re-validate saved txs against the current tip; no ZMQ messages (none before start).
        path = self.datadir / "mempool.json"
        if not path.exists():
            return
        for item in json.loads(path.read_text()):
            raw_hex, entry_time = (
                (item, None) if isinstance(item, str) else (item["hex"], item["time"])
            )
            raw = bytes.fromhex(raw_hex)
            tx = CTransaction.deserialize(raw)
            try:
                verdict = self.mempool.check(tx, raw, self.chain)
            except SandboxBitcoinError:
                continue
            if not verdict.conflicts:
                entry = self.mempool.make_entry(tx, raw, verdict, self.chain.height)
                if entry_time is not None:
                    entry.time = int(entry_time)
                self.mempool.add(entry)
                self.mempool.next_sequence()

    # -- chain hooks (called with the lock held) -------------------------------------------
    def _block_connected(self, bi: BlockIndex) -> None:
        for verbosity in (2, 3):  # fee/prevout appear once undo data exists
            self.json_cache.pop((bi.hash, verbosity), None)
        for tx in bi.block.vtx:
            self.zmq.rawtx(tx.serialize())
        mined = {b2lx(tx.GetTxid()) for tx in bi.block.vtx[1:]}
        conflicts: list[str] = []
        for tx in bi.block.vtx[1:]:
            txid = b2lx(tx.GetTxid())
            if txid in self.mempool.entries:
                self.mempool.remove(txid)
                self.mempool.next_sequence()  # consumed, never published (as in Core)
            for txin in tx.vin:
                spender = self.mempool.spends.get((txin.prevout.hash, txin.prevout.n))
                if spender is not None and spender not in mined:
                    conflicts.append(spender)
        self._evict(conflicts)
        self.zmq.block_event(bi.hash, "C")
        self.zmq.hashblock(bi.hash)

    def _block_disconnected(self, bi: BlockIndex) -> None:
        for tx in bi.block.vtx:
            self.zmq.rawtx(tx.serialize())
        self.zmq.block_event(bi.hash, "D")
        self._disconnected.append(bi)

    def _evict(self, txids: list[str]) -> None:
        for txid in reversed(self.mempool.with_descendants(txids)):
            self.mempool.remove(txid)
            self.zmq.tx_event(txid, "R", self.mempool.next_sequence())

    def _after_reorg(self) -> None:
        """Return txs of disconnected blocks to the mempool, then drop invalid entries."""
        blocks, self._disconnected = self._disconnected, []
        for bi in reversed(blocks):  # oldest disconnected block first
            for tx in bi.block.vtx[1:]:
                raw = tx.serialize()
                try:
                    verdict = self.mempool.check(tx, raw, self.chain)
                except SandboxBitcoinError:
                    continue
                if verdict.conflicts:
                    continue
                self._add(tx, raw, verdict)
        # Entries may now spend missing or immature coins (e.g. a vanished coinbase).
        bad: list[str] = []
        spend_height = self.chain.height + 1
        for txid in self.mempool.block_order():
            entry = self.mempool.entries[txid]
            for txin in entry.tx.vin:
                op = (txin.prevout.hash, txin.prevout.n)
                coin = self.chain.utxo.get(op) or self.mempool.output(op)
                if coin is None or (coin.coinbase and spend_height - coin.height < 100):
                    bad.append(txid)
                    break
        self._evict(bad)

    # -- transactions ---------------------------------------------------------------------
    def _add(self, tx: CTransaction, raw: bytes, verdict: Any) -> MempoolEntry:
        entry = self.mempool.make_entry(tx, raw, verdict, self.chain.height)
        self.mempool.add(entry)
        self.zmq.rawtx(raw)
        self.zmq.tx_event(entry.txid, "A", self.mempool.next_sequence())
        return entry

    def submit(self, tx: CTransaction, raw: bytes, max_fee_rate: int | None = None) -> str:
        """sendrawtransaction: validate, replace conflicts, add. Returns the txid."""
        with self.lock:
            txid: str = b2lx(tx.GetTxid())
            existing = self.mempool.entries.get(txid)
            if existing is not None:
                return txid  # Core returns the txid of an already-known tx
            txid_b = tx.GetTxid()
            if any((txid_b, n) in self.chain.utxo for n in range(len(tx.vout))):
                raise AlreadyInChain("Transaction outputs already in utxo set")
            verdict = self.mempool.check(tx, raw, self.chain)
            if max_fee_rate and verdict.fee * 1000 > max_fee_rate * verdict.vsize:
                raise TransactionError("max-fee-exceeded")
            if verdict.conflicts:
                for old in reversed(verdict.conflicts):
                    self.mempool.remove(old)
                    self.zmq.tx_event(old, "R", self.mempool.next_sequence())
            self._add(tx, raw, verdict)
            return txid

    # -- blocks ---------------------------------------------------------------------------
    def template(self) -> tuple[list[CTransaction], int]:
        """Mempool txs (parents first) that fit in a block, and their fees."""
        txs: list[CTransaction] = []
        fees, weight = 0, 4000
        for txid in self.mempool.block_order():
            entry = self.mempool.entries[txid]
            if weight + entry.weight > MAX_BLOCK_WEIGHT:
                break
            weight += entry.weight
            fees += entry.fee
            txs.append(entry.tx)
        return txs, fees

    def mine(
        self,
        count: int,
        spk: bytes,
        txs: list[CTransaction] | None = None,
        fees: int | None = None,
    ) -> list[str]:
        """Mine ``count`` blocks on the tip (from the mempool unless ``txs`` is given).

        The coinbase collects the fees of its transactions unless ``fees`` says otherwise.
        """
        hashes: list[str] = []
        with self.lock:
            for _ in range(count):
                if txs is None:
                    block_txs, block_fees = self.template()
                else:
                    block_txs, block_fees = txs, self.fees_of(txs)
                if fees is not None:
                    block_fees = fees
                block = self.chain.make_block(spk, block_txs, block_fees)
                self.add_block(block)
                hashes.append(b2lx(block.GetHash()))
        return hashes

    def fees_of(self, txs: list[CTransaction]) -> int:
        """Total fee of ``txs`` (each may spend outputs of earlier ones)."""
        view: dict[tuple[bytes, int], int] = {}
        total = 0
        for tx in txs:
            value_in = 0
            for txin in tx.vin:
                op = (txin.prevout.hash, txin.prevout.n)
                coin = self.chain.utxo.get(op)
                value_in += coin.value if coin else view.get(op, 0)
            total += value_in - sum(o.nValue for o in tx.vout)
            for n, out in enumerate(tx.vout):
                view[(tx.GetTxid(), n)] = out.nValue
        return total

    def add_block(self, block: _CBlock) -> None:
        """Store a block, follow the best chain and update the mempool."""
        with self.lock:
            self._disconnected = []
            self.chain.add_block(block)
            self._after_reorg()

    def invalidate(self, blockhash: str) -> None:
        """invalidateblock, then return disconnected txs to the mempool."""
        with self.lock:
            self._disconnected = []
            self.chain.invalidate(blockhash)
            self._after_reorg()

    def reconsider(self, blockhash: str) -> None:
        """reconsiderblock; the chain with more work wins."""
        with self.lock:
            self._disconnected = []
            self.chain.reconsider(blockhash)
            self._after_reorg()
