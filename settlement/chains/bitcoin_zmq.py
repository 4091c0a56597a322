"""Bitcoin Core ZMQ `sequence` notifications as a wake-up signal for the watcher.

Only a hint: a message means "the mempool or the chain changed, poll now". Messages may be lost
(ZMQ drops under load, the node restarts); polling on an interval stays the floor, so nothing
depends on them. The frames are bitcoind's: [topic, body, 4-byte little-endian sequence].
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import zmq

log = logging.getLogger(__name__)

TOPICS = (b"sequence", b"hashblock", b"rawtx")


class ZmqWakeup:
    """A daemon thread subscribed to a bitcoind ZMQ endpoint; calls `on_event` per message."""

    def __init__(self, url: str, on_event: Callable[[], None]) -> None:
        self.url = url
        self.on_event = on_event
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="btc-zmq", daemon=True)
        self.messages = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)

    def _run(self) -> None:
        context: zmq.Context[Any] = zmq.Context()
        socket = context.socket(zmq.SUB)
        socket.setsockopt(zmq.LINGER, 0)
        socket.setsockopt(zmq.RCVHWM, 0)  # never drop on our side; the node may
        for topic in TOPICS:
            socket.setsockopt(zmq.SUBSCRIBE, topic)
        socket.connect(self.url)  # ZMQ reconnects by itself when the node restarts
        poller = zmq.Poller()
        poller.register(socket, zmq.POLLIN)
        try:
            while not self._stop.is_set():
                if not dict(poller.poll(200)):
                    continue
                frames = socket.recv_multipart()
                if len(frames) != 3 or frames[0] not in TOPICS:
                    log.debug("ignoring a ZMQ message that is not bitcoind's framing")
                    continue
                self.messages += 1
                self.on_event()
        finally:
            socket.close()
            context.term()
