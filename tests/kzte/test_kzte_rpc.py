"""The Solana JSON-RPC adapter: unknown is never "not found", retries are bounded and counted.

A tiny in-process HTTP server replays canned node answers (errors the sandbox cannot be made
to produce); a silent socket and a closed port stand in for a hung and a dead node.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from solders.keypair import Keypair
from solders.signature import Signature

from settlement.chains.solana_rpc import (
    Answer,
    SolanaIncompleteAnswerError,
    SolanaMalformedAnswerError,
    SolanaRpc,
    SolanaRpcError,
    SolanaUnavailableError,
)
from settlement.errors import NodeUnavailableError

REF = str(Keypair().pubkey())
SIG = str(Keypair().sign_message(b"x"))
OLDER = str(Keypair().sign_message(b"older"))  # a cursor below SIG


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
    answer, stats = _signatures(node.url, until=OLDER)
    assert answer.known and answer.value is not None
    (info,) = answer.value
    assert info.signature == SIG and info.slot == 7 and not info.failed
    assert info.block_time is None  # an implausible (scaled) time is dropped, not trusted
    assert stats.total == 2
    params = node.requests[-1]["params"]
    assert node.requests[-1]["method"] == "getSignaturesForAddress"
    assert params[0] == REF and params[1]["until"] == OLDER
    assert params[1]["commitment"] == "confirmed" and params[1]["limit"] == 1000


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


def _page(count: int, block_time: int = 1_700_000_000) -> list[dict[str, Any]]:
    return [
        {
            "signature": str(Signature(os.urandom(64))),
            "slot": 1_000_000 - i,
            "err": None,
            "memo": None,
            "blockTime": block_time,
        }
        for i in range(count)
    ]


def test_more_signatures_than_the_page_budget_is_unknown_not_a_short_list(
    node: FakeNode,
) -> None:
    # Regression: 5 full pages (5,000 signatures) used to come back as a complete answer, so
    # the cursor moved past signatures never read -- possibly the payment.
    for _ in range(5):
        node.result(_page(1000))
    answer, stats = _signatures(node.url, until=OLDER)
    assert not answer.known and answer.value is None
    assert isinstance(answer.error, SolanaIncompleteAnswerError)
    assert stats.calls["getSignaturesForAddress"] == 5


def test_pages_are_read_with_before_until_a_short_page(node: FakeNode) -> None:
    first, second = _page(1000), _page(3)
    node.result(first)
    node.result(second)
    answer, _ = _signatures(node.url, until=OLDER)
    assert answer.known and answer.value is not None
    assert [s.signature for s in answer.value] == [e["signature"] for e in first + second]
    configs = [r["params"][1] for r in node.requests]
    assert configs[0].get("before") is None
    assert configs[1]["before"] == first[-1]["signature"]
    assert all(c["until"] == OLDER and c["limit"] == 1000 for c in configs)


def test_the_cursor_or_the_floor_ends_the_read(node: FakeNode) -> None:
    page = _page(1000)
    node.result(page)  # a node that overlooks `until` and lists it anyway

    async def go(until: str | None, not_before: datetime | None) -> Answer[Any]:
        async with SolanaRpc(node.url, backoff_seconds=0.01) as rpc:
            return await rpc.signatures_for_address(REF, until, max_pages=1, not_before=not_before)

    answer = asyncio.run(go(page[10]["signature"], None))
    assert answer.value is not None and len(answer.value) == 10  # stopped at the cursor

    old, new = 1_700_000_000, 1_700_000_600
    node.result(_page(4, new) + _page(996, old))
    floor = datetime.fromtimestamp(new - 60, UTC)  # older ones cannot pay anything watched
    answer = asyncio.run(go(None, floor))
    assert answer.known and answer.value is not None and len(answer.value) == 4
    assert len(node.requests) == 2  # the full page did not lead to another one


def test_account_owner_reads_the_mint_program(node: FakeNode) -> None:
    token_program = "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA"
    node.result(
        {
            "context": {"slot": 9},
            "value": {
                "data": ["", "base64"],
                "executable": False,
                "lamports": 1_461_600,
                "owner": token_program,
                "rentEpoch": 0,
                "space": 0,
            },
        }
    )
    node.result({"context": {"slot": 9}, "value": None})

    async def go() -> list[Answer[str | None]]:
        async with SolanaRpc(node.url) as rpc:
            return [await rpc.account_owner(REF), await rpc.account_owner(REF)]

    found, missing = asyncio.run(go())
    assert found.known and found.value == token_program
    assert missing.known and missing.value is None
    assert node.requests[0]["method"] == "getAccountInfo"
