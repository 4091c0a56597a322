"""A funded key on the sandbox Bitcoin node that signs P2WPKH payments fast, for benchmarks.

Coins come from coinbases split into many equal outputs, so each payment is a one-input,
one-output transaction that never waits on another in the mempool (no ancestor chains).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

from bitcoin.core import COutPoint, CTransaction, CTxIn, CTxInWitness, CTxOut, CTxWitness, lx
from bitcoin.core.script import CScript, CScriptWitness

from sandbox.bitcoin.keys import p2wpkh_script, pubkey_of, sign_p2wpkh
from sandbox.bitcoin.node import RunningNode, start_node
from sandbox.bitcoin.scripts import address_to_script, classify
from settlement.chains.bitcoin_core import BitcoinCoreClient

COINBASE_SAT = 5_000_000_000
FANOUT = 1000  # outputs per split transaction (stays under the standard weight)
FEE_SAT = 500
RBF_SEQUENCE = 0xFFFFFFFD


def start_bench_node(datadir: Path, zmqpubsequence: str | None = None) -> RunningNode:
    """The sandbox node on a free port (its replies go out with TCP_NODELAY, like bitcoind's)."""
    return start_node(datadir, zmqpubsequence=zmqpubsequence)


def random_address() -> tuple[bytes, str]:
    """A P2WPKH script to a random key hash and its regtest address (nobody can spend it)."""
    script = b"\x00\x14" + os.urandom(20)
    return script, classify(script)[1] or ""


def _signed(
    secret: bytes, coins: Sequence[tuple[str, int, int]], outputs: Sequence[tuple[bytes, int]]
) -> str:
    vin = [CTxIn(COutPoint(lx(t), n), CScript(), RBF_SEQUENCE) for t, n, _v in coins]
    vout = [CTxOut(v, CScript(s)) for s, v in outputs]
    unsigned = CTransaction(vin, vout, nLockTime=0, nVersion=2)
    witness = [
        CTxInWitness(CScriptWitness(sign_p2wpkh(unsigned, i, secret, c[2])))
        for i, c in enumerate(coins)
    ]
    return str(CTransaction(vin, vout, 0, 2, CTxWitness(witness)).serialize().hex())


class Payer:
    """Holds `count` confirmed coins of `coin_sat` each and spends one per payment."""

    def __init__(self, client: BitcoinCoreClient, label: str = "bench") -> None:
        self.client = client
        self.secret = hashlib.sha256(f"cryptocity {label} payer".encode()).digest()
        self.script = p2wpkh_script(pubkey_of(self.secret))
        self.address = classify(self.script)[1] or ""
        self.coins: list[tuple[str, int, int]] = []

    def fund(self, count: int, coin_sat: int) -> None:
        """Mine coinbases to us, split them into `count` coins and confirm the splits."""
        splits = (count + FANOUT - 1) // FANOUT
        start = self.client.block_count() + 1
        self.client.call("generatetoaddress", 100 + splits, self.address)
        for offset in range(splits):
            block = self.client.block(self.client.block_hash(start + offset))
            coinbase = block.txs[0].txid
            n = min(FANOUT, count - offset * FANOUT)
            change = COINBASE_SAT - n * coin_sat - 100_000  # ~2 sat/vB for ~32 kvB
            raw = _signed(
                self.secret,
                [(coinbase, 0, COINBASE_SAT)],
                [(self.script, coin_sat)] * n + [(self.script, change)],
            )
            txid = self.client.call("sendrawtransaction", raw)
            self.coins += [(txid, vout, coin_sat) for vout in range(n)]
        self.mine(1)

    def mine(self, blocks: int = 1) -> list[str]:
        return list(self.client.call("generatetoaddress", blocks, self.address))

    def payment(self, script: bytes, amount_sat: int | None = None) -> str:
        """A signed transaction paying `amount_sat` (default: all but the fee) to `script`."""
        coin = self.coins.pop()
        amount = coin[2] - FEE_SAT if amount_sat is None else amount_sat
        outputs = [(script, amount)]
        change = coin[2] - amount - FEE_SAT
        if change > 1000:
            outputs.append((self.script, change))
        return _signed(self.secret, [coin], outputs)

    def pay_address(self, address: str, amount_sat: int) -> str:
        return self.payment(address_to_script(address), amount_sat)

    def broadcast_many(self, raws: Sequence[str], batch: int = 500) -> None:
        for start in range(0, len(raws), batch):
            results = self.client.batch(
                [("sendrawtransaction", [raw]) for raw in raws[start : start + batch]]
            )
            errors = [r for r in results if isinstance(r, Exception)]
            if errors:
                raise RuntimeError(f"sendrawtransaction failed: {errors[0]}")
