"""Mining, chain-control, utility and control RPCs (generate*, invalidate/reconsider, stop...)."""

from __future__ import annotations

import threading
import time
from typing import Any

from bitcoin.core import b2lx

from .blockcheck import check_block_transactions
from .errors import DeserializationError, InvalidAddressOrKey, InvalidParameter
from .rpc import Param, help_text
from .rpc_chain import _simple, find_block, parse_hash
from .scripts import address_to_script, classify
from .state import NodeState
from .txcodec import decode_tx_hex

_NOARG = "{...}    (json object)"


def _spk_for(address: Any) -> bytes:
    try:
        return address_to_script(address)
    except (ValueError, TypeError):
        raise InvalidAddressOrKey("Error: Invalid address") from None


def generatetoaddress(state: NodeState, args: list[Any]) -> Any:
    """RPC ``generatetoaddress`` with Bitcoin Core's parameters and result shape."""
    nblocks = int(args[0])
    return state.mine(nblocks, _spk_for(args[1]))


def generateblock(state: NodeState, args: list[Any]) -> Any:
    """RPC ``generateblock`` with Bitcoin Core's parameters and result shape.

    Like Core: a 64-hex item is a mempool txid, anything else a raw transaction; the block is
    checked by consensus rules only (dust and zero-value outputs are fine), and the coinbase
    pays the bare subsidy (Core builds it before appending the transactions).
    """
    spk = _spk_for(args[0])
    txs = []
    with state.lock:
        for item in args[1]:
            if isinstance(item, str) and _is_txid(item):
                entry = state.mempool.entries.get(item.lower())
                if entry is None:
                    raise InvalidAddressOrKey(f"Transaction {item} not in mempool.")
                txs.append(entry.tx)
                continue
            try:
                tx = decode_tx_hex(item)
            except DeserializationError:
                raise DeserializationError(
                    f"Transaction decode failed for {item}. Make sure the "
                    "tx has at least one input."
                ) from None
            txs.append(tx)
        check_block_transactions(txs, state.chain)
        if len(args) > 2 and args[2] is False:
            block = state.chain.make_block(spk, txs, 0)
            return {"hash": b2lx(block.GetHash()), "hex": block.serialize().hex()}
        return {"hash": state.mine(1, spk, txs, fees=0)[0]}


def _is_txid(item: str) -> bool:
    if len(item) != 64:
        return False
    try:
        bytes.fromhex(item)
    except ValueError:
        return False
    return True


def invalidateblock(state: NodeState, args: list[Any]) -> Any:
    """RPC ``invalidateblock`` with Bitcoin Core's parameters and result shape."""
    blockhash = parse_hash(args[0], "blockhash")
    with state.lock:
        find_block(state, blockhash)
        state.invalidate(blockhash)
    return None


def reconsiderblock(state: NodeState, args: list[Any]) -> Any:
    """RPC ``reconsiderblock`` with Bitcoin Core's parameters and result shape."""
    blockhash = parse_hash(args[0], "blockhash")
    with state.lock:
        find_block(state, blockhash)
        state.reconsider(blockhash)
    return None


def estimatesmartfee(state: NodeState, args: list[Any]) -> Any:
    """RPC ``estimatesmartfee`` with Bitcoin Core's parameters and result shape."""
    target = int(args[0])
    if target < 1 or target > 1008:
        raise InvalidParameter("Invalid conf_target, must be between 1 and 1008")
    return {"errors": ["Insufficient data or no feerate found"], "blocks": 1}


def validateaddress(state: NodeState, args: list[Any]) -> Any:
    """RPC ``validateaddress`` with Bitcoin Core's parameters and result shape."""
    try:
        spk = address_to_script(args[0])
    except (ValueError, TypeError):
        return {
            "isvalid": False,
            "error_locations": [],
            "error": "Invalid or unsupported Segwit (Bech32) or Base58 encoding.",
        }
    kind, _addr = classify(spk)
    res: dict[str, Any] = {
        "isvalid": True,
        "address": args[0],
        "scriptPubKey": spk.hex(),
        "isscript": kind in ("scripthash", "witness_v0_scripthash"),
        "iswitness": kind.startswith("witness") or kind == "anchor",
    }
    if res["iswitness"]:
        res["witness_version"] = 0 if spk[0] == 0 else spk[0] - 0x50
        res["witness_program"] = spk[2:].hex()
    return res


def stop(state: NodeState, args: list[Any]) -> Any:
    """RPC ``stop`` with Bitcoin Core's parameters and result shape."""
    # Like bitcoind, answer first and shut down a moment later, so the caller gets its reply.
    for hook in state.stop_hooks:
        timer = threading.Timer(0.2, hook)
        timer.daemon = True
        timer.start()
    return "Bitcoin Core stopping"


_simple(
    "generatetoaddress",
    generatetoaddress,
    'generatetoaddress nblocks "address" ( maxtries )',
    "Mine to a specified address and return the block hashes.",
    "[...]    (json array) hashes of blocks generated",
    "Generating",
    [Param("nblocks", "num", True), Param("address", "str", True), Param("maxtries", "num")],
    [
        "nblocks     (numeric, required) How many blocks are generated.",
        "address     (string, required) The address to send the newly generated bitcoin to.",
        "maxtries    (numeric, optional, default=1000000) How many iterations to try.",
    ],
    '11 "myaddress"',
    '11, "myaddress"',
)
_simple(
    "generateblock",
    generateblock,
    'generateblock "output" ["rawtx/txid",...] ( submit )',
    "Mine a set of ordered transactions to a specified address and return the block hash.",
    _NOARG,
    "Generating",
    [Param("output", "str", True), Param("transactions", "arr", True), Param("submit", "bool")],
    [
        "output          (string, required) The address to send the newly generated bitcoin to.",
        "transactions    (json array, required) An array of hex strings which are either txids "
        "or raw transactions.",
        "submit          (boolean, optional, default=true) Whether to "
        "submit the block before the RPC call returns.",
    ],
    "\"myaddress\" '[]'",
    '"myaddress", []',
)
for _name, _fn, _desc in (
    (
        "invalidateblock",
        invalidateblock,
        "Permanently marks a block as invalid, as if it violated a consensus rule.",
    ),
    (
        "reconsiderblock",
        reconsiderblock,
        "Removes invalidity status of a block, its "
        "ancestors and its descendants, reconsider them for activation.",
    ),
):
    _simple(
        _name,
        _fn,
        f'{_name} "blockhash"',
        _desc,
        "null    (json null)",
        params=[Param("blockhash", "str", True)],
        args=[
            "blockhash    (string, required) the hash of the block to mark as invalid"
            if _name == "invalidateblock"
            else "blockhash    (string, required) the hash of the block to reconsider"
        ],
        example='"blockhash"',
        ex_params='"blockhash"',
    )
_simple(
    "estimatesmartfee",
    estimatesmartfee,
    'estimatesmartfee conf_target ( "estimate_mode" )',
    "Estimates the approximate fee per kilobyte needed for a transaction to begin "
    "confirmation within conf_target blocks if possible.",
    _NOARG,
    "Util",
    [Param("conf_target", "num", True), Param("estimate_mode", "str")],
    [
        "conf_target      (numeric, required) Confirmation target in blocks (1 - 1008)",
        'estimate_mode    (string, optional, default="economical") The fee estimate mode.',
    ],
    "6",
    "6",
)
_simple(
    "validateaddress",
    validateaddress,
    'validateaddress "address"',
    "Return information about the given bitcoin address.",
    _NOARG,
    "Util",
    [Param("address", "str", True)],
    ["address    (string, required) The bitcoin address to validate"],
    '"address"',
    '"address"',
)
_simple(
    "uptime",
    lambda s, a: int(time.time() - s.started),
    "uptime",
    "Returns the total uptime of the server.",
    "n    (numeric) The number of seconds that the server has been running",
    "Control",
)
_simple(
    "help",
    lambda s, a: help_text(a[0] if a else None),
    'help ( "command" )',
    "List all commands, or get help for a specified command.",
    '"str"    (string) The help text',
    "Control",
    [Param("command", "str")],
    ["command    (string, optional, default=all commands) The command to get help on"],
)
_simple(
    "stop",
    stop,
    "stop",
    "Request a graceful shutdown of Bitcoin Core.",
    "\"str\"    (string) A string with the content 'Bitcoin Core stopping'",
    "Control",
)
_simple(
    "getblockcount",
    lambda s, a: s.chain.height,
    "getblockcount",
    "Returns the height of the most-work fully-validated chain.\nThe genesis block has height 0.",
    "n    (numeric) The current block count",
)
_simple(
    "getbestblockhash",
    lambda s, a: s.chain.tip.hash,
    "getbestblockhash",
    "Returns the hash of the best (tip) block in the most-work fully-validated chain.",
    '"hex"    (string) the block hash, hex-encoded',
)
_simple(
    "getdifficulty",
    lambda s, a: s.chain.difficulty(),
    "getdifficulty",
    "Returns the proof-of-work difficulty as a multiple of the minimum difficulty.",
    "n    (numeric) the proof-of-work difficulty as a multiple of the minimum difficulty.",
)
_simple(
    "getconnectioncount",
    lambda s, a: 0,
    "getconnectioncount",
    "Returns the number of connections to other nodes.",
    "n    (numeric) The connection count",
    "Network",
)
_simple(
    "getzmqnotifications",
    lambda s, a: s.zmq.notifications(),
    "getzmqnotifications",
    "Returns information about the active ZeroMQ notifications.",
    "[...]    (json array)",
    "Zmq",
)
_simple(
    "getindexinfo",
    lambda s, a: (
        {"txindex": {"synced": True, "best_block_height": s.chain.height}} if s.txindex else {}
    ),
    'getindexinfo ( "index_name" )',
    "Returns the status of one or all available indices currently running in the node.",
    _NOARG,
    "Util",
    [Param("index_name", "str")],
)
