"""Mempool: entries, in-mempool dependency graph and acceptance policy.

Policy follows Bitcoin Core where it matters for payments: missing/spent and
immature inputs, fee checks, P2WPKH signature checks and full-RBF replacement
(higher absolute fee, enough extra fee to relay, higher feerate).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from bitcoin.core import CTransaction, b2lx

from .chain import COINBASE_MATURITY, Chain, Coin
from .errors import AlreadyInChain, TransactionError, TransactionRejected
from .jsonenc import format_money_short
from .keys import verify_p2wpkh
from .txcodec import tx_sizes

MAX_MONEY = 21_000_000 * 100_000_000
MAX_STANDARD_WEIGHT = 400_000
MIN_RELAY_SAT_PER_KVB = 1000
INCREMENTAL_SAT_PER_KVB = 1000
MAX_REPLACEMENTS = 100

Outpoint = tuple[bytes, int]


@dataclass(slots=True)
class MempoolEntry:
    """One unconfirmed transaction and its graph links."""

    tx: CTransaction
    raw: bytes
    txid: str
    wtxid: str
    fee: int
    size: int
    vsize: int
    weight: int
    time: int
    height: int
    parents: set[str] = field(default_factory=set)
    children: set[str] = field(default_factory=set)


@dataclass(slots=True)
class Verdict:
    """Result of a successful policy check."""

    fee: int
    size: int
    vsize: int
    weight: int
    conflicts: list[str]
    parents: set[str]


class Mempool:
    """Unconfirmed transactions keyed by txid (insertion ordered)."""

    def __init__(self) -> None:
        self.entries: dict[str, MempoolEntry] = {}
        self.spends: dict[Outpoint, str] = {}
        self.sequence = 1  # Core's mempool_sequence starts at 1

    def next_sequence(self) -> int:
        """Use up and return the next mempool sequence number."""
        seq = self.sequence
        self.sequence += 1
        return seq

    def output(self, op: Outpoint) -> Coin | None:
        """An output created by a mempool tx (height -1 marks 'unconfirmed')."""
        entry = self.entries.get(b2lx(op[0]))
        if entry is None or op[1] >= len(entry.tx.vout):
            return None
        out = entry.tx.vout[op[1]]
        return Coin(out.nValue, bytes(out.scriptPubKey), -1, False)

    # -- graph -------------------------------------------------------------------------
    def ancestors(self, txid: str) -> set[str]:
        """All in-mempool ancestors of ``txid``."""
        return self._closure(txid, "parents")

    def descendants(self, txid: str) -> set[str]:
        """All in-mempool descendants of ``txid``."""
        return self._closure(txid, "children")

    def _closure(self, txid: str, edge: str) -> set[str]:
        """Every entry reachable from ``txid`` along ``edge`` ("parents" or "children")."""
        seen: set[str] = set()
        stack = list(getattr(self.entries[txid], edge))
        while stack:
            cur = stack.pop()
            if cur not in seen:
                seen.add(cur)
                stack.extend(getattr(self.entries[cur], edge))
        return seen

    def add(self, entry: MempoolEntry) -> None:
        """Insert an entry and link it to in-mempool parents."""
        for txin in entry.tx.vin:
            self.spends[(txin.prevout.hash, txin.prevout.n)] = entry.txid
            parent = b2lx(txin.prevout.hash)
            if parent in self.entries:
                entry.parents.add(parent)
                self.entries[parent].children.add(entry.txid)
        self.entries[entry.txid] = entry

    def remove(self, txid: str) -> MempoolEntry:
        """Remove one entry (callers remove descendants first or re-link)."""
        entry = self.entries.pop(txid)
        for txin in entry.tx.vin:
            op = (txin.prevout.hash, txin.prevout.n)
            if self.spends.get(op) == txid:
                del self.spends[op]
        for p in entry.parents:
            if p in self.entries:
                self.entries[p].children.discard(txid)
        for c in entry.children:
            if c in self.entries:
                self.entries[c].parents.discard(txid)
        return entry

    def with_descendants(self, txids: list[str]) -> list[str]:
        """``txids`` plus all their descendants, parents before children."""
        if not txids:
            return []  # the common case; avoids sorting the whole mempool
        wanted: set[str] = set()
        for t in txids:
            if t in self.entries:
                wanted.add(t)
                wanted |= self.descendants(t)
        return [t for t in self.block_order() if t in wanted]

    def block_order(self) -> list[str]:
        """All txids in an order where parents precede children."""
        order: list[str] = []
        done: set[str] = set()
        for txid in self.entries:
            stack = [(txid, False)]
            while stack:
                cur, expanded = stack.pop()
                if cur in done:
                    continue
                if expanded:
                    done.add(cur)
                    order.append(cur)
                    continue
                stack.append((cur, True))
                stack.extend((p, False) for p in self.entries[cur].parents if p not in done)
        return order

    # -- policy ------------------------------------------------------------------------
    def check(self, tx: CTransaction, raw: bytes, chain: Chain) -> Verdict:
        """Validate ``tx`` for entry; raises a Core-coded error on rejection."""
        txid = b2lx(tx.GetTxid())
        _check_structure(tx)
        size, vsize, weight = tx_sizes(tx, raw)
        for out in tx.vout:
            if out.nValue < _dust_threshold(bytes(out.scriptPubKey)):
                raise TransactionRejected("dust")
        if weight > MAX_STANDARD_WEIGHT:
            raise TransactionRejected("tx-size")
        if tx.nVersion < 1 or tx.nVersion > 3:
            raise TransactionRejected("version")
        if txid in self.entries:
            raise TransactionRejected("txn-already-in-mempool", -27)
        txid_b = tx.GetTxid()
        if any((txid_b, n) in chain.utxo for n in range(len(tx.vout))):
            raise AlreadyInChain("txn-already-known")
        conflicts: list[str] = []
        coins: list[Coin] = []
        parents: set[str] = set()
        spend_height = chain.height + 1
        for txin in tx.vin:
            op = (txin.prevout.hash, txin.prevout.n)
            spender = self.spends.get(op)
            if spender is not None and spender not in conflicts:
                conflicts.append(spender)
            coin = chain.utxo.get(op) or self.output(op)
            if coin is None:
                raise TransactionError("bad-txns-inputs-missingorspent")
            if coin.height < 0:
                parents.add(b2lx(op[0]))
            if coin.coinbase and spend_height - coin.height < COINBASE_MATURITY:
                depth = spend_height - coin.height
                raise TransactionRejected(
                    "bad-txns-premature-spend-of-coinbase, "
                    f"tried to spend coinbase at depth {depth}"
                )
            coins.append(coin)
        _check_final(tx, coins, chain)
        value_in = sum(c.value for c in coins)
        value_out = sum(o.nValue for o in tx.vout)
        if value_in < value_out:
            raise TransactionRejected(
                f"bad-txns-in-belowout, value in ({format_money_short(value_in)}) "
                f"< value out ({format_money_short(value_out)})"
            )
        fee = value_in - value_out
        min_fee = MIN_RELAY_SAT_PER_KVB * vsize // 1000
        if fee < min_fee:
            raise TransactionRejected(f"min relay fee not met, {fee} < {min_fee}")
        all_conflicts = self.with_descendants(conflicts)
        if parents & set(all_conflicts):
            raise TransactionRejected(
                f"bad-txns-spends-conflicting-tx, {txid} spends conflicting transaction"
            )
        _check_scripts(tx, coins)
        if conflicts:
            self._check_replacement(txid, fee, vsize, conflicts, all_conflicts)
        return Verdict(fee, size, vsize, weight, all_conflicts, parents)

    def _check_replacement(
        self, txid: str, fee: int, vsize: int, direct: list[str], everything: list[str]
    ) -> None:
        if len(everything) > MAX_REPLACEMENTS:
            raise TransactionRejected(
                f"too many potential replacements, rejecting replacement "
                f"{txid}; too many potential replacements "
                f"({len(everything)} > {MAX_REPLACEMENTS})"
            )
        old_fees = sum(self.entries[t].fee for t in everything)
        if fee < old_fees:
            raise TransactionRejected(
                f"insufficient fee, rejecting replacement {txid}, less fees than conflicting "
                f"txs; {format_money_short(fee)} < {format_money_short(old_fees)}"
            )
        extra, needed = fee - old_fees, INCREMENTAL_SAT_PER_KVB * vsize // 1000
        if extra < needed:
            raise TransactionRejected(
                f"insufficient fee, rejecting replacement {txid}, not enough additional fees to "
                f"relay; {format_money_short(extra)} < {format_money_short(needed)}"
            )
        for t in direct:
            old = self.entries[t]
            if fee * old.vsize <= old.fee * vsize:
                raise TransactionRejected("insufficient feerate: does not improve feerate diagram")

    def make_entry(
        self, tx: CTransaction, raw: bytes, verdict: Verdict, height: int
    ) -> MempoolEntry:
        """Build the mempool entry for an accepted transaction."""
        return MempoolEntry(
            tx,
            raw,
            b2lx(tx.GetTxid()),
            b2lx(tx.GetHash()),
            verdict.fee,
            verdict.size,
            verdict.vsize,
            verdict.weight,
            int(time.time()),
            height,
        )


def _check_structure(tx: CTransaction) -> None:
    # Core's CheckTransaction, context-free consensus checks.
    if not tx.vin:
        raise TransactionRejected("bad-txns-vin-empty")
    if not tx.vout:
        raise TransactionRejected("bad-txns-vout-empty")
    total = 0
    for out in tx.vout:
        if out.nValue < 0:
            raise TransactionRejected("bad-txns-vout-negative")
        if out.nValue > MAX_MONEY:
            raise TransactionRejected("bad-txns-vout-toolarge")
        total += out.nValue
        if total > MAX_MONEY:
            raise TransactionRejected("bad-txns-txouttotal-toolarge")
    seen = set()
    for txin in tx.vin:
        op = (txin.prevout.hash, txin.prevout.n)
        if op in seen:
            raise TransactionRejected("bad-txns-inputs-duplicate")
        seen.add(op)
    if tx.is_coinbase():
        raise TransactionRejected("coinbase")


def _check_scripts(tx: CTransaction, coins: list[Coin]) -> None:
    # Only witness v0 keyhash spends are supported: that is all this chain mints
    # and all the shopper wallet produces; anything else is non-standard here.
    for i, coin in enumerate(coins):
        spk = coin.spk
        if len(spk) == 22 and spk[:2] == b"\x00\x14":
            if not verify_p2wpkh(tx, i, spk[2:], coin.value):
                raise TransactionRejected(
                    "mandatory-script-verify-flag-failed (Signature must be zero for failed "
                    "CHECK(MULTI)SIG operation)"
                )
        else:
            raise TransactionRejected("bad-txns-nonstandard-inputs")


def _dust_threshold(spk: bytes) -> int:
    # Core's GetDustThreshold at the default 3 sat/vB dust relay fee.
    if spk[:1] == b"\x6a":
        return 0
    if len(spk) >= 4 and (spk[0] == 0 or 0x51 <= spk[0] <= 0x60) and spk[1] == len(spk) - 2:
        return 3 * (len(spk) + 9 + 32 + 4 + 1 + 26 + 4)  # witness: 294 (P2WPKH), 330 (P2TR)
    return 3 * (len(spk) + 9 + 32 + 4 + 1 + 107 + 4)  # 546 for P2PKH


def _check_final(tx: CTransaction, coins: list[Coin], chain: Chain) -> None:
    # IsFinalTx for the next block, then BIP68 relative lock-times (height and time based).
    next_height = chain.height + 1
    mtp = chain.mediantime()
    if tx.nLockTime and any(txin.nSequence != 0xFFFFFFFF for txin in tx.vin):
        limit = next_height if tx.nLockTime < 500_000_000 else mtp
        if tx.nLockTime >= limit:
            raise TransactionRejected("non-final")
    if tx.nVersion < 2:
        return
    for txin, coin in zip(tx.vin, coins, strict=True):
        seq = txin.nSequence
        if seq & (1 << 31):
            continue
        coin_height = next_height if coin.height < 0 else coin.height
        if seq & (1 << 22):
            base = chain.median_time_past(chain.index[chain.active[max(coin_height - 1, 0)]])
            if base + ((seq & 0xFFFF) << 9) > mtp:
                raise TransactionRejected("non-BIP68-final")
        elif coin_height + (seq & 0xFFFF) > next_height:
            raise TransactionRejected("non-BIP68-final")
