"""A JSON-RPC proxy in front of the sandbox validator (127.0.0.1): records the requests,
and answers HTTP 503 for requests about blocked addresses (or of blocked methods) — one
reference or token account the node "cannot read" while every other answer stays real.
With `hold_finality` it reports every `finalized` signature status as `confirmed`: a node whose
confirmed block never finalizes (an abandoned fork), while every other answer stays real."""

from __future__ import annotations

import json
import threading
import urllib.request
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

UPSTREAM_TIMEOUT_SECONDS = 10.0


class RpcProxy:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.blocked: set[str] = set()  # addresses (a request's first parameter)
        self.blocked_methods: set[str] = set()
        self.hold_finality = False
        self.calls: Counter[str] = Counter()
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                request = json.loads(body)
                params = request.get("params") or [None]
                with proxy.lock:
                    proxy.calls[request["method"]] += 1
                    proxy.requests.append(request)
                    refused = request["method"] in proxy.blocked_methods or (
                        isinstance(params[0], str) and params[0] in proxy.blocked
                    )
                if refused:
                    self._send(503, b"blocked by the test proxy")
                    return
                forward = urllib.request.Request(
                    proxy.upstream, body, {"Content-Type": "application/json"}
                )
                with urllib.request.urlopen(forward, timeout=UPSTREAM_TIMEOUT_SECONDS) as answer:
                    status, data = answer.status, answer.read()
                if proxy.hold_finality and request["method"] == "getSignatureStatuses":
                    data = _unfinalized(data)
                self._send(status, data)

            def _send(self, status: int, data: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                return  # keep test output clean

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def signature_reads(self) -> list[str]:
        """The addresses getSignaturesForAddress was asked about, in order."""
        with self.lock:
            return [
                r["params"][0] for r in self.requests if r["method"] == "getSignaturesForAddress"
            ]

    def reset(self) -> None:
        with self.lock:
            self.calls.clear()
            self.requests.clear()


def _unfinalized(data: bytes) -> bytes:
    """The statuses answer with every `finalized` turned back into `confirmed`."""
    reply = json.loads(data)
    for status in (reply.get("result") or {}).get("value") or []:
        if status and status.get("confirmationStatus") == "finalized":
            status["confirmationStatus"] = "confirmed"
            status["confirmations"] = 31  # what a confirmed status carries (None once final)
    return json.dumps(reply).encode()


@contextmanager
def rpc_proxy(upstream: str) -> Iterator[RpcProxy]:
    proxy = RpcProxy(upstream)
    proxy.thread.start()
    try:
        yield proxy
    finally:
        proxy.server.shutdown()
        proxy.server.server_close()
        proxy.thread.join(timeout=5)
