"""The Bitcoin Core adapter against responses recorded from a real Bitcoin Core node.

A tiny HTTP server replays ../shared/fixtures/bitcoind byte for byte (status, headers, body),
so these tests pin our parsing to what bitcoind really sends, independent of our sandbox.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from settlement.chains.bitcoin_core import BitcoinCoreClient
from settlement.errors import NodeAuthError, NodeRpcError, NodeUnavailableError

FIXTURES = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "bitcoind"
MERCHANT = "bcrt1qp4qx3y25kdxt7pyt9fe59k45k934gzz68tv227"
PAYMENT_TXID = "955ee3dc0224f3dde8ed31ab190ed5d2e1eaa9263fea187777b3967954e78a66"


def _load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    return data


def _key(method: str, params: list[Any]) -> str:
    return json.dumps([method, params], sort_keys=True)


class Replay(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, fixtures: list[str], refuse_auth: bool = False) -> None:
        self.by_call: dict[str, dict[str, Any]] = {}
        for name in fixtures:
            fixture = _load(name)
            body = fixture["request"]["body"]
            self.by_call[_key(body["method"], body["params"])] = fixture
        self.refuse_auth = refuse_auth
        super().__init__(("127.0.0.1", 0), ReplayHandler)


class ReplayHandler(BaseHTTPRequestHandler):
    server: Replay
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""

    def do_POST(self) -> None:
        request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if isinstance(request, list):  # a batch: Core answers 200 with one reply per call
            replies = [
                dict(self.server.by_call[_key(r["method"], r["params"])]["response"], id=r["id"])
                for r in request
            ]
            body = (json.dumps(replies, separators=(",", ":")) + "\n").encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        fixture = (
            _load("097_error_wrong_password.json")
            if self.server.refuse_auth
            else self.server.by_call[_key(request["method"], request["params"])]
        )
        if fixture.get("response") is not None:
            response = dict(fixture["response"], id=request["id"])
            body = (json.dumps(response, separators=(",", ":")) + "\n").encode()
        else:
            body = fixture.get("response_raw", "").encode()
        self.send_response(fixture["http_status"])
        for name, value in fixture["response_headers"].items():
            if name not in ("Content-Length", "Date", "Connection"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def replay() -> Iterator[Replay]:
    server = Replay(
        [
            "032_getblock_verbosity2.json",
            "013_getrawmempool_true.json",
            "017_getrawtransaction_verbose_unconfirmed.json",
            "091_error_getrawtransaction_unknown_txid.json",
            "027_getblockhash_102.json",
            "085_error_getblockhash_out_of_range_jsonrpc1.json",
        ]
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def _client(server: ThreadingHTTPServer, **kwargs: Any) -> BitcoinCoreClient:
    return BitcoinCoreClient(f"http://fixture:fixturepass@127.0.0.1:{server.server_port}", **kwargs)


def test_getblock_verbosity_2_becomes_satoshi_outputs(replay: Replay) -> None:
    client = _client(replay)
    block = client.block("4eb128f9e510774e608d174935644881b1ef74688241ddf54354840a0ec5bab9")
    client.close()
    assert block.height == 102 and block.previous_hash is not None
    coinbase, payment = block.txs
    assert coinbase.spends == ()  # a coinbase spends nothing
    assert coinbase.outputs[0].amount_sat == 5_000_002_820  # 50.0000282 BTC, exactly
    paid = [o for o in payment.outputs if o.address == MERCHANT]
    assert [(o.txid, o.amount_sat) for o in paid] == [(PAYMENT_TXID, 123_456)]
    assert len(payment.spends) == 1


def test_mempool_times_and_transactions(replay: Replay) -> None:
    client = _client(replay)
    times = client.mempool_times()
    assert list(times) == [PAYMENT_TXID] and times[PAYMENT_TXID].year == 2026
    unknown = "0000000000000000000000000000000000000000000000000000000000000001"
    views = client.transactions([PAYMENT_TXID, unknown])
    client.close()
    assert views[unknown] is None  # -5 is a definite "no such transaction"
    view = views[PAYMENT_TXID]
    assert view is not None and any(o.address == MERCHANT for o in view.outputs)


def test_rpc_errors_keep_their_code(replay: Replay) -> None:
    client = _client(replay)
    assert client.block_hash(102) == _load("027_getblockhash_102.json")["response"]["result"]
    with pytest.raises(NodeRpcError) as error:
        client.block_hash(
            _load("085_error_getblockhash_out_of_range_jsonrpc1.json")["request"]["body"]["params"][
                0
            ]
        )
    client.close()
    assert error.value.code == -8


def test_wrong_password_is_an_auth_error() -> None:
    server = Replay([], refuse_auth=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    client = _client(server)
    try:
        with pytest.raises(NodeAuthError):
            client.block_count()
    finally:
        client.close()
        server.shutdown()
        server.server_close()


def test_closed_port_is_unknown_not_an_answer() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = BitcoinCoreClient(f"http://u:p@127.0.0.1:{port}", timeout=1, retries=1)
    with pytest.raises(NodeUnavailableError):
        client.block_count()


def test_a_node_that_never_answers_times_out_as_unknown() -> None:
    with socket.socket() as silent:  # accepts connections, never replies
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        client = BitcoinCoreClient(
            f"http://u:p@127.0.0.1:{silent.getsockname()[1]}", timeout=0.3, retries=1
        )
        with pytest.raises(NodeUnavailableError):
            client.mempool_times()
        client.close()
