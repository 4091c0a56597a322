"""Benchmark: one mempool poll with `size` transactions of which `new` are new, three ways.

  today    getrawmempool verbose + decoding (BitcoinCoreClient.mempool_times(), what the watcher
           polls every second), the watcher's set difference, then the new txs (getrawtransaction)
  zmq      MempoolView.sync() on ZMQ `sequence` events, then the new txs and their entry times
  no-zmq   MempoolView.sync() without ZMQ: `getrawmempool false true` diffed against the view,
           then the new txs and their entry times

Every round the node gains `new` transactions and loses as many (announced as removed), so the
mempool stays at `size`. Wall time per poll (median over the rounds) and bytes read (HTTP
responses with headers, plus ZMQ frames) are measured in one run.

The node is a loopback JSON-RPC stub serving Core-shaped replies (getmempoolentry and
getrawtransaction shapes as recorded from Bitcoin Core v31, ~530 bytes per verbose entry) and a
ZMQ publisher with bitcoind's framing: 150,000 real signed transactions would take long to make.
The stub renders its replies ahead of the poll, so the node's own cost of building 80 MB of JSON
(which Core pays under its mempool lock) is not in these numbers.
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import struct
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import zmq

from bench.common import free_port, say
from settlement.btc_mempool import MempoolView
from settlement.chains.bitcoin_core import BitcoinCoreClient
from settlement.chains.bitcoin_zmq import ZmqSequenceFeed

TAG = "mempool"
WAIT_S = 30.0
STUB_NOTE = "loopback JSON-RPC stub with Core-shaped replies, not a real node"

_ENTRY = (  # getmempoolentry / verbose getrawmempool value, as Core v31 writes it
    '{{"vsize_adjusted":{vsize},"vsize":{vsize},"vsize_bip141":{vsize},"weight":{weight},'
    '"time":{time},"height":{height},"descendantcount":1,"descendantsize":{vsize},'
    '"ancestorcount":1,"ancestorsize":{vsize},"wtxid":"{wtxid}","chunkweight":{weight},'
    '"fees":{{"base":{fee},"modified":{fee},"ancestor":{fee},"descendant":{fee},"chunk":{fee}}},'
    '"depends":[],"spentby":[],"unbroadcast":true}}'
)
_TX = (  # getrawtransaction verbose of a one-input, two-output P2WPKH payment
    '{{"txid":"{txid}","hash":"{wtxid}","version":2,"size":222,"vsize":141,"weight":561,'
    '"locktime":101,"vin":[{{"txid":"{prev}","vout":0,"scriptSig":{{"asm":"","hex":""}},'
    '"txinwitness":["{sig}","{key}"],"sequence":4294967293}}],"vout":['
    '{{"value":49.99873724,"n":0,"scriptPubKey":{{"asm":"0 {h1}","desc":"addr({a1})#xkk56vrs",'
    '"hex":"0014{h1}","address":"{a1}","type":"witness_v0_keyhash"}}}},'
    '{{"value":0.00123456,"n":1,"scriptPubKey":{{"asm":"0 {h2}","desc":"addr({a2})#wudnc7v5",'
    '"hex":"0014{h2}","address":"{a2}","type":"witness_v0_keyhash"}}}}],"hex":"{raw}"}}'
)


def _hex(nbytes: int) -> str:
    return os.urandom(nbytes).hex()


class StubNode:
    """Mempool state, its pre-rendered replies, and a ZMQ `sequence` publisher."""

    def __init__(self, size: int, zmq_url: str) -> None:
        self.lock = threading.Lock()
        self.entries: dict[str, bytes] = {}  # txid -> '"txid":{entry}' (insertion ordered)
        self.sequence = 1  # Core's mempool sequence starts at 1; each change uses one
        self.bytes_sent = 0
        self.counter = 0  # bitcoind's per-topic ZMQ counter
        self.zmq_bytes = 0
        self._context: zmq.Context[Any] = zmq.Context()
        self._publisher = self._context.socket(zmq.PUB)
        self._publisher.setsockopt(zmq.LINGER, 0)
        self._publisher.setsockopt(zmq.SNDHWM, 0)
        self._publisher.bind(zmq_url)
        for _ in range(size):
            self._add(_hex(32), publish=False)
        self._render()

    def _add(self, txid: str, publish: bool) -> None:
        entry = _ENTRY.format(
            vsize=141,
            weight=561,
            time=int(time.time()),
            height=900_000,
            wtxid=_hex(32),
            fee="0.00002820",
        )
        self.entries[txid] = f'"{txid}":{entry}'.encode()
        self._changed(txid, b"A", publish)

    def _changed(self, txid: str, label: bytes, publish: bool) -> None:
        if publish:
            body = bytes.fromhex(txid) + label + struct.pack("<Q", self.sequence)
            frames = [b"sequence", body, struct.pack("<I", self.counter)]
            self._publisher.send_multipart(frames)
            self.counter += 1
            self.zmq_bytes += sum(len(f) for f in frames)
        self.sequence += 1

    def _render(self) -> None:
        self.verbose = b"{" + b",".join(self.entries.values()) + b"}"
        listing = {"txids": list(self.entries), "mempool_sequence": self.sequence}
        self.listing = json.dumps(listing, separators=(",", ":")).encode()

    def advance(self, new: int) -> int:
        """`new` transactions arrive, the `new` oldest leave; the ZMQ messages published."""
        with self.lock:
            counter = self.counter
            for txid in list(self.entries)[:new]:
                del self.entries[txid]
                self._changed(txid, b"R", publish=True)
            for _ in range(new):
                self._add(_hex(32), publish=True)
            self._render()
            return self.counter - counter

    def result(self, method: str, params: list[Any]) -> bytes:
        if method == "getrawmempool":
            if params and params[0]:
                return self.verbose
            if len(params) > 1 and params[1]:
                return self.listing
            return json.dumps(list(self.entries)).encode()
        txid = str(params[0])
        if method == "getmempoolentry":
            return self.entries[txid].split(b":", 1)[1]
        if method == "getrawtransaction":
            return _TX.format(
                txid=txid,
                wtxid=_hex(32),
                prev=_hex(32),
                sig=_hex(71),
                key=_hex(33),
                h1=_hex(20),
                h2=_hex(20),
                a1="bcrt1q" + _hex(19)[:38],
                a2="bcrt1q" + _hex(19)[:38],
                raw=_hex(222),
            ).encode()
        raise KeyError(method)

    def close(self) -> None:
        self._publisher.close()
        self._context.term()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # like bitcoind: no delayed-ACK stalls on small replies
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        stub = self.server.stub
        with stub.lock:
            calls = request if isinstance(request, list) else [request]
            parts: list[bytes] = []
            for number, call in enumerate(calls):
                parts += [b"," if number else b"", b'{"result":']
                parts += [stub.result(call["method"], call["params"])]
                parts += [b',"error":null,"id":', json.dumps(call["id"]).encode(), b"}"]
            if isinstance(request, list):
                parts = [b"[", *parts, b"]"]
            parts.append(b"\n")
        length = sum(len(p) for p in parts)
        head = (
            f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
        ).encode()
        self.wfile.write(head)
        for part in parts:  # written as is: the big listing is never copied again
            self.wfile.write(part)
        with stub.lock:
            stub.bytes_sent += len(head) + length


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, stub: StubNode) -> None:
        self.stub = stub
        super().__init__(("127.0.0.1", 0), _Handler)


def _measure(
    stub: StubNode,
    rounds: int,
    new: int,
    poll: Callable[[], int],
    feed: ZmqSequenceFeed | None = None,
) -> dict[str, Any]:
    """Median wall time and bytes of `poll` over `rounds`, after the node changed each time."""
    walls: list[float] = []
    read: list[int] = []
    for _ in range(rounds):
        _advance(stub, new, feed)
        with stub.lock:
            before = stub.bytes_sent + stub.zmq_bytes
        began = time.perf_counter()
        found = poll()
        walls.append(time.perf_counter() - began)
        with stub.lock:
            read.append(stub.bytes_sent + stub.zmq_bytes - before)
        if found != new:
            raise RuntimeError(f"the poll found {found} new transactions, not {new}")
    return {
        "ms": round(statistics.median(walls) * 1000, 2),
        "max_ms": round(max(walls) * 1000, 2),
        "bytes": int(statistics.median(read)),
    }


def _wait(done: Callable[[], bool], what: str, seconds: float = WAIT_S) -> None:
    deadline = time.monotonic() + seconds
    while not done():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.005)


def _advance(
    stub: StubNode, new: int, feed: ZmqSequenceFeed | None, seconds: float = WAIT_S
) -> None:
    """Change the node; with a feed, wait for its messages (ZMQ is what wakes the watcher)."""
    received = feed.messages if feed is not None else 0
    published = stub.advance(new)
    if feed is not None:
        _wait(lambda: feed.messages - received >= published, "ZMQ messages", seconds)


def run(size: int = 150_000, new: int = 10, rounds: int = 5) -> dict[str, Any]:
    """The three polls against one stub, `rounds` times each."""
    zmq_url = f"tcp://127.0.0.1:{free_port()}"
    say(TAG, f"building a {size:,}-transaction stub mempool ({STUB_NOTE})")
    stub = StubNode(size, zmq_url)
    server = _Server(stub)
    threading.Thread(target=server.serve_forever, name="bench-stub", daemon=True).start()
    url = f"http://u:p@127.0.0.1:{server.server_address[1]}"
    client = BitcoinCoreClient(url, timeout=300)
    feed = ZmqSequenceFeed(zmq_url)
    results: dict[str, Any] = {
        "mempool_txs": size,
        "new_per_poll": new,
        "rounds": rounds,
        "node": STUB_NOTE,
        "verbose_bytes_per_tx": round(len(stub.verbose) / size),
        "listing_bytes_per_tx": round(len(stub.listing) / size),
    }
    try:
        examined: set[str] = set(client.mempool_times())

        def today() -> int:
            nonlocal examined
            mempool = client.mempool_times()
            fresh = [txid for txid in mempool if txid not in examined]
            client.transactions(fresh)
            examined = set(mempool)
            return len(fresh)

        say(TAG, "today: getrawmempool verbose + decode + fetch of the new txs")
        results["today"] = _measure(stub, rounds, new, today)

        feed.start()
        _wait(lambda: feed.connected, "the ZMQ subscription")
        view = MempoolView(client, feed)
        began = time.perf_counter()
        view.sync()  # the start: one listing
        results["start_listing_ms"] = round((time.perf_counter() - began) * 1000, 1)
        for _ in range(50):  # until the feed has proved it delivers (ZMQ "slow joiner")
            if view.live:
                break
            with contextlib.suppress(RuntimeError):
                _advance(stub, 1, feed, seconds=0.5)
            view.sync()

        def with_zmq() -> int:
            delta = view.sync()
            client.transactions(delta.added)
            view.entry_times(delta.added)
            if delta.resynced:
                raise RuntimeError("the ZMQ poll fell back to a listing")
            return len(delta.added)

        say(TAG, "zmq: MempoolView.sync() on ZMQ events + fetch of the new txs")
        results["zmq"] = _measure(stub, rounds, new, with_zmq, feed)
        feed.stop()

        polled = MempoolView(client)
        polled.sync()

        def without_zmq() -> int:
            delta = polled.sync()
            client.transactions(delta.added)
            polled.entry_times(delta.added)
            return len(delta.added)

        say(TAG, "no-zmq: MempoolView.sync() diffing getrawmempool false true + fetch")
        results["no_zmq"] = _measure(stub, rounds, new, without_zmq)
    finally:
        feed.stop()
        client.close()
        server.shutdown()
        server.server_close()
        stub.close()
    for key in ("zmq", "no_zmq"):
        results[f"{key}_faster_x"] = round(results["today"]["ms"] / max(results[key]["ms"], 1e-3))
        results[f"{key}_fewer_bytes_x"] = round(results["today"]["bytes"] / results[key]["bytes"])
    for key, label in (("today", "today "), ("zmq", "zmq   "), ("no_zmq", "no-zmq")):
        r = results[key]
        say(TAG, f"{label} {r['ms']:>10,.2f} ms {r['bytes']:>14,} bytes per poll")
    say(TAG, f"(node: {STUB_NOTE})")
    return results
