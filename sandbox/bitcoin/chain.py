"""Block store, UTXO set, tx index and chain selection (reorgs) for regtest.

Blocks are persisted as serialized bytes in ``<datadir>/blocks.sqlite``; the
UTXO set, undo data and tx index are rebuilt in memory on start.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import bitcoin
from bitcoin.core import CBlock as _CBlock
from bitcoin.core import (
    CoreRegTestParams,
    COutPoint,
    CTransaction,
    CTxIn,
    CTxInWitness,
    CTxOut,
    CTxWitness,
    Hash,
    b2lx,
    lx,
)
from bitcoin.core.script import CScript, CScriptWitness

from .errors import InvalidAddressOrKey, TransactionRejected

# Regtest everywhere; our own code never reads the global params (genesis is explicit).
bitcoin.SelectParams("regtest")

COIN = 100_000_000
COINBASE_MATURITY = 100
HALVING_INTERVAL = 150  # regtest
REGTEST_BITS = 0x207FFFFF
TARGET = 0x7FFFFF << (8 * (0x20 - 3))
WORK_PER_BLOCK = 2  # (2**256) // (TARGET + 1) for regtest bits
MAX_BLOCK_WEIGHT = 4_000_000
WITNESS_RESERVED = b"\x00" * 32


def subsidy(height: int) -> int:
    """Block subsidy in satoshis (50 BTC halving every 150 blocks on regtest)."""
    halvings = height // HALVING_INTERVAL
    return 0 if halvings >= 64 else (50 * COIN) >> halvings


def merkle_root(hashes: list[bytes]) -> bytes:
    """Bitcoin merkle root over internal-byte-order hashes."""
    layer = list(hashes)
    while len(layer) > 1:
        if len(layer) % 2:
            layer.append(layer[-1])
        layer = [Hash(layer[i] + layer[i + 1]) for i in range(0, len(layer), 2)]
    return layer[0]


@dataclass(slots=True)
class Coin:
    """An unspent output plus the facts needed for maturity checks."""

    value: int
    spk: bytes
    height: int
    coinbase: bool


@dataclass(slots=True)
class BlockIndex:
    """Everything known about one stored block."""

    hash: str
    prev: str | None
    height: int
    block: _CBlock
    raw: bytes
    chainwork: int
    seq: int
    invalid: bool = False
    undo: list[list[Coin]] | None = None  # spent coins per tx, once connected
    fees: list[int] | None = None
    stripped: int = -1  # cached size without witness data
    children: list[str] = field(default_factory=list)


class Chain:
    """Block tree with one active chain; callers hold the node lock."""

    def __init__(self, datadir: Path) -> None:
        datadir.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(str(datadir / "blocks.sqlite"), check_same_thread=False)
        # WAL + NORMAL: survives a killed process without an fsync per block.
        self.db.executescript(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
            "CREATE TABLE IF NOT EXISTS blocks"
            " (seq INTEGER PRIMARY KEY, hash TEXT UNIQUE, raw BLOB);"
            "CREATE TABLE IF NOT EXISTS invalid (hash TEXT PRIMARY KEY);"
            "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);"
        )
        self.index: dict[str, BlockIndex] = {}
        self.active: list[str] = []
        self.utxo: dict[tuple[bytes, int], Coin] = {}
        self.txindex: dict[str, str] = {}  # txid -> hash of the block that last connected it
        self.on_connect: list[Callable[[BlockIndex], None]] = []
        self.on_disconnect: list[Callable[[BlockIndex], None]] = []
        rows = self.db.execute("SELECT hash, raw FROM blocks ORDER BY seq").fetchall()
        self.fresh = not rows
        invalid = {r[0] for r in self.db.execute("SELECT hash FROM invalid")}
        if not rows:
            genesis = CoreRegTestParams.GENESIS_BLOCK
            self._store(genesis, genesis.serialize())
        else:
            for _h, raw in rows:
                self._add_index(_CBlock.deserialize(bytes(raw)), bytes(raw))
            for h in invalid:
                if h in self.index:
                    self.index[h].invalid = True
        genesis_hash = b2lx(CoreRegTestParams.GENESIS_BLOCK.GetHash())
        self._connect(self.index[genesis_hash])
        saved = self.db.execute("SELECT value FROM meta WHERE key='tip'").fetchone()
        self.activate_best_chain(prefer=saved[0] if saved else None)
        pruned = self.db.execute("SELECT value FROM meta WHERE key='pruned_upto'").fetchone()
        # Height of the last pruned block (-1: none). The bytes stay in blocks.sqlite (the UTXO
        # set is rebuilt from them on start); only the RPCs treat the blocks as pruned.
        self.pruned_upto = int(pruned[0]) if pruned else -1

    # -- storage -----------------------------------------------------------------
    def close(self) -> None:
        """Close the block database."""
        self.db.close()

    def _add_index(self, block: _CBlock, raw: bytes) -> BlockIndex:
        h = b2lx(block.GetHash())
        prev = None if block.hashPrevBlock == b"\x00" * 32 else b2lx(block.hashPrevBlock)
        parent = self.index.get(prev) if prev else None
        if prev and parent is None:
            raise InvalidAddressOrKey("prev-blk-not-found", -25)
        height = parent.height + 1 if parent else 0
        work = (parent.chainwork if parent else 0) + WORK_PER_BLOCK
        bi = BlockIndex(h, prev, height, block, raw, work, len(self.index))
        self.index[h] = bi
        if parent:
            parent.children.append(h)
        return bi

    def _store(self, block: _CBlock, raw: bytes) -> BlockIndex:
        bi = self._add_index(block, raw)
        self.db.execute("INSERT INTO blocks (hash, raw) VALUES (?, ?)", (bi.hash, raw))
        return bi

    def _save_tip(self) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta VALUES ('tip', ?)", (self.tip.hash,))
        self.db.commit()

    # -- queries -------------------------------------------------------------------
    @property
    def tip(self) -> BlockIndex:
        """Index entry of the active tip."""
        return self.index[self.active[-1]]

    @property
    def height(self) -> int:
        """Height of the active tip."""
        return len(self.active) - 1

    def in_active(self, bi: BlockIndex) -> bool:
        """True when the block is part of the active chain."""
        return bi.height < len(self.active) and self.active[bi.height] == bi.hash

    def lookup(self, blockhash: str) -> BlockIndex | None:
        """Index entry by display hash, or None."""
        return self.index.get(blockhash)

    def median_time_past(self, bi: BlockIndex) -> int:
        """Median time of the block and its 10 predecessors (BIP113)."""
        times: list[int] = []
        cur: BlockIndex | None = bi
        while cur is not None and len(times) < 11:
            times.append(cur.block.nTime)
            cur = self.index.get(cur.prev) if cur.prev else None
        return int(sorted(times)[len(times) // 2]) if times else 0

    def failed(self, bi: BlockIndex) -> bool:
        """True when the block or one of its ancestors is marked invalid."""
        cur: BlockIndex | None = bi
        while cur is not None:
            if cur.invalid:
                return True
            cur = self.index.get(cur.prev) if cur.prev else None
        return False

    def tips(self) -> list[BlockIndex]:
        """Blocks without children plus the active tip (for getchaintips)."""
        return [bi for bi in self.index.values() if not bi.children or bi.hash == self.tip.hash]

    # -- block building ---------------------------------------------------------------
    def make_block(self, spk: bytes, txs: list[CTransaction], fees: int) -> _CBlock:
        """Assemble a block on the tip paying subsidy + fees to ``spk``."""
        height = self.height + 1
        pushed = CScript([height]) if height > 16 else CScript([height, 0])
        cb_wit = CTxWitness([CTxInWitness(CScriptWitness([WITNESS_RESERVED]))])
        wtxids = [b"\x00" * 32] + [tx.GetHash() for tx in txs]
        commitment = Hash(merkle_root(wtxids) + WITNESS_RESERVED)
        coinbase = CTransaction(
            [CTxIn(COutPoint(), pushed, 0xFFFFFFFE)],
            [
                CTxOut(subsidy(height) + fees, CScript(spk)),
                CTxOut(0, CScript(b"\x6a\x24\xaa\x21\xa9\xed" + commitment)),
            ],
            nLockTime=height - 1,
            nVersion=2,
            witness=cb_wit,
        )
        vtx = [coinbase, *txs]
        root = merkle_root([tx.GetTxid() for tx in vtx])
        ntime = max(int(time.time()), self.median_time_past(self.tip) + 1)
        for nonce in range(1 << 32):
            block = _CBlock(0x20000000, lx(self.tip.hash), root, ntime, REGTEST_BITS, nonce, vtx)
            bhash = block.GetHash()
            # Skip known hashes: re-mining after invalidateblock would recreate the same block.
            if int.from_bytes(bhash, "little") <= TARGET and b2lx(bhash) not in self.index:
                return block
        raise RuntimeError("nonce space exhausted")

    def add_block(self, block: _CBlock) -> BlockIndex:
        """Store a new block and make the best chain active (may reorg)."""
        raw = block.serialize()
        h = b2lx(block.GetHash())
        if h in self.index:
            return self.index[h]
        if int.from_bytes(block.GetHash(), "little") > TARGET:
            raise TransactionRejected("high-hash")
        bi = self._store(block, raw)
        if bi.prev == self.tip.hash:
            try:  # fast path: extends the tip
                self._connect(bi)
            except TransactionRejected:
                self._mark_invalid(bi)
                raise
            self._save_tip()
        else:
            self.activate_best_chain()
        return bi

    # -- connect / disconnect ------------------------------------------------------------
    def _connect(self, bi: BlockIndex) -> None:
        height = bi.height
        spent: list[list[Coin]] = []
        fees: list[int] = []
        added: list[tuple[bytes, int]] = []
        try:
            for tx in bi.block.vtx:
                txid = tx.GetTxid()
                coins: list[Coin] = []
                if not tx.is_coinbase():
                    for txin in tx.vin:
                        key = (txin.prevout.hash, txin.prevout.n)
                        coin = self.utxo.pop(key, None)
                        if coin is None:
                            raise TransactionRejected("bad-txns-inputs-missingorspent")
                        coins.append(coin)
                        if coin.coinbase and height - coin.height < COINBASE_MATURITY:
                            raise TransactionRejected("bad-txns-premature-spend-of-coinbase")
                    fee = sum(c.value for c in coins) - sum(o.nValue for o in tx.vout)
                    if fee < 0:
                        raise TransactionRejected("bad-txns-in-belowout")
                    fees.append(fee)
                else:
                    fees.append(0)
                spent.append(coins)
                for n, out in enumerate(tx.vout):
                    # Genesis outputs and OP_RETURN outputs are never spendable.
                    if height == 0 or bytes(out.scriptPubKey[:1]) == b"\x6a":
                        continue
                    self.utxo[(txid, n)] = Coin(
                        out.nValue, bytes(out.scriptPubKey), height, tx.is_coinbase()
                    )
                    added.append((txid, n))
            cb_out = sum(o.nValue for o in bi.block.vtx[0].vout)
            if height > 0 and cb_out > subsidy(height) + sum(fees):
                raise TransactionRejected("bad-cb-amount")
        except TransactionRejected:
            for key in added:
                self.utxo.pop(key, None)
            for tx, coins in zip(bi.block.vtx, spent, strict=False):
                if not tx.is_coinbase():
                    for txin, coin in zip(tx.vin, coins, strict=False):
                        self.utxo[(txin.prevout.hash, txin.prevout.n)] = coin
            raise
        bi.undo, bi.fees = spent, fees
        for tx in bi.block.vtx:
            self.txindex[b2lx(tx.GetTxid())] = bi.hash
        self.active.append(bi.hash)
        for cb in self.on_connect:
            cb(bi)

    def _disconnect_tip(self) -> BlockIndex:
        bi = self.tip
        assert bi.undo is not None and bi.prev is not None
        for tx, coins in zip(reversed(bi.block.vtx), reversed(bi.undo), strict=True):
            txid = tx.GetTxid()
            for n in range(len(tx.vout)):
                self.utxo.pop((txid, n), None)
            for txin, coin in zip(tx.vin, coins, strict=False):
                self.utxo[(txin.prevout.hash, txin.prevout.n)] = coin
        self.active.pop()
        for cb in self.on_disconnect:
            cb(bi)
        return bi

    def _mark_invalid(self, bi: BlockIndex) -> None:
        bi.invalid = True
        self.db.execute("INSERT OR IGNORE INTO invalid VALUES (?)", (bi.hash,))
        self.db.commit()

    def activate_best_chain(self, prefer: str | None = None) -> None:
        """Switch to the valid chain with the most work (ties keep the current tip)."""
        while True:
            best = self.tip
            failed: set[str] = set()
            for bi in self.index.values():  # insertion order: parents before children
                if bi.invalid or (bi.prev is not None and bi.prev in failed):
                    failed.add(bi.hash)
                    continue
                better = bi.chainwork > best.chainwork or (
                    prefer is not None and bi.hash == prefer and best.chainwork == bi.chainwork
                )
                if better:
                    best = bi
            if best is self.tip:
                self._save_tip()
                return
            path: list[BlockIndex] = []
            cur = best
            while not self.in_active(cur):
                path.append(cur)
                cur = self.index[cur.prev]  # type: ignore[index]
            while self.tip.hash != cur.hash:
                self._disconnect_tip()
            for bi in reversed(path):
                try:
                    self._connect(bi)
                except TransactionRejected:
                    self._mark_invalid(bi)
                    break

    def invalidate(self, blockhash: str) -> None:
        """Core's invalidateblock: mark invalid, disconnect, pick the best remaining chain."""
        bi = self.index.get(blockhash)
        if bi is None:
            raise InvalidAddressOrKey("Block not found")
        if bi.prev is None:
            raise InvalidAddressOrKey("Cannot invalidate the genesis block", -8)
        self._mark_invalid(bi)
        if self.in_active(bi):
            while self.tip.hash != bi.prev:
                self._disconnect_tip()
        self.activate_best_chain()

    def reconsider(self, blockhash: str) -> None:
        """Core's reconsiderblock: clear failure marks on the block, ancestors, descendants."""
        bi = self.index.get(blockhash)
        if bi is None:
            raise InvalidAddressOrKey("Block not found")
        stack, marks = [bi], []
        while stack:
            cur = stack.pop()
            marks.append(cur)
            stack.extend(self.index[c] for c in cur.children)
        anc = self.index.get(bi.prev) if bi.prev else None
        while anc is not None:
            marks.append(anc)
            anc = self.index.get(anc.prev) if anc.prev else None
        for cur in marks:
            if cur.invalid:
                cur.invalid = False
                self.db.execute("DELETE FROM invalid WHERE hash = ?", (cur.hash,))
        self.db.commit()
        self.activate_best_chain()

    def prune(self, height: int) -> None:
        """Treat every block at or below ``height`` as pruned (never undone, like Core)."""
        if height > self.pruned_upto:
            self.pruned_upto = height
            self.db.execute("INSERT OR REPLACE INTO meta VALUES ('pruned_upto', ?)", (str(height),))
            self.db.commit()

    def has_data(self, bi: BlockIndex) -> bool:
        """False for a pruned block (its header stays known)."""
        return bi.height > self.pruned_upto

    def mediantime(self) -> int:
        """Median time past of the active tip."""
        return self.median_time_past(self.tip)

    def difficulty(self) -> float:
        """Difficulty of regtest bits 0x207fffff (constant)."""
        return 4.656542373906925e-10  # fixed regtest bits 0x207fffff
