"""Benchmark: getblock verbosity 2 on a block with ``tx_count`` transactions.

Usage: ``python -m sandbox.bitcoin.bench_block [TX_COUNT]`` or ``run(tx_count)`` from code.
"""

from __future__ import annotations

import base64
import hashlib
import json
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from bitcoin.core import COutPoint, CTransaction, CTxIn, CTxInWitness, CTxOut, CTxWitness, lx
from bitcoin.core.script import CScript, CScriptWitness

from .keys import p2wpkh_script, pubkey_of, sign_p2wpkh
from .node import start_node
from .scripts import classify

FANOUT = 1000  # outputs per funding tx (stays under the 400k standard weight)
RUNS = 5


def _signed(
    secret: bytes, coins: list[tuple[str, int, int]], outputs: list[tuple[bytes, int]]
) -> str:
    vin = [CTxIn(COutPoint(lx(t), n), CScript(), 0xFFFFFFFD) for t, n, _v in coins]
    vout = [CTxOut(v, CScript(s)) for s, v in outputs]
    unsigned = CTransaction(vin, vout, nLockTime=0, nVersion=2)
    wit = [
        CTxInWitness(CScriptWitness(sign_p2wpkh(unsigned, i, secret, c[2])))
        for i, c in enumerate(coins)
    ]
    return str(CTransaction(vin, vout, 0, 2, CTxWitness(wit)).serialize().hex())


def run(tx_count: int = 4000) -> dict[str, Any]:
    """Build a ``tx_count``-transaction block on a fresh node and time getblock verbosity 2."""
    secret = hashlib.sha256(b"bench-block").digest()
    spk = p2wpkh_script(pubkey_of(secret))
    address = classify(spk)[1]
    with tempfile.TemporaryDirectory(prefix="btc-bench-") as tmp:
        node = start_node(Path(tmp))
        url = f"http://127.0.0.1:{node.port}/"
        auth = "Basic " + base64.b64encode(f"{node.rpcuser}:{node.rpcpassword}".encode()).decode()

        def post(payload: Any) -> tuple[Any, int, float]:
            """POST one JSON-RPC payload; returns (reply, body size, milliseconds)."""
            body = json.dumps(payload).encode()
            req = urllib.request.Request(url, data=body, headers={"Authorization": auth})
            t0 = time.perf_counter()
            with urllib.request.urlopen(req, timeout=600) as resp:
                data = resp.read()
            return json.loads(data), len(data), (time.perf_counter() - t0) * 1000

        def call(method: str, *params: Any) -> Any:
            """Call one method and return its result (raise on error)."""
            reply = post({"id": 1, "method": method, "params": list(params)})[0]
            if reply["error"]:
                raise RuntimeError(f"{method}: {reply['error']}")
            return reply["result"]

        try:
            started = time.perf_counter()
            fanouts = (tx_count + FANOUT - 1) // FANOUT
            print(f"[bench] mining {100 + fanouts} blocks", flush=True)
            call("generatetoaddress", 100 + fanouts, address)
            each, funding = 1_000_000, []
            for h in range(1, fanouts + 1):
                cb = call("getblock", call("getblockhash", h), 2)["tx"][0]
                n = min(FANOUT, tx_count - (h - 1) * FANOUT)
                change = 5_000_000_000 - n * each - 100_000
                hexs = _signed(
                    secret, [(cb["txid"], 0, 5_000_000_000)], [(spk, each)] * n + [(spk, change)]
                )
                funding.append((call("sendrawtransaction", hexs), n))
            call("generatetoaddress", 1, address)
            print(f"[bench] signing {tx_count} transactions", flush=True)
            raws = [
                _signed(secret, [(txid, i, each)], [(spk, each - 500)])
                for txid, n in funding
                for i in range(n)
            ]
            print(f"[bench] submitting {tx_count} transactions", flush=True)
            for start in range(0, len(raws), 500):
                batch = [
                    {"jsonrpc": "2.0", "id": i, "method": "sendrawtransaction", "params": [r]}
                    for i, r in enumerate(raws[start : start + 500])
                ]
                for reply in post(batch)[0]:
                    if "error" in reply:
                        raise RuntimeError(f"sendrawtransaction: {reply['error']}")
            (blockhash,) = call("generatetoaddress", 1, address)
            header = call("getblock", blockhash, 1)
            build_s = time.perf_counter() - started
            print(
                f"[bench] block {blockhash} has {header['nTx']} txs, {header['size']} bytes; "
                f"built in {build_s:.1f}s",
                flush=True,
            )
            timings, size = [], 0
            for i in range(RUNS):
                _reply, size, ms = post({"id": i, "method": "getblock", "params": [blockhash, 2]})
                timings.append(ms)
                print(
                    f"[bench] getblock verbosity 2 run {i + 1}: {ms:.1f} ms, {size} bytes",
                    flush=True,
                )
            return {
                "tx_count": header["nTx"],
                "block_hash": blockhash,
                "block_size_bytes": header["size"],
                "block_weight": header["weight"],
                "build_seconds": round(build_s, 2),
                "runs": RUNS,
                "getblock_v2_ms_first": round(timings[0], 3),
                "getblock_v2_ms_median": round(statistics.median(timings), 3),
                "getblock_v2_response_bytes": size,
            }
        finally:
            node.stop()


if __name__ == "__main__":
    print(json.dumps(run(int(sys.argv[1]) if len(sys.argv) > 1 else 4000), indent=2))
