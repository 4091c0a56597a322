"""Mempool and raw-transaction RPCs."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from bitcoin.core import b2lx

from .errors import (
    InvalidAddressOrKey,
    InvalidParameter,
    MiscError,
    SandboxBitcoinError,
    TransactionError,
    TypeErrorRPC,
)
from .jsonenc import Amount
from .mempool import MempoolEntry
from .rpc import Param, json_type
from .rpc_chain import _simple, parse_hash, parse_verbosity
from .state import NodeState
from .txcodec import decode_tx_hex, tx_to_json

NOT_FOUND_TX = (
    "No such mempool or blockchain transaction. Use gettransaction for wallet transactions."
)
NOT_IN_MEMPOOL = (  # bitcoind without -txindex, asked without a block hash
    "No such mempool transaction. Use -txindex or provide a block hash to enable blockchain "
    "transaction queries. Use gettransaction for wallet transactions."
)


def parse_amount(value: Any) -> int:
    """Core's AmountFromValue (BTC number or string) -> satoshis."""
    if json_type(value) not in ("number", "string"):
        raise TypeErrorRPC("Amount is not a number or string")
    try:
        dec = Decimal(str(value))
    except InvalidOperation:
        raise TypeErrorRPC("Invalid amount") from None
    if dec < 0:
        raise TypeErrorRPC("Amount out of range")
    sats = dec * 100_000_000
    if sats != sats.to_integral_value():
        raise TypeErrorRPC("Invalid amount")
    return int(sats)


def entry_json(state: NodeState, e: MempoolEntry) -> dict[str, Any]:
    """getmempoolentry / verbose getrawmempool object."""
    pool = state.mempool
    anc = [pool.entries[t] for t in pool.ancestors(e.txid)]
    desc = [pool.entries[t] for t in pool.descendants(e.txid)]
    fee = Amount(e.fee)
    return {
        "vsize_adjusted": e.vsize,
        "vsize": e.vsize,
        "vsize_bip141": e.vsize,
        "weight": e.weight,
        "time": e.time,
        "height": e.height,
        "descendantcount": len(desc) + 1,
        "descendantsize": e.vsize + sum(d.vsize for d in desc),
        "ancestorcount": len(anc) + 1,
        "ancestorsize": e.vsize + sum(a.vsize for a in anc),
        "wtxid": e.wtxid,
        "chunkweight": e.weight,
        "fees": {
            "base": fee,
            "modified": fee,
            "ancestor": Amount(e.fee + sum(a.fee for a in anc)),
            "descendant": Amount(e.fee + sum(d.fee for d in desc)),
            "chunk": fee,
        },
        "depends": sorted(e.parents),
        "spentby": sorted(e.children),
        "unbroadcast": True,
    }


def getrawmempool(state: NodeState, args: list[Any]) -> Any:
    """RPC ``getrawmempool`` with Bitcoin Core's parameters and result shape."""
    verbose = bool(args[0]) if args and args[0] is not None else False
    with_seq = bool(args[1]) if len(args) > 1 and args[1] is not None else False
    with state.lock:
        if verbose and with_seq:
            raise InvalidParameter("Verbose results cannot contain mempool sequence values.")
        if verbose:
            return {t: entry_json(state, e) for t, e in state.mempool.entries.items()}
        txids = list(state.mempool.entries)
        if with_seq:
            return {"txids": txids, "mempool_sequence": state.mempool.sequence}
        return txids


def getmempoolentry(state: NodeState, args: list[Any]) -> Any:
    """RPC ``getmempoolentry`` with Bitcoin Core's parameters and result shape."""
    txid = parse_hash(args[0], "parameter 1")
    with state.lock:
        e = state.mempool.entries.get(txid)
        if e is None:
            raise InvalidAddressOrKey("Transaction not in mempool")
        return entry_json(state, e)


def getmempoolinfo(state: NodeState, args: list[Any]) -> Any:
    """RPC ``getmempoolinfo`` with Bitcoin Core's parameters and result shape."""
    with state.lock:
        es = list(state.mempool.entries.values())
        return {
            "loaded": True,
            "size": len(es),
            "bytes": sum(e.vsize for e in es),
            "usage": sum(e.size * 4 + 336 for e in es),
            "total_fee": Amount(sum(e.fee for e in es)),
            "maxmempool": 300000000,
            "mempoolminfee": Amount(100),
            "minrelaytxfee": Amount(100),
            "incrementalrelayfee": Amount(100),
            "unbroadcastcount": len(es),
            "permitbaremultisig": True,
            "maxdatacarriersize": 100000,
            "limitclustercount": 64,
            "limitclustersize": 101000,
            "optimal": True,
        }


def getrawtransaction(state: NodeState, args: list[Any]) -> Any:
    """RPC ``getrawtransaction`` with Bitcoin Core's parameters and result shape."""
    txid = parse_hash(args[0], "parameter 1")
    verbosity = parse_verbosity(args[1] if len(args) > 1 else None, 0)
    blockhash = (
        parse_hash(args[2], "parameter 3") if len(args) > 2 and args[2] is not None else None
    )
    with state.lock:
        chain = state.chain
        if txid == b2lx(chain.index[chain.active[0]].block.vtx[0].GetTxid()):
            raise InvalidAddressOrKey(
                "The genesis block coinbase is not considered an ordinary "
                "transaction and cannot be retrieved"
            )
        if blockhash is None and txid in state.mempool.entries:
            e = state.mempool.entries[txid]
            if verbosity <= 0:
                return e.raw.hex()
            return {"vsize_adjusted": e.vsize, **tx_to_json(e.tx, e.raw)}
        if blockhash is not None:
            bi = chain.lookup(blockhash)
            if bi is None:
                raise InvalidAddressOrKey("Block hash not found")
            if not chain.has_data(bi):
                raise MiscError("Block not available")
        else:
            where = chain.txindex.get(txid) if state.txindex else None
            if where is None:
                raise InvalidAddressOrKey(NOT_FOUND_TX if state.txindex else NOT_IN_MEMPOOL)
            bi = chain.index[where]
        pos = next((i for i, tx in enumerate(bi.block.vtx) if b2lx(tx.GetTxid()) == txid), None)
        if pos is None:
            raise InvalidAddressOrKey(
                "No such transaction found in the provided block. Use "
                "gettransaction for wallet transactions."
                if blockhash
                else NOT_FOUND_TX
            )
        tx = bi.block.vtx[pos]
        if verbosity <= 0:
            return tx.serialize().hex()
        fee = prevouts = None
        if verbosity >= 2 and bi.undo is not None and not tx.is_coinbase():
            fee = bi.fees[pos] if bi.fees else None
            prevouts = [
                {
                    "generated": c.coinbase,
                    "height": c.height,
                    "value": Amount(c.value),
                    "scriptPubKey": _spk(c.spk),
                }
                for c in bi.undo[pos]
            ]
        body = tx_to_json(tx, None, prevouts, fee)
        active = chain.in_active(bi)
        res: dict[str, Any] = {"in_active_chain": active} if blockhash else {}
        res.update(body)
        res["blockhash"] = bi.hash
        if active:
            res["confirmations"] = chain.height - bi.height + 1
            res["time"] = bi.block.nTime
            res["blocktime"] = bi.block.nTime
        else:
            res["confirmations"] = 0
        return res


def _spk(spk: bytes) -> dict[str, Any]:
    from .scripts import script_pubkey_json

    return script_pubkey_json(spk)


def sendrawtransaction(state: NodeState, args: list[Any]) -> Any:
    """RPC ``sendrawtransaction`` with Bitcoin Core's parameters and result shape."""
    tx = decode_tx_hex(args[0])
    max_rate = 10_000_000 if len(args) < 2 or args[1] is None else parse_amount(args[1])
    try:
        return state.submit(tx, bytes.fromhex(args[0]), max_rate)
    except TransactionError as exc:
        if exc.message == "max-fee-exceeded":
            raise TransactionError(
                "Fee exceeds maximum configured by user (e.g. -maxtxfee, maxfeerate)"
            ) from None
        raise


def testmempoolaccept(state: NodeState, args: list[Any]) -> Any:
    """RPC ``testmempoolaccept`` with Bitcoin Core's parameters and result shape."""
    raws = args[0]
    if not 1 <= len(raws) <= 25:
        raise InvalidParameter("Array must contain between 1 and 25 transactions.")
    txs = [decode_tx_hex(r) for r in raws]
    out = []
    with state.lock:
        for raw_hex, tx in zip(raws, txs, strict=True):
            res: dict[str, Any] = {"txid": b2lx(tx.GetTxid()), "wtxid": b2lx(tx.GetHash())}
            try:
                v = state.mempool.check(tx, bytes.fromhex(raw_hex), state.chain)
            except SandboxBitcoinError as exc:
                details = exc.message
                reason = details.split(",", 1)[0]
                if reason == "bad-txns-inputs-missingorspent":
                    reason = details = "missing-inputs"
                res.update({"allowed": False, "reject-reason": reason, "reject-details": details})
            else:
                res.update(
                    {
                        "allowed": True,
                        "vsize": v.vsize,
                        "fees": {
                            "base": Amount(v.fee),
                            "effective-feerate": Amount(v.fee * 1000 // v.vsize),
                            "effective-includes": [res["wtxid"]],
                        },
                    }
                )
            out.append(res)
    return out


def decoderawtransaction(state: NodeState, args: list[Any]) -> Any:
    """RPC ``decoderawtransaction`` with Bitcoin Core's parameters and result shape."""
    body = tx_to_json(decode_tx_hex(args[0]))
    body.pop("hex")
    return body


_NOARG = "{...}    (json object)"
_simple(
    "getrawmempool",
    getrawmempool,
    "getrawmempool ( verbose mempool_sequence )",
    "Returns all transaction ids in memory pool as a json array of string transaction ids.",
    "[...]    (json array)",
    params=[Param("verbose", "bool"), Param("mempool_sequence", "bool")],
    args=[
        "verbose             (boolean, optional, default=false) True for a json object, "
        "false for array of transaction ids",
        "mempool_sequence    (boolean, optional, default=false) If verbose=false, returns "
        "a json object with transaction list and mempool sequence number attached.",
    ],
    example="true",
    ex_params="true",
)
_simple(
    "getmempoolentry",
    getmempoolentry,
    'getmempoolentry "txid"',
    "Returns mempool data for given transaction",
    _NOARG,
    params=[Param("txid", "str", True)],
    args=["txid    (string, required) The transaction id (must be in mempool)"],
    example='"mytxid"',
    ex_params='"mytxid"',
)
_simple(
    "getmempoolinfo",
    getmempoolinfo,
    "getmempoolinfo",
    "Returns details on the active state of the TX memory pool.",
    _NOARG,
)
_simple(
    "getrawtransaction",
    getrawtransaction,
    'getrawtransaction "txid" ( verbosity "blockhash" )',
    "By default, this call only returns a transaction if it is in the mempool. If -txindex "
    "is enabled and no blockhash argument is passed, it will return the transaction if it "
    "is in the mempool or any block.",
    '"str"    (string) The serialized transaction',
    "Rawtransactions",
    [
        Param("txid", "str", True),
        Param("verbosity", "num", skip_check=True),
        Param("blockhash", "str"),
    ],
    [
        "txid         (string, required) The transaction id",
        "verbosity    (numeric, optional, default=0) 0 for hex-encoded data, 1 for a JSON "
        "object, and 2 for JSON object with fee and prevout",
        "blockhash    (string, optional) The block in which to look for the transaction",
    ],
    '"mytxid"',
    '"mytxid"',
)
_simple(
    "sendrawtransaction",
    sendrawtransaction,
    'sendrawtransaction "hexstring" ( maxfeerate maxburnamount )',
    "Submit a raw transaction (serialized, hex-encoded) to local node and network.",
    '"hex"    (string) The transaction hash in hex',
    "Rawtransactions",
    [
        Param("hexstring", "str", True),
        Param("maxfeerate", "amount"),
        Param("maxburnamount", "amount"),
    ],
    [
        "hexstring        (string, required) The hex string of the raw transaction",
        'maxfeerate       (numeric or string, optional, default="0.10") Reject transactions '
        "whose fee rate is higher than the specified value, expressed in BTC/kvB.",
        'maxburnamount    (numeric or string, optional, default="0") Reject transactions with '
        "provably unspendable outputs (e.g. 'datacarrier' outputs that use the OP_RETURN "
        "opcode) greater than the specified value, expressed in BTC.",
    ],
    '"signedhex"',
    '"signedhex"',
)
_simple(
    "testmempoolaccept",
    testmempoolaccept,
    'testmempoolaccept ["rawtx",...] ( maxfeerate )',
    "Returns result of mempool acceptance tests indicating if raw transaction(s) "
    "(serialized, hex-encoded) would be accepted by mempool.",
    "[...]    (json array)",
    "Rawtransactions",
    [Param("rawtxs", "arr", True), Param("maxfeerate", "amount")],
    [
        "rawtxs        (json array, required) An array of hex strings of raw transactions.",
        'maxfeerate    (numeric or string, optional, default="0.10") Reject transactions whose '
        "fee rate is higher than the specified value, expressed in BTC/kvB",
    ],
    "'[\"signedhex\"]'",
    '["signedhex"]',
)
_simple(
    "decoderawtransaction",
    decoderawtransaction,
    'decoderawtransaction "hexstring" ( iswitness )',
    "Return a JSON object representing the serialized, hex-encoded transaction.",
    _NOARG,
    "Rawtransactions",
    [Param("hexstring", "str", True), Param("iswitness", "bool")],
    [
        "hexstring    (string, required) The transaction hex string",
        "iswitness    (boolean, optional, default=depends on heuristic tests) Whether the "
        "transaction hex is a serialized witness transaction.",
    ],
    '"hexstring"',
    '"hexstring"',
)
