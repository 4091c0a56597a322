"""The Solana JSON-RPC adapter: unknown is never "not found", retries are bounded and counted.

A tiny in-process HTTP server replays canned node answers (errors the sandbox cannot be made
to produce); a silent socket and a closed port stand in for a hung and a dead node.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from solders.keypair import Keypair

from settlement.chains.solana_rpc import (
    Answer,
    SolanaMalformedAnswerError,
    SolanaRpc,
    SolanaRpcError,
    SolanaUnavailableError,
)
from settlement.errors import NodeUnavailableError

REF = str(Keypair().pubkey())
SIG = str(Keypair().sign_message(b"x"))


class FakeNode:
    """Answers every request with the next canned (HTTP status, body); records the requests."""

    def __init__(self) -> None:
        self.answers: list[tuple[int, str]] = []
        self.requests: list[dict[str, Any]] = []

        node = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers["Content-Length"])
                node.requests.append(json.loads(self.rfile.read(length)))
                status, body = node.answers.pop(0) if node.answers else (500, "")
                data = body.encode()
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
        self.thread.start()

    def error(self, code: int, message: str, data: Any = None) -> None:
        error: dict[str, Any] = {"code": code, "message": message}
        if data is not None:
            error["data"] = data
        body = {"jsonrpc": "2.0", "id": 0, "error": error}
        self.answers.append((200, json.dumps(body)))

    def result(self, result: Any) -> None:
        body = {"jsonrpc": "2.0", "id": 0, "result": result}
        self.answers.append((200, json.dumps(body)))

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def node() -> Iterator[FakeNode]:
    fake = FakeNode()
    yield fake
    fake.close()


def _signatures(url: str, until: str | None = None, **kwargs: Any) -> tuple[Answer[Any], Any]:
    async def go() -> tuple[Answer[Any], Any]:
        async with SolanaRpc(url, backoff_seconds=0.01, **kwargs) as rpc:
            return await rpc.signatures_for_address(REF, until), rpc.stats

    return asyncio.run(go())


def test_invalid_params_is_unknown_and_not_retried(node: FakeNode) -> None:
    node.error(-32602, "Invalid param: WrongSize")
    answer, stats = _signatures(node.url)
    assert not answer.known and answer.value is None
    assert isinstance(answer.error, SolanaRpcError) and answer.error.code == -32602
    assert stats.calls["getSignaturesForAddress"] == 1


def test_unhealthy_node_is_retried_then_unknown(node: FakeNode) -> None:
    for _ in range(3):
        node.error(-32005, "Node is behind by 42 slots", {"numSlotsBehind": 42})
    answer, stats = _signatures(node.url, attempts=3)
    assert isinstance(answer.error, SolanaRpcError) and answer.error.code == -32005
    assert stats.total == 3


def test_off_spec_error_that_panics_solders_is_unknown(node: FakeNode) -> None:
    node.error(-32005, "Node is behind")  # no `data`: solders' parser panics on it
    answer, _ = _signatures(node.url, attempts=1)
    assert isinstance(answer.error, SolanaMalformedAnswerError)


def test_retry_recovers_and_the_request_is_as_documented(node: FakeNode) -> None:
    node.answers.append((503, "busy"))
    node.result([{"signature": SIG, "slot": 7, "err": None, "memo": None, "blockTime": 5}])
    answer, stats = _signatures(node.url, until=SIG)
    assert answer.known and answer.value is not None
    (info,) = answer.value
    assert info.signature == SIG and info.slot == 7 and not info.failed
    assert info.block_time is None  # an implausible (scaled) time is dropped, not trusted
    assert stats.total == 2
    params = node.requests[-1]["params"]
    assert node.requests[-1]["method"] == "getSignaturesForAddress"
    assert params[0] == REF and params[1]["until"] == SIG and params[1]["commitment"] == "confirmed"


def test_transaction_request_asks_for_v0_and_not_found_is_known(node: FakeNode) -> None:
    node.result(None)

    async def go() -> Answer[Any]:
        async with SolanaRpc(node.url) as rpc:
            return await rpc.transaction(SIG)

    answer = asyncio.run(go())
    assert answer.known and answer.value is None  # the node does not have it (yet)
    config = node.requests[0]["params"][1]
    assert config["maxSupportedTransactionVersion"] == 0 and config["encoding"] == "base64"


def test_garbage_answer_is_unknown(node: FakeNode) -> None:
    for _ in range(2):
        node.answers.append((200, "<html>gateway</html>"))
    answer, _ = _signatures(node.url, attempts=2)
    assert isinstance(answer.error, SolanaMalformedAnswerError)


def test_statuses_are_batched_by_256(node: FakeNode) -> None:
    sigs = [str(Keypair().sign_message(bytes([i % 256, i // 256]))) for i in range(300)]
    node.result({"context": {"slot": 9}, "value": [None] * 256})
    finalized = {"slot": 3, "confirmations": None, "err": None, "status": {"Ok": None}}
    node.result(
        {
            "context": {"slot": 9},
            "value": [{**finalized, "confirmationStatus": "finalized"}] + [None] * 43,
        }
    )

    async def go() -> Answer[Any]:
        async with SolanaRpc(node.url) as rpc:
            return await rpc.signature_statuses(sigs)

    answer = asyncio.run(go())
    assert answer.known and answer.value is not None
    assert [len(r["params"][0]) for r in node.requests] == [256, 44]
    assert node.requests[0]["params"][1] == {"searchTransactionHistory": True}
    assert list(answer.value) == [sigs[256]]
    assert answer.value[sigs[256]].commitment == "finalized"


def test_silent_node_times_out_as_unknown(silent_port: int) -> None:
    answer, stats = _signatures(f"http://127.0.0.1:{silent_port}", timeout_seconds=0.3, attempts=2)
    assert isinstance(answer.error, SolanaUnavailableError)
    assert isinstance(answer.error, NodeUnavailableError)  # one vocabulary for every chain
    assert "timed out" in str(answer.error)
    assert stats.total == 2


def test_closed_port_is_unknown() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    answer, _ = _signatures(f"http://127.0.0.1:{port}", attempts=1)
    assert isinstance(answer.error, SolanaUnavailableError)
    assert "refused" in str(answer.error)
