"""Bitcoin Core JSON-RPC adapter: the only place that speaks Core's vocabulary.

Works with any bitcoind (or our sandbox stand-in) at one URL `http://user:pass@host:port`.
Translates `vout`, `scriptPubKey`, BTC-decimal `value`s into our `TxOutput` with integer satoshi,
and Core's error codes into typed errors. A timeout, refused connection or "warming up" (-28)
raises `NodeUnavailableError`: the caller treats it as UNKNOWN, never as "not paid".
"""

from __future__ import annotations

import base64
import http.client
import json
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import unquote, urlsplit

from pos.money import SAT_PER_BTC
from settlement.errors import (
    NodeAuthError,
    NodeRpcError,
    NodeUnavailableError,
    NotFoundOnChainError,
)

log = logging.getLogger(__name__)

RPC_IN_WARMUP = -28
RPC_INVALID_ADDRESS_OR_KEY = -5  # "No such mempool or blockchain transaction", unknown block


@dataclass(frozen=True)
class TxOutput:
    txid: str
    vout: int
    address: str | None  # None for outputs without a standard address (OP_RETURN, bare)
    amount_sat: int


@dataclass(frozen=True)
class TxView:
    txid: str
    outputs: tuple[TxOutput, ...]
    spends: tuple[tuple[str, int], ...]  # (previous txid, vout) of each input; empty: coinbase


@dataclass(frozen=True)
class BlockView:
    hash: str
    height: int
    previous_hash: str | None
    time: datetime
    txs: tuple[TxView, ...]


@dataclass(frozen=True)
class MempoolSnapshot:
    """The mempool's txids at one moment, and the number its next change will carry."""

    txids: list[str]  # in the node's listing order (Core lists parents before children)
    sequence: int  # changes numbered >= this happened after the listing


def btc_to_sat(value: Decimal | int) -> int:
    """Core prints amounts as BTC decimals with 8 places; parse them exactly."""
    sat = Decimal(value) * SAT_PER_BTC
    if sat != sat.to_integral_value():
        raise ValueError(f"amount {value} has more than 8 decimals")
    return int(sat)


def _tx_view(raw: dict[str, Any]) -> TxView:
    outputs = tuple(
        TxOutput(
            raw["txid"],
            int(out["n"]),
            out.get("scriptPubKey", {}).get("address"),
            btc_to_sat(out["value"]),
        )
        for out in raw["vout"]
    )
    spends = tuple((vin["txid"], int(vin["vout"])) for vin in raw["vin"] if "txid" in vin)
    return TxView(raw["txid"], outputs, spends)


class BitcoinCoreClient:
    """A small, thread-safe JSON-RPC client with keep-alive, timeouts and retries for reads."""

    def __init__(self, url: str, timeout: float = 10.0, retries: int = 2) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("BITCOIN_RPC_URL must look like http://user:pass@host:port")
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port or (443 if self._https else 8332)
        self._path = parts.path or "/"
        credentials = f"{unquote(parts.username or '')}:{unquote(parts.password or '')}"
        self._auth = "Basic " + base64.b64encode(credentials.encode()).decode()
        self.timeout = timeout
        self.retries = retries
        self._conn: http.client.HTTPConnection | None = None
        self._lock = threading.Lock()
        self._next_id = 0
        self.calls = 0  # RPC requests sent, for benchmarks

    # --- transport ------------------------------------------------------------------------
    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
            self._conn = cls(self._host, self._port, timeout=self.timeout)
        return self._conn

    def _post(self, payload: Any) -> Any:
        body = json.dumps(payload).encode()
        headers = {"Content-Type": "application/json", "Authorization": self._auth}
        last_error: Exception | None = None
        for attempt in range(self.retries + 1):
            with self._lock:
                self.calls += 1
                try:
                    conn = self._connection()
                    conn.request("POST", self._path, body, headers)
                    response = conn.getresponse()
                    data = response.read()
                    status = response.status
                except (TimeoutError, OSError, http.client.HTTPException) as exc:
                    if self._conn is not None:
                        self._conn.close()
                    self._conn = None
                    last_error = exc
                    status, data = 0, b""
            if status == 0:
                if attempt < self.retries:
                    time.sleep(0.2 * (attempt + 1))
                    continue
                raise NodeUnavailableError(f"Bitcoin node unreachable: {last_error}") from None
            if status in (401, 403):
                raise NodeAuthError("the Bitcoin node refused BITCOIN_RPC_URL's credentials")
            try:
                return json.loads(data, parse_float=Decimal)
            except ValueError:
                if status >= 500 and attempt < self.retries:
                    time.sleep(0.2 * (attempt + 1))
                    continue
                raise NodeUnavailableError(
                    f"Bitcoin node answered HTTP {status} without JSON"
                ) from None
        raise NodeUnavailableError("Bitcoin node unreachable")  # pragma: no cover - loop exits

    def _request_id(self) -> int:
        self._next_id += 1
        return self._next_id

    @staticmethod
    def _unwrap(reply: dict[str, Any]) -> Any:
        error = reply.get("error")
        if error:
            code, message = int(error.get("code", -1)), str(error.get("message", ""))
            if code == RPC_IN_WARMUP:
                raise NodeUnavailableError(f"Bitcoin node is starting: {message}")
            if code == RPC_INVALID_ADDRESS_OR_KEY:
                raise NotFoundOnChainError(code, message)
            raise NodeRpcError(code, message)
        return reply.get("result")

    def call(self, method: str, *params: Any) -> Any:
        """One JSON-RPC 1.0 call (what every Bitcoin Core version understands)."""
        reply = self._post(
            {"jsonrpc": "1.0", "id": self._request_id(), "method": method, "params": list(params)}
        )
        return self._unwrap(reply)

    def batch(self, calls: Sequence[tuple[str, Sequence[Any]]]) -> list[Any]:
        """Many calls in one request; each result is a value or the error it raised."""
        if not calls:
            return []
        ids = [self._request_id() for _ in calls]
        replies = self._post(
            [
                {"jsonrpc": "1.0", "id": i, "method": m, "params": list(p)}
                for i, (m, p) in zip(ids, calls, strict=True)
            ]
        )
        if not isinstance(replies, list):
            self._unwrap(replies)  # a whole-batch error
            raise NodeUnavailableError("Bitcoin node answered a batch with a single reply")
        by_id = {reply.get("id"): reply for reply in replies}
        results: list[Any] = []
        for request_id in ids:
            try:
                results.append(self._unwrap(by_id[request_id]))
            except (NodeRpcError, KeyError) as exc:
                results.append(exc)
        return results

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
            self._conn = None

    # --- typed reads ----------------------------------------------------------------------
    def block_count(self) -> int:
        return int(self.call("getblockcount"))

    def block_hash(self, height: int) -> str:
        return str(self.call("getblockhash", height))

    def best_block_hash(self) -> str:
        return str(self.call("getbestblockhash"))

    def chain_name(self) -> str:
        return str(self.call("getblockchaininfo")["chain"])

    def block(self, block_hash: str) -> BlockView:
        """A block with every transaction decoded (getblock verbosity 2)."""
        raw = self.call("getblock", block_hash, 2)
        return BlockView(
            hash=raw["hash"],
            height=int(raw["height"]),
            previous_hash=raw.get("previousblockhash"),
            time=datetime.fromtimestamp(int(raw["time"]), UTC),
            txs=tuple(_tx_view(tx) for tx in raw["tx"]),
        )

    def mempool_times(self) -> dict[str, datetime]:
        """txid -> when the node first saw it (getrawmempool verbose)."""
        raw = self.call("getrawmempool", True)
        return {
            txid: datetime.fromtimestamp(int(entry["time"]), UTC) for txid, entry in raw.items()
        }

    def mempool_snapshot(self) -> MempoolSnapshot:
        """Every mempool txid and the mempool sequence (getrawmempool false true).

        About 70 bytes a transaction, against ~500 for the verbose listing.
        """
        raw = self.call("getrawmempool", False, True)
        return MempoolSnapshot(raw["txids"], int(raw["mempool_sequence"]))

    def mempool_entry_times(self, txids: Sequence[str]) -> dict[str, datetime | None]:
        """When the node accepted each transaction (getmempoolentry); None: not in the mempool."""
        results = self.batch([("getmempoolentry", [txid]) for txid in txids])
        times: dict[str, datetime | None] = {}
        for txid, result in zip(txids, results, strict=True):
            if isinstance(result, NotFoundOnChainError):
                times[txid] = None
            elif isinstance(result, Exception):
                raise result
            else:
                times[txid] = datetime.fromtimestamp(int(result["time"]), UTC)
        return times

    def block_txids(self, block_hash: str) -> list[str] | None:
        """The txids of a block, coinbase first (getblock verbosity 1); None: no such block."""
        try:
            raw = self.call("getblock", block_hash, 1)
        except NotFoundOnChainError:
            return None
        return [str(txid) for txid in raw["tx"]]

    def transaction_in_block(self, txid: str, block_hash: str) -> TxView:
        """One transaction read from a given block (works without -txindex)."""
        return _tx_view(self.call("getrawtransaction", txid, True, block_hash))

    def transactions(self, txids: Sequence[str]) -> dict[str, TxView | None]:
        """Decoded transactions by txid; None where the node has no such transaction (-5)."""
        results = self.batch([("getrawtransaction", [txid, True]) for txid in txids])
        views: dict[str, TxView | None] = {}
        for txid, result in zip(txids, results, strict=True):
            if isinstance(result, NotFoundOnChainError):
                views[txid] = None
            elif isinstance(result, Exception):
                raise result
            else:
                views[txid] = _tx_view(result)
        return views
