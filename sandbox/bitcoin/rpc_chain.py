"""Blockchain RPCs: getblockchaininfo, getblock*, getchaintips, gettxout, ..."""

from __future__ import annotations

import time
from typing import Any

from bitcoin.core import b2lx

from .chain import TARGET, BlockIndex
from .errors import InvalidAddressOrKey, InvalidParameter, MiscError, TypeErrorRPC
from .jsonenc import Amount, RawJSON, dumps
from .rpc import Method, Param, json_type, register
from .scripts import script_pubkey_json
from .state import NodeState
from .txcodec import stripped_size, tx_to_json

WARNINGS = ["This is a CryptoCity sandbox regtest node (Bitcoin Core stand-in), not Bitcoin Core"]


def core_help(sig: str, desc: str, args: list[str], result: str, example: str, params: str) -> str:
    """Help text laid out like Bitcoin Core's RPCHelpMan output."""
    name = sig.split(" ", 1)[0]
    text = f"{sig}\n\n{desc}\n"
    if args:
        text += "\nArguments:\n" + "\n".join(f"{i + 1}. {a}" for i, a in enumerate(args)) + "\n"
    cli_args = f" {example}" if example else ""
    text += f"\nResult:\n{result}\n\nExamples:\n> bitcoin-cli {name}{cli_args}\n"
    text += (
        '> curl --user myusername --data-binary \'{"jsonrpc": "2.0", "id": "curltest", '
        f'"method": "{name}", "params": [{params}]}}\' -H \'content-type: application/json\''
        " http://127.0.0.1:8332/\n"
    )
    return text


def parse_hash(value: Any, name: str) -> str:
    """Core's ParseHashV: 64 hex chars, else -8."""
    if not isinstance(value, str):
        raise TypeErrorRPC(f"JSON value of type {json_type(value)} is not of expected type string")
    if len(value) != 64:
        raise InvalidParameter(f"{name} must be of length 64 (not {len(value)}, for '{value}')")
    try:
        bytes.fromhex(value)
    except ValueError:
        raise InvalidParameter(f"{name} must be hexadecimal string (not '{value}')") from None
    return value.lower()


def parse_verbosity(value: Any, default: int) -> int:
    """Core's ParseVerbosity: number or bool (true=1)."""
    if value is None:
        return default
    if isinstance(value, bool):
        return 1 if value else 0
    if json_type(value) != "number":
        raise TypeErrorRPC(f"JSON value of type {json_type(value)} is not of expected type number")
    return int(value)


def find_block(state: NodeState, blockhash: str) -> BlockIndex:
    """Index entry for ``blockhash`` or Core's -5 "Block not found"."""
    bi = state.chain.lookup(blockhash)
    if bi is None:
        raise InvalidAddressOrKey("Block not found")
    return bi


def header_json(state: NodeState, bi: BlockIndex) -> dict[str, Any]:
    """Fields shared by getblockheader and getblock."""
    chain = state.chain
    blk = bi.block
    active = chain.in_active(bi)
    res: dict[str, Any] = {
        "hash": bi.hash,
        "confirmations": chain.height - bi.height + 1 if active else -1,
        "height": bi.height,
        "version": blk.nVersion,
        "versionHex": f"{blk.nVersion & 0xFFFFFFFF:08x}",
        "merkleroot": b2lx(blk.hashMerkleRoot),
        "time": blk.nTime,
        "mediantime": chain.median_time_past(bi),
        "nonce": blk.nNonce,
        "bits": f"{blk.nBits:08x}",
        "target": f"{TARGET:064x}",
        "difficulty": chain.difficulty(),
        "chainwork": f"{bi.chainwork:064x}",
        "nTx": len(blk.vtx),
    }
    if bi.prev:
        res["previousblockhash"] = bi.prev
    if active and bi.height < chain.height:
        res["nextblockhash"] = chain.active[bi.height + 1]
    return res


def _block_txs_json(state: NodeState, bi: BlockIndex, verbosity: int) -> RawJSON:
    # Decoding thousands of txs is the slow part of getblock 2/3: cache the text.
    key = (bi.hash, verbosity)
    cached = state.json_cache.get(key)
    if cached is None:
        parts = []
        for i, tx in enumerate(bi.block.vtx):
            fee = prevouts = None
            if bi.undo is not None and not tx.is_coinbase():
                fee = bi.fees[i] if bi.fees else None
                if verbosity >= 3:
                    prevouts = [
                        {
                            "generated": c.coinbase,
                            "height": c.height,
                            "value": Amount(c.value),
                            "scriptPubKey": script_pubkey_json(c.spk),
                        }
                        for c in bi.undo[i]
                    ]
            parts.append(dumps(tx_to_json(tx, None, prevouts, fee)))
        cached = "[" + ",".join(parts) + "]"
        if len(state.json_cache) > 64:
            state.json_cache.clear()
        state.json_cache[key] = cached
    return RawJSON(cached)


def getblock(state: NodeState, args: list[Any]) -> Any:
    """RPC ``getblock`` with Bitcoin Core's parameters and result shape."""
    blockhash = parse_hash(args[0], "blockhash")
    verbosity = parse_verbosity(args[1] if len(args) > 1 else None, 1)
    with state.lock:
        bi = find_block(state, blockhash)
        if not state.chain.has_data(bi):
            raise MiscError("Block not available (pruned data)")
        if verbosity <= 0:
            return bi.raw.hex()
        res = header_json(state, bi)
        cb = bi.block.vtx[0]
        if bi.stripped < 0:
            ntx = len(bi.block.vtx)
            varint = 1 if ntx < 0xFD else 3 if ntx <= 0xFFFF else 5
            bi.stripped = 80 + varint + sum(stripped_size(tx) for tx in bi.block.vtx)
        res["strippedsize"] = bi.stripped
        res["size"] = len(bi.raw)
        res["weight"] = res["strippedsize"] * 3 + len(bi.raw)
        cbj: dict[str, Any] = {
            "version": cb.nVersion,
            "locktime": cb.nLockTime,
            "sequence": cb.vin[0].nSequence,
            "coinbase": bytes(cb.vin[0].scriptSig).hex(),
        }
        if cb.wit.vtxinwit and cb.wit.vtxinwit[0].scriptWitness.stack:
            cbj["witness"] = "".join(bytes(w).hex() for w in cb.wit.vtxinwit[0].scriptWitness.stack)
        res["coinbase_tx"] = cbj
        if verbosity == 1:
            res["tx"] = [b2lx(tx.GetTxid()) for tx in bi.block.vtx]
        else:
            res["tx"] = _block_txs_json(state, bi, min(verbosity, 3))
        return res


def getblockheader(state: NodeState, args: list[Any]) -> Any:
    """RPC ``getblockheader`` with Bitcoin Core's parameters and result shape."""
    blockhash = parse_hash(args[0], "hash")
    verbose = True if len(args) < 2 or args[1] is None else bool(args[1])
    with state.lock:
        bi = find_block(state, blockhash)
        if not verbose:
            return bi.raw[:80].hex()
        return header_json(state, bi)


def getblockhash(state: NodeState, args: list[Any]) -> Any:
    """RPC ``getblockhash`` with Bitcoin Core's parameters and result shape."""
    height = int(args[0])
    with state.lock:
        if height < 0 or height > state.chain.height:
            raise InvalidParameter("Block height out of range")
        return state.chain.active[height]


def getblockchaininfo(state: NodeState, args: list[Any]) -> Any:
    """RPC ``getblockchaininfo`` with Bitcoin Core's parameters and result shape."""
    with state.lock:
        chain = state.chain
        tip = chain.tip
        info: dict[str, Any] = {
            "chain": "regtest",
            "blocks": chain.height,
            "headers": chain.height,
            "bestblockhash": tip.hash,
            "bits": f"{tip.block.nBits:08x}",
            "target": f"{TARGET:064x}",
            "difficulty": chain.difficulty(),
            "time": tip.block.nTime,
            "mediantime": chain.mediantime(),
            "verificationprogress": 1.0 if chain.height else 2.005380612657253e-06,
            "initialblockdownload": chain.height == 0 or tip.block.nTime < time.time() - 86400,
            "chainwork": f"{tip.chainwork:064x}",
            "size_on_disk": sum(len(b.raw) + 8 for b in chain.index.values() if chain.has_data(b)),
            "pruned": state.prune,
        }
        if state.prune:
            # -prune=1 is manual pruning: no target size, so no "prune_target_size" either.
            info["pruneheight"] = chain.pruned_upto + 1
            info["automatic_pruning"] = False
        info["warnings"] = list(WARNINGS)
        return info


MIN_BLOCKS_TO_KEEP = 288  # Core never prunes the last 288 blocks
PRUNE_AFTER_HEIGHT = 100  # regtest with -fastprune (the sandbox prunes block by block)


def pruneblockchain(state: NodeState, args: list[Any]) -> Any:
    """RPC ``pruneblockchain`` with Bitcoin Core's checks and result."""
    height = int(args[0])
    with state.lock:
        chain = state.chain
        if not state.prune:
            raise MiscError("Cannot prune blocks because node is not in prune mode.")
        if height < 0:
            raise InvalidParameter("Negative block height.")
        if height > 1_000_000_000:  # a UNIX time: up to the first block newer than it less 2 h
            at = next(
                (
                    h
                    for h, bh in enumerate(chain.active)
                    if chain.index[bh].block.nTime >= height - 7200
                ),
                None,
            )
            if at is None:
                raise InvalidParameter(
                    "Could not find block with at least the specified timestamp."
                )
            height = at
        if chain.height < PRUNE_AFTER_HEIGHT:
            raise MiscError("Blockchain is too short for pruning.")
        if height > chain.height:
            raise InvalidParameter("Blockchain is shorter than the attempted prune height.")
        chain.prune(min(height, chain.height - MIN_BLOCKS_TO_KEEP))
        return chain.pruned_upto


def getchaintips(state: NodeState, args: list[Any]) -> Any:
    """RPC ``getchaintips`` with Bitcoin Core's parameters and result shape."""
    with state.lock:
        chain = state.chain
        out = []
        for bi in sorted(chain.tips(), key=lambda b: (-b.height, b.hash)):
            fork = bi
            while not chain.in_active(fork):
                fork = chain.index[fork.prev]  # type: ignore[index]
            if chain.in_active(bi) and bi.hash == chain.tip.hash:
                status = "active"
            elif chain.failed(bi):
                status = "invalid"
            elif bi.undo is not None:
                status = "valid-fork"
            else:
                status = "valid-headers"
            out.append(
                {
                    "height": bi.height,
                    "hash": bi.hash,
                    "branchlen": bi.height - fork.height,
                    "status": status,
                }
            )
        return out


def gettxout(state: NodeState, args: list[Any]) -> Any:
    """RPC ``gettxout`` with Bitcoin Core's parameters and result shape."""
    txid = parse_hash(args[0], "txid")
    n = int(args[1])
    include_mempool = True if len(args) < 3 or args[2] is None else bool(args[2])
    with state.lock:
        op = (bytes.fromhex(txid)[::-1], n)
        coin = state.chain.utxo.get(op)
        if include_mempool:
            if op in state.mempool.spends:
                return None
            if coin is None:
                coin = state.mempool.output(op)
        if coin is None:
            return None
        confs = 0 if coin.height < 0 else state.chain.height - coin.height + 1
        return {
            "bestblock": state.chain.tip.hash,
            "confirmations": confs,
            "value": Amount(coin.value),
            "scriptPubKey": script_pubkey_json(coin.spk),
            "coinbase": coin.coinbase,
        }


def getnetworkinfo(state: NodeState, args: list[Any]) -> Any:
    """RPC ``getnetworkinfo`` with Bitcoin Core's parameters and result shape."""
    limits = {"backlog": 0, "count_tok": 420, "size_tok": 12000000}
    nets = [
        {
            "name": n,
            "limited": n not in ("ipv4", "ipv6"),
            "reachable": n in ("ipv4", "ipv6"),
            "proxy": "",
            "proxy_randomize_credentials": False,
        }
        for n in ("ipv4", "ipv6", "onion", "i2p", "cjdns")
    ]
    return {
        "version": 319900,
        "subversion": "/Satoshi:31.99.0(cryptocity-sandbox)/",
        "protocolversion": 70017,
        "localservices": "0000000000000c09",
        "localservicesnames": ["NETWORK", "WITNESS", "NETWORK_LIMITED", "P2P_V2"],
        "localrelay": True,
        "timeoffset": 0,
        "tx_send_rate": 14,
        "inv_buckets": {"inbound": dict(limits), "outbound": dict(limits)},
        "networkactive": True,
        "connections": 0,
        "connections_in": 0,
        "connections_out": 0,
        "networks": nets,
        "relayfee": Amount(100),
        "incrementalfee": Amount(100),
        "localaddresses": [],
        "warnings": list(WARNINGS),
    }


def _simple(
    name: str,
    func: Any,
    sig: str,
    desc: str,
    result: str,
    cat: str = "Blockchain",
    params: list[Param] | None = None,
    args: list[str] | None = None,
    example: str = "",
    ex_params: str = "",
) -> None:
    register(
        Method(
            name,
            params or [],
            core_help(sig, desc, args or [], result, example, ex_params),
            func,
            cat,
        )
    )


_simple(
    "getblock",
    getblock,
    'getblock "blockhash" ( verbosity )',
    "If verbosity is 0, returns a string that is serialized, hex-encoded data for block "
    "'hash'.\nIf verbosity is 1, returns an Object with information about block <hash>.\n"
    "If verbosity is 2, returns an Object with information about block <hash> and "
    "information about each transaction.\nIf verbosity is 3, returns an Object with "
    "information about block <hash> and information about each transaction, including "
    "prevout information for inputs (only for unpruned blocks in the current best chain).",
    "{...}    (json object)",
    params=[Param("blockhash", "str", True), Param("verbosity", "num", skip_check=True)],
    args=[
        "blockhash    (string, required) The block hash",
        "verbosity    (numeric, optional, default=1) 0 for hex-encoded data, 1 for a JSON "
        "object, 2 for JSON object with transaction data, and 3 for JSON object with "
        "transaction data including prevout information for inputs",
    ],
    example='"00000000c937983704a73af28acdec37b049d214adbda81d7e2a3dd146f6ed09"',
    ex_params='"00000000c937983704a73af28acdec37b049d214adbda81d7e2a3dd146f6ed09"',
)
_simple(
    "getblockheader",
    getblockheader,
    'getblockheader "blockhash" ( verbose )',
    "If verbose is false, returns a string that is serialized, hex-encoded data for "
    "blockheader 'hash'.\nIf verbose is true, returns an Object with information about "
    "blockheader <hash>.",
    "{...}    (json object)",
    params=[Param("blockhash", "str", True), Param("verbose", "bool")],
    args=[
        "blockhash    (string, required) The block hash",
        "verbose      (boolean, optional, default=true) true for a json object, false for "
        "the hex-encoded data",
    ],
    example='"00000000c937983704a73af28acdec37b049d214adbda81d7e2a3dd146f6ed09"',
    ex_params='"00000000c937983704a73af28acdec37b049d214adbda81d7e2a3dd146f6ed09"',
)
_simple(
    "getblockhash",
    getblockhash,
    "getblockhash height",
    "Returns hash of block in best-block-chain at height provided.",
    '"hex"    (string) The block hash',
    params=[Param("height", "num", True)],
    args=["height    (numeric, required) The height index"],
    example="1000",
    ex_params="1000",
)
_simple(
    "getblockchaininfo",
    getblockchaininfo,
    "getblockchaininfo",
    "Returns an object containing various state info regarding blockchain processing.",
    "{...}    (json object)",
)
_simple(
    "pruneblockchain",
    pruneblockchain,
    "pruneblockchain height",
    "Attempts to delete block and undo data up to a specified height or timestamp, if "
    "eligible for pruning.\nRequires `-prune` to be enabled.",
    "n    (numeric) Height of the last block pruned",
    params=[Param("height", "num", True)],
    args=[
        "height    (numeric, required) The block height to prune up to. May be set to a "
        "discrete height, or to a UNIX epoch time\nto prune blocks whose block time is at "
        "least 2 hours older than the provided timestamp."
    ],
    example="1000",
    ex_params="1000",
)
_simple(
    "getchaintips",
    getchaintips,
    "getchaintips",
    "Return information about all known tips in the block tree, including the main chain "
    "as well as orphaned branches.",
    "[...]    (json array)",
)
_simple(
    "gettxout",
    gettxout,
    'gettxout "txid" n ( include_mempool )',
    "Returns details about an unspent transaction output.",
    "null    (json null) If the UTXO was not found",
    params=[Param("txid", "str", True), Param("n", "num", True), Param("include_mempool", "bool")],
    args=[
        "txid               (string, required) The transaction id",
        "n                  (numeric, required) vout number",
        "include_mempool    (boolean, optional, default=true) Whether to include the mempool.",
    ],
    example='"txid" 1',
    ex_params='"txid", 1',
)
_simple(
    "getnetworkinfo",
    getnetworkinfo,
    "getnetworkinfo",
    "Returns an object containing various state info regarding P2P networking.",
    "{...}    (json object)",
    "Network",
)
