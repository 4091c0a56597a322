"""HTTP front end: basic auth, status codes and headers like bitcoind's httpserver."""

from __future__ import annotations

import base64
import contextlib
import hmac
import socket
import threading
import time
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from . import rpc_chain, rpc_control, rpc_tx  # noqa: F401  (registers the RPC methods)
from .rpc import handle_body
from .state import NodeState

WRONG_PASSWORD_DELAY = 0.25  # bitcoind slows down wrong-password replies (~250 ms)
MAX_BODY = 32 * 1024 * 1024
_HTML = "text/html; charset=ISO-8859-1"


class RPCServer(ThreadingHTTPServer):
    """Threading HTTP server bound to 127.0.0.1 carrying the node state."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, port: int, state: NodeState, user: str, password: str) -> None:
        self.state = state
        self.expected_auth = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        # Open keep-alive connections, so a stopped node really stops answering.
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        super().__init__(("127.0.0.1", port), RPCHandler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._open_lock:
            self._open.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """Cut every open client connection (like a bitcoind process exiting)."""
        with self._open_lock:
            sockets = list(self._open)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


class RPCHandler(BaseHTTPRequestHandler):
    """One JSON-RPC request per POST; keep-alive unless the client asks to close."""

    server: RPCServer
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; without this, delayed ACKs stall every small
    # reply by ~40 ms (a real bitcoind answers at once).
    disable_nagle_algorithm = True
    server_version = "bitcoind-sandbox"

    def log_message(self, format: str, *args: Any) -> None:
        """Silence per-request logging."""
        pass  # bitcoind does not log every request by default

    def _send(self, status: int, body: bytes, headers: list[tuple[str, str]]) -> None:
        # Header order follows bitcoind's replies; "Date" marks where the date goes.
        self.send_response_only(status)
        for name, value in headers:
            if name == "Date":
                value = formatdate(time.time(), usegmt=True)
            elif name == "Content-Length":
                value = str(len(body))
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if body:
            self.wfile.write(body)

    def _wants_close(self) -> None:
        conn = (self.headers.get("Connection") or "").lower()
        self.close_connection = conn == "close" or self.request_version == "HTTP/1.0"

    def do_GET(self) -> None:
        """bitcoind answers GET with 405."""
        self._wants_close()
        self._send(
            405,
            b"JSONRPC server handles only POST requests",
            [("Date", ""), ("Content-Length", ""), ("Content-Type", _HTML)],
        )

    def do_POST(self) -> None:
        """Authenticate, then hand the body to the JSON-RPC layer."""
        self._wants_close()
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(min(length, MAX_BODY)) if length > 0 else b""
        auth = self.headers.get("Authorization")
        if auth is None or not hmac.compare_digest(
            auth.encode(), self.server.expected_auth.encode()
        ):
            if auth is not None:
                time.sleep(WRONG_PASSWORD_DELAY)
            self.close_connection = True
            self._send(
                401,
                b"",
                [
                    ("WWW-Authenticate", 'Basic realm="jsonrpc"'),
                    ("Date", ""),
                    ("Content-Length", ""),
                    ("Content-Type", _HTML),
                ],
            )
            return
        status, reply = handle_body(self.server.state, body)
        if status == 204 or reply is None:
            self._send(204, b"", [("Date", "")])
        else:
            self._send(
                status,
                reply,
                [("Content-Type", "application/json"), ("Date", ""), ("Content-Length", "")],
            )


def serve_in_thread(server: RPCServer) -> threading.Thread:
    """Run ``server.serve_forever`` in a daemon thread."""
    thread = threading.Thread(
        target=server.serve_forever,
        kwargs={"poll_interval": 0.1},
        name="btc-sandbox-rpc",
        daemon=True,
    )
    thread.start()
    return thread
