"""Helpers for the bitcoind stand-in tests: raw JSON-RPC client, test keys, signing."""

from __future__ import annotations

import base64
import hashlib
import json
import urllib.error
import urllib.request
from decimal import Decimal
from typing import Any

from bitcoin.core import COutPoint, CTransaction, CTxIn, CTxInWitness, CTxOut, CTxWitness, lx
from bitcoin.core.script import CScript, CScriptWitness

from sandbox.bitcoin.keys import p2wpkh_script, pubkey_of, sign_p2wpkh
from sandbox.bitcoin.node import RunningNode
from sandbox.bitcoin.scripts import classify

AUTH = "Basic " + base64.b64encode(b"cryptocity:cryptocity").decode()


class Key:
    """A deterministic test key with its P2WPKH script and regtest address."""

    def __init__(self, label: str) -> None:
        self.secret = hashlib.sha256(label.encode()).digest()
        self.spk = p2wpkh_script(pubkey_of(self.secret))
        self.address = classify(self.spk)[1] or ""


class Client:
    """Raw JSON-RPC over urllib, returning (status, headers, parsed body)."""

    def __init__(self, node: RunningNode) -> None:
        self.node = node
        self.url = f"http://127.0.0.1:{node.port}/"
        self.next_id = 0

    def post(self, body: bytes, auth: str | None = AUTH) -> tuple[int, dict[str, str], bytes]:
        headers = {"Content-Type": "application/json"}
        if auth:
            headers["Authorization"] = auth
        req = urllib.request.Request(self.url, data=body, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return resp.status, dict(resp.headers), resp.read()
        except urllib.error.HTTPError as exc:
            with exc:
                return exc.code, dict(exc.headers), exc.read()

    def raw(self, method: str, params: Any = None, version: str = "1.0") -> tuple[int, Any]:
        self.next_id += 1
        body = {
            "jsonrpc": version,
            "id": self.next_id,
            "method": method,
            "params": [] if params is None else params,
        }
        status, _h, data = self.post(json.dumps(body).encode())
        return status, json.loads(data, parse_float=Decimal)

    def __call__(self, method: str, *params: Any) -> Any:
        status, reply = self.raw(method, list(params))
        if reply.get("error"):
            raise RPCFailure(status, reply["error"]["code"], reply["error"]["message"])
        return reply["result"]


class RPCFailure(Exception):
    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.status, self.code, self.message = status, code, message


def spend(
    key: Key,
    coins: list[tuple[str, int, int]],
    outputs: list[tuple[bytes, int]],
    sequence: int = 0xFFFFFFFD,
) -> CTransaction:
    """Sign a P2WPKH spend of ``coins`` [(txid, vout, sats)] owned by ``key``."""
    vin = [CTxIn(COutPoint(lx(t), n), CScript(), sequence) for t, n, _v in coins]
    vout = [CTxOut(v, CScript(s)) for s, v in outputs]
    unsigned = CTransaction(vin, vout, nLockTime=0, nVersion=2)
    wit = [
        CTxInWitness(CScriptWitness(sign_p2wpkh(unsigned, i, key.secret, c[2])))
        for i, c in enumerate(coins)
    ]
    return CTransaction(vin, vout, nLockTime=0, nVersion=2, witness=CTxWitness(wit))


def coinbase_coin(rpc: Client, height: int) -> tuple[str, int, int]:
    """(txid, 0, value) of the coinbase output of block ``height``."""
    block = rpc("getblock", rpc("getblockhash", height), 2)
    cb = block["tx"][0]
    return cb["txid"], 0, int(Decimal(cb["vout"][0]["value"]) * 100_000_000)
