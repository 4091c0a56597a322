"""Transaction decoding and Core-shaped JSON for transactions."""

from __future__ import annotations

import io
from typing import Any

from bitcoin.core import CTransaction, b2lx

from .errors import DeserializationError
from .jsonenc import Amount
from .scripts import script_asm, script_pubkey_json

_SIGHASH_NAMES = {
    1: "ALL",
    2: "NONE",
    3: "SINGLE",
    0x81: "ALL|ANYONECANPAY",
    0x82: "NONE|ANYONECANPAY",
    0x83: "SINGLE|ANYONECANPAY",
}


def decode_tx_hex(hexstr: Any) -> CTransaction:
    """Parse raw tx hex; any failure is Core's -22 'TX decode failed'."""
    msg = "TX decode failed. Make sure the tx has at least one input."
    try:
        tx = CTransaction.deserialize(bytes.fromhex(hexstr))
    except Exception as exc:
        raise DeserializationError(msg) from exc
    if not tx.vin:
        raise DeserializationError(msg)
    return tx


def stripped_size(tx: CTransaction) -> int:
    """Size of the serialization without witness data."""
    buf = io.BytesIO()
    tx.stream_serialize(buf, include_witness=False)
    return len(buf.getvalue())


def tx_sizes(tx: CTransaction, raw: bytes | None = None) -> tuple[int, int, int]:
    """(size, vsize, weight)."""
    size = len(raw) if raw is not None else len(tx.serialize())
    weight = stripped_size(tx) * 3 + size
    return size, (weight + 3) // 4, weight


def _sig_asm(script: bytes) -> str:
    # scriptSig ASM decodes a trailing sighash byte of DER signatures like Core.
    asm = script_asm(script)
    parts = []
    for tok in asm.split(" "):
        if len(tok) >= 18 and tok.startswith("30") and all(c in "0123456789abcdef" for c in tok):
            ht = int(tok[-2:], 16)
            if ht in _SIGHASH_NAMES and int(tok[2:4], 16) * 2 + 6 == len(tok):
                tok = tok[:-2] + f"[{_SIGHASH_NAMES[ht]}]"
        parts.append(tok)
    return " ".join(parts) if script else ""


def tx_to_json(
    tx: CTransaction,
    raw: bytes | None = None,
    prevouts: list[dict[str, Any]] | None = None,
    fee: int | None = None,
) -> dict[str, Any]:
    """Core's TxToUniv: txid..vout, optional fee, hex. ``prevouts`` adds vin prevout."""
    raw = raw if raw is not None else tx.serialize()
    size, vsize, weight = tx_sizes(tx, raw)
    vin: list[dict[str, Any]] = []
    wits = tx.wit.vtxinwit
    for i, txin in enumerate(tx.vin):
        entry: dict[str, Any]
        if tx.is_coinbase():
            entry = {"coinbase": bytes(txin.scriptSig).hex()}
        else:
            entry = {
                "txid": b2lx(txin.prevout.hash),
                "vout": txin.prevout.n,
                "scriptSig": {
                    "asm": _sig_asm(bytes(txin.scriptSig)),
                    "hex": bytes(txin.scriptSig).hex(),
                },
            }
        if i < len(wits) and wits[i].scriptWitness.stack:
            entry["txinwitness"] = [bytes(w).hex() for w in wits[i].scriptWitness.stack]
        if prevouts is not None and not tx.is_coinbase():
            entry["prevout"] = prevouts[i]
        entry["sequence"] = txin.nSequence
        vin.append(entry)
    vout = [
        {
            "value": Amount(o.nValue),
            "n": n,
            "scriptPubKey": script_pubkey_json(bytes(o.scriptPubKey)),
        }
        for n, o in enumerate(tx.vout)
    ]
    result: dict[str, Any] = {
        "txid": b2lx(tx.GetTxid()),
        "hash": b2lx(tx.GetHash()),
        "version": tx.nVersion,
        "size": size,
        "vsize": vsize,
        "weight": weight,
        "locktime": tx.nLockTime,
        "vin": vin,
        "vout": vout,
    }
    if fee is not None:
        result["fee"] = Amount(fee)
    result["hex"] = raw.hex()
    return result
