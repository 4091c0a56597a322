"""Consensus checks of the transactions ``generateblock`` puts in a block (no mempool policy).

Bitcoin Core's ``generateblock`` appends the given transactions to an empty template and runs
``TestBlockValidity``: consensus rules only, so dust and zero-value outputs are fine, while a
missing input, a premature coinbase spend or a bad signature fail with RPC_VERIFY_ERROR (-25)
``TestBlockValidity failed: <reason>``. Nothing is stored when the check fails.
"""

from __future__ import annotations

from bitcoin.core import CTransaction, b2lx

from .chain import COINBASE_MATURITY, Chain, Coin
from .errors import SandboxBitcoinError, TransactionRejected
from .jsonenc import format_money_short
from .keys import verify_p2wpkh
from .mempool import _check_final, _check_structure

Outpoint = tuple[bytes, int]


class VerifyError(SandboxBitcoinError):
    code = -25  # RPC_VERIFY_ERROR


def _reason(tx: CTransaction, coins: list[Coin], chain: Chain) -> str | None:
    txid = b2lx(tx.GetTxid())
    try:
        _check_structure(tx)
    except TransactionRejected as exc:
        return "bad-cb-multiple" if exc.message == "coinbase" else exc.message
    try:
        _check_final(tx, coins, chain)
    except TransactionRejected:
        return "bad-txns-nonfinal, non-final transaction"
    value_in = sum(c.value for c in coins)
    value_out = sum(o.nValue for o in tx.vout)
    if value_in < value_out:
        return (
            f"bad-txns-in-belowout, value in ({format_money_short(value_in)}) < value out "
            f"({format_money_short(value_out)}) in transaction {txid}"
        )
    for i, coin in enumerate(coins):
        # Only P2WPKH can be verified here (all this chain mints); others are taken on trust.
        p2wpkh = coin.spk[:2] == b"\x00\x14" and len(coin.spk) == 22
        if p2wpkh and not verify_p2wpkh(tx, i, coin.spk[2:], coin.value):
            prev = tx.vin[i].prevout
            return (
                "block-script-verify-flag-failed (Signature must be zero for failed "
                f"CHECK(MULTI)SIG operation), input {i} of {txid} (wtxid "
                f"{b2lx(tx.GetHash())}), spending {b2lx(prev.hash)}:{prev.n}"
            )
    return None


def check_block_transactions(txs: list[CTransaction], chain: Chain) -> None:
    """Raise VerifyError when a block of ``txs`` on the tip would be invalid."""
    height = chain.height + 1
    created: dict[Outpoint, Coin] = {}
    spent: set[Outpoint] = set()
    for tx in txs:
        txid_b = tx.GetTxid()
        txid = b2lx(txid_b)
        if any((txid_b, n) in chain.utxo or (txid_b, n) in created for n in range(len(tx.vout))):
            raise VerifyError(
                "TestBlockValidity failed: bad-txns-BIP30, tried to overwrite transaction"
            )
        coins: list[Coin] = []
        for txin in tx.vin:
            op = (txin.prevout.hash, txin.prevout.n)
            coin = None if op in spent else created.get(op) or chain.utxo.get(op)
            if coin is None:
                raise VerifyError(
                    "TestBlockValidity failed: bad-txns-inputs-missingorspent, CheckTxInputs: "
                    f"inputs missing/spent in transaction {txid}"
                )
            if coin.coinbase and height - coin.height < COINBASE_MATURITY:
                raise VerifyError(
                    "TestBlockValidity failed: bad-txns-premature-spend-of-coinbase, tried to "
                    f"spend coinbase at depth {height - coin.height}"
                )
            coins.append(coin)
        reason = _reason(tx, coins, chain)
        if reason is not None:
            raise VerifyError(f"TestBlockValidity failed: {reason}")
        spent.update((txin.prevout.hash, txin.prevout.n) for txin in tx.vin)
        for n, out in enumerate(tx.vout):
            created[(txid_b, n)] = Coin(out.nValue, bytes(out.scriptPubKey), height, False)
