"""Bitcoin Core ZMQ notifications: a wake-up signal, and the decoded `sequence` topic.

A message means "the mempool or the chain changed". Messages may be lost (ZMQ drops under load,
the node restarts), so nothing may depend on them alone: polling stays the floor, and a consumer
of the decoded stream is told when it can no longer trust it (`FeedBatch.lost`, a reconnect).

bitcoind's framing is [topic, body, 4-byte little-endian per-topic counter]. A `sequence` body
is <32-byte hash><label> plus, for A/R, an 8-byte little-endian mempool sequence number:
A = transaction added to the mempool, R = removed (for any reason but a block), C / D = block
connected / disconnected. This module is the only place that knows those letters.
"""

from __future__ import annotations

import logging
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import zmq
from zmq.utils.monitor import parse_monitor_message

log = logging.getLogger(__name__)

TOPICS = (b"sequence", b"hashblock", b"rawtx")
SEQUENCE = b"sequence"
MAX_PENDING = 100_000  # decoded events kept for a consumer that does not drain (then: lost)
# Monitor events that change whether messages can reach us.
_UP = zmq.EVENT_HANDSHAKE_SUCCEEDED
_DOWN = zmq.EVENT_DISCONNECTED


class MempoolEventKind(StrEnum):
    TX_ADDED = "tx_added"
    TX_REMOVED = "tx_removed"  # replaced, conflicted, evicted, expired; never "mined"
    BLOCK_CONNECTED = "block_connected"
    BLOCK_DISCONNECTED = "block_disconnected"


_LABELS = {
    ord("A"): MempoolEventKind.TX_ADDED,
    ord("R"): MempoolEventKind.TX_REMOVED,
    ord("C"): MempoolEventKind.BLOCK_CONNECTED,
    ord("D"): MempoolEventKind.BLOCK_DISCONNECTED,
}


@dataclass(frozen=True, slots=True)
class MempoolEvent:
    """One decoded `sequence` message."""

    kind: MempoolEventKind
    hash: str  # txid for transaction events, block hash for block events (display hex)
    # Transaction events only: the node's number for this mempool change. Core counts every
    # change, including removals by a block that it does not announce one by one.
    mempool_sequence: int | None = None

    @property
    def is_tx(self) -> bool:
        return self.mempool_sequence is not None


def decode_sequence(body: bytes) -> MempoolEvent | None:
    """A `sequence` body as an event; None if it is not bitcoind's format."""
    if len(body) < 33 or body[32] not in _LABELS:
        return None
    kind = _LABELS[body[32]]
    if kind in (MempoolEventKind.TX_ADDED, MempoolEventKind.TX_REMOVED):
        if len(body) != 41:
            return None
        return MempoolEvent(kind, body[:32].hex(), struct.unpack("<Q", body[33:])[0])
    return MempoolEvent(kind, body[:32].hex()) if len(body) == 33 else None


@dataclass(frozen=True)
class FeedBatch:
    """What arrived since the previous drain, and whether the stream can be trusted."""

    events: list[MempoolEvent]
    connected: bool  # the subscription is up now
    connections: int  # handshakes so far: a change means a reconnect (messages were missed)
    lost: bool  # a message went missing since the previous drain (counter gap, overflow, junk)


class ZmqSequenceFeed:
    """A daemon thread subscribed to bitcoind's ZMQ endpoint.

    Calls `on_event` (if given) per message, as a wake-up, and keeps the decoded `sequence`
    messages for `drain()`. One consumer drains; the thread only appends.
    """

    def __init__(
        self,
        url: str,
        on_event: Callable[[], None] | None = None,
        *,
        keep_events: bool = True,
        max_pending: int = MAX_PENDING,
    ) -> None:
        self.url = url
        self.on_event = on_event
        self.keep_events = keep_events
        self.max_pending = max_pending
        self.messages = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="btc-zmq", daemon=True)
        self._lock = threading.Lock()
        self._events: list[MempoolEvent] = []
        self._lost = False
        self._connected = False
        self._connections = 0
        self._counter: int | None = None  # the last `sequence` counter seen on this connection

    def __repr__(self) -> str:
        return (
            f"ZmqSequenceFeed({self.url!r}, messages={self.messages}, "
            f"connections={self._connections}, connected={self._connected})"
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)

    @property
    def connected(self) -> bool:
        with self._lock:
            return self._connected

    @property
    def connections(self) -> int:
        with self._lock:
            return self._connections

    def drain(self) -> FeedBatch:
        """Take the events received so far (oldest first) and reset the `lost` flag."""
        with self._lock:
            events, self._events = self._events, []
            batch = FeedBatch(events, self._connected, self._connections, self._lost)
            self._lost = False
        return batch

    # --- the thread ---------------------------------------------------------------------
    def _run(self) -> None:
        context: zmq.Context[Any] = zmq.Context()
        socket = context.socket(zmq.SUB)
        socket.setsockopt(zmq.LINGER, 0)
        socket.setsockopt(zmq.RCVHWM, 0)  # never drop on our side; the node may
        for topic in TOPICS:
            socket.setsockopt(zmq.SUBSCRIBE, topic)
        monitor = socket.get_monitor_socket(_UP | _DOWN)
        socket.connect(self.url)  # ZMQ reconnects by itself when the node restarts
        poller = zmq.Poller()
        poller.register(socket, zmq.POLLIN)
        poller.register(monitor, zmq.POLLIN)
        try:
            while not self._stop.is_set():
                ready = dict(poller.poll(200))
                if monitor in ready:  # first: a reconnect is known before its messages
                    self._on_monitor(parse_monitor_message(monitor.recv_multipart())["event"])
                if socket in ready:
                    self._receive(socket)
        finally:
            socket.disable_monitor()
            monitor.close()
            socket.close()
            context.term()

    def _on_monitor(self, event: int) -> None:
        with self._lock:
            if event == _UP:
                self._connected = True
                self._connections += 1
                self._counter = None  # a new connection starts its own count
            elif event == _DOWN:
                self._connected = False
        if self.on_event is not None:
            self.on_event()  # a reconnect is worth a poll

    def _receive(self, socket: zmq.Socket[Any]) -> None:
        while True:
            try:
                frames = socket.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            if len(frames) != 3 or frames[0] not in TOPICS or len(frames[2]) != 4:
                log.debug("ignoring a ZMQ message that is not bitcoind's framing")
                continue
            self.messages += 1
            if frames[0] == SEQUENCE and self.keep_events:
                self._keep(frames[1], struct.unpack("<I", frames[2])[0])
            if self.on_event is not None:
                self.on_event()

    def _keep(self, body: bytes, counter: int) -> None:
        event = decode_sequence(body)
        with self._lock:
            if self._counter is not None and counter != (self._counter + 1) & 0xFFFFFFFF:
                self._lost = True  # the publisher dropped messages in between
            self._counter = counter
            if event is None:
                log.warning("undecodable ZMQ sequence message (%d bytes)", len(body))
                self._lost = True
            elif len(self._events) >= self.max_pending:
                self._lost = True
            else:
                self._events.append(event)


class ZmqWakeup(ZmqSequenceFeed):
    """Only the wake-up: calls `on_event` per message and keeps nothing."""

    def __init__(self, url: str, on_event: Callable[[], None]) -> None:
        super().__init__(url, on_event, keep_events=False)
