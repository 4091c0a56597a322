"""ZMQ PUB notifications framed like bitcoind's ``-zmqpub*`` publishers.

Each message has three frames: topic, body, and a 4-byte little-endian
per-topic sequence counter (see the zmq_* fixtures).
"""

from __future__ import annotations

import contextlib
import struct
import threading
from typing import Any

import zmq

TOPICS = ("hashblock", "rawtx", "sequence")


class ZmqPublisher:
    """Publishes hashblock / rawtx / sequence; topics without an address are skipped."""

    def __init__(self, endpoints: dict[str, str | None], fresh_datadir: bool) -> None:
        self.endpoints = {t: a for t, a in endpoints.items() if a}
        self._lock = threading.Lock()  # zmq sockets are not thread-safe
        self._ctx: zmq.Context[Any] | None = zmq.Context() if self.endpoints else None
        self._sockets: dict[str, zmq.Socket[Any]] = {}
        # Sockets bound to the same address share one PUB socket, like bitcoind.
        by_addr: dict[str, zmq.Socket[Any]] = {}
        for topic, addr in self.endpoints.items():
            if addr not in by_addr:
                assert self._ctx is not None
                sock = self._ctx.socket(zmq.PUB)
                sock.setsockopt(zmq.LINGER, 0)
                sock.setsockopt(zmq.SNDHWM, 1000)
                sock.bind(addr)
                by_addr[addr] = sock
            self._sockets[topic] = by_addr[addr]
        # On a fresh datadir bitcoind's genesis connect consumes counter 0 of
        # rawtx and sequence (hashblock is suppressed during IBD).
        start = 1 if fresh_datadir else 0
        self._counters = {"hashblock": 0, "rawtx": start, "sequence": start}

    def notifications(self) -> list[dict[str, Any]]:
        """``getzmqnotifications`` result."""
        return [
            {"type": f"pub{t}", "address": self.endpoints[t], "hwm": 1000}
            for t in sorted(self.endpoints)
        ]

    def _send(self, topic: str, body: bytes) -> None:
        sock = self._sockets.get(topic)
        if sock is None:
            return
        with self._lock:
            seq = self._counters[topic]
            self._counters[topic] = (seq + 1) & 0xFFFFFFFF
            # Like bitcoind: when the queue is full the message is dropped.
            with contextlib.suppress(zmq.ZMQError):
                sock.send_multipart(
                    [topic.encode(), body, struct.pack("<I", seq)], flags=zmq.NOBLOCK
                )

    def rawtx(self, raw: bytes) -> None:
        """Publish a serialized transaction on ``rawtx``."""
        self._send("rawtx", raw)

    def hashblock(self, blockhash: str) -> None:
        """Publish a block hash on ``hashblock``."""
        self._send("hashblock", bytes.fromhex(blockhash))

    def block_event(self, blockhash: str, label: str) -> None:
        """sequence 'C' (connected) or 'D' (disconnected)."""
        self._send("sequence", bytes.fromhex(blockhash) + label.encode())

    def tx_event(self, txid: str, label: str, mempool_sequence: int) -> None:
        """sequence 'A' (added) or 'R' (removed) with the mempool sequence."""
        self._send(
            "sequence", bytes.fromhex(txid) + label.encode() + struct.pack("<Q", mempool_sequence)
        )

    def close(self) -> None:
        """Close the sockets and the context."""
        with self._lock:
            for sock in {id(s): s for s in self._sockets.values()}.values():
                sock.close(linger=0)
            self._sockets.clear()
            if self._ctx is not None:
                self._ctx.term()
                self._ctx = None
