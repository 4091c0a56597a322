"""Clients: python-bitcoinlib Proxy, plain JSON-RPC 1.0/2.0, batches, auth, ZMQ framing."""

from __future__ import annotations

import http.client
import json
import socket
import struct
import time
from pathlib import Path

import bitcoin.rpc
import pytest
import zmq
from bitcoin.core import b2lx
from btcnode_helpers import AUTH, Client, Key, coinbase_coin, spend

from sandbox.bitcoin.node import RunningNode, start_node


def test_python_bitcoinlib_proxy(funded: Client, shopper: Key) -> None:
    proxy = bitcoin.rpc.Proxy(service_url=funded.node.url)
    try:
        assert proxy.getblockcount() == 101
        best = proxy.getbestblockhash()
        block = proxy.getblock(best)
        assert b2lx(block.GetHash()) == b2lx(best)
        assert block.calc_merkle_root() == block.hashMerkleRoot
        coin = coinbase_coin(funded, 1)
        tx = spend(shopper, [coin], [(Key("m").spk, coin[2] - 1000)])
        txid = proxy.sendrawtransaction(tx)
        assert txid == tx.GetTxid()
        assert proxy.getrawtransaction(txid).GetTxid() == txid
        assert proxy.call("getrawmempool") == [b2lx(txid)]
        with pytest.raises(bitcoin.rpc.JSONRPCError) as err:
            proxy.call("getblockhash", 999)
        assert err.value.error["code"] == -8
        mined = list(proxy.generatetoaddress(1, Key("m").address))
        assert len(mined) == 1 and proxy.getblockcount() == 102
    finally:
        proxy.close()


def test_jsonrpc_versions_batch_and_named_params(rpc: Client) -> None:
    assert rpc.raw("getblockcount", [], "1.0") == (200, {"result": 0, "error": None, "id": 1})
    assert rpc.raw("getblockcount", [], "2.0") == (200, {"jsonrpc": "2.0", "result": 0, "id": 2})
    status, reply = rpc.raw("getblockhash", {"height": 0}, "2.0")
    assert status == 200 and reply["result"].startswith("0f9188f1")
    status, reply = rpc.raw("getblock", {"blockhash": reply["result"], "verbosity": 0})
    assert status == 200 and reply["result"].startswith("01000000")
    status, reply = rpc.raw("nosuchmethod", [], "1.0")
    assert status == 404 and reply["error"] == {"code": -32601, "message": "Method not found"}
    body = json.dumps(
        [
            {"jsonrpc": "2.0", "id": 1, "method": "getblockcount"},
            {"jsonrpc": "2.0", "method": "getblockcount"},
            {"id": 3, "method": "getblockhash", "params": [5]},
        ]
    ).encode()
    status, _h, data = rpc.post(body)
    assert status == 200
    assert json.loads(data) == [
        {"jsonrpc": "2.0", "result": 0, "id": 1},
        {"result": None, "error": {"code": -8, "message": "Block height out of range"}, "id": 3},
    ]
    assert data.endswith(b"}]\n")


def test_bad_requests(rpc: Client) -> None:
    status, headers, data = rpc.post(b"{not json")
    assert (status, data) == (
        500,
        b'{"result":null,"error":{"code":-32700,"message":"Parse error"},"id":null}\n',
    )
    assert headers["Content-Type"] == "application/json"
    status, _h, data = rpc.post(b'{"id":1,"method":"sendrawtransaction","params":["zz"]}')
    assert status == 500 and json.loads(data)["error"] == {
        "code": -22,
        "message": "TX decode failed. Make sure the tx has at least one input.",
    }
    status, _h, data = rpc.post(b'{"id":1,"method":"getblock","params":["ab", "x"]}')
    assert json.loads(data)["error"]["code"] == -8
    t0 = time.monotonic()
    status, headers, data = rpc.post(b'{"id":1,"method":"getblockcount"}', auth="Basic eDp5")
    assert (status, data) == (401, b"") and time.monotonic() - t0 >= 0.2
    assert headers["WWW-Authenticate"] == 'Basic realm="jsonrpc"'
    status, _h, data = rpc.post(b'{"id":1,"method":"getblockcount"}', auth=None)
    assert (status, data) == (401, b"")


def test_keep_alive_connection(node: RunningNode) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", node.port, timeout=10)
    try:
        for i in range(3):
            conn.request(
                "POST",
                "/",
                json.dumps({"id": i, "method": "getblockcount"}),
                {"Authorization": AUTH},
            )
            resp = conn.getresponse()
            assert resp.status == 200 and json.loads(resp.read())["id"] == i
        conn.request("GET", "/", headers={"Authorization": AUTH})
        resp = conn.getresponse()
        assert (resp.status, resp.read()) == (405, b"JSONRPC server handles only POST requests")
    finally:
        conn.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_zmq_notifications(tmp_path: Path, shopper: Key) -> None:
    addr = f"tcp://127.0.0.1:{_free_port()}"
    node = start_node(tmp_path / "z", zmqpubsequence=addr, zmqpubrawtx=addr, zmqpubhashblock=addr)
    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    try:
        rpc = Client(node)
        assert [n["type"] for n in rpc("getzmqnotifications")] == [
            "pubhashblock",
            "pubrawtx",
            "pubsequence",
        ]
        sub.setsockopt(zmq.LINGER, 0)
        sub.setsockopt(zmq.RCVTIMEO, 5000)
        for topic in (b"sequence", b"rawtx", b"hashblock"):
            sub.setsockopt(zmq.SUBSCRIBE, topic)
        sub.connect(addr)
        time.sleep(0.3)  # let the subscription propagate (slow joiner)
        (h1,) = rpc("generatetoaddress", 1, shopper.address)
        got = [sub.recv_multipart() for _ in range(3)]
        by_topic = {m[0]: m for m in got}
        assert all(len(m) == 3 for m in got)
        assert by_topic[b"hashblock"][1].hex() == h1
        assert struct.unpack("<I", by_topic[b"hashblock"][2])[0] == 0
        assert by_topic[b"sequence"][1] == bytes.fromhex(h1) + b"C"
        assert struct.unpack("<I", by_topic[b"sequence"][2])[0] == 1  # fresh datadir
        assert struct.unpack("<I", by_topic[b"rawtx"][2])[0] == 1
        rpc("generatetoaddress", 100, shopper.address)
        for _ in range(300):
            sub.recv_multipart()
        coin = coinbase_coin(rpc, 1)
        tx = spend(shopper, [coin], [(Key("m").spk, coin[2] - 1000)])
        txid = rpc("sendrawtransaction", tx.serialize().hex())
        msgs = {m[0]: m for m in (sub.recv_multipart() for _ in range(2))}
        assert msgs[b"rawtx"][1] == tx.serialize()
        seq_body = msgs[b"sequence"][1]
        assert seq_body[:32].hex() == txid and seq_body[32:33] == b"A"
        assert struct.unpack("<Q", seq_body[33:])[0] == 1
    finally:
        sub.close(0)
        ctx.term()
        node.stop()


def test_generateblock_decode_and_testmempoolaccept(funded: Client, shopper: Key) -> None:
    coin = coinbase_coin(funded, 1)
    tx = spend(shopper, [coin], [(Key("m").spk, coin[2] - 1410)])
    raw = tx.serialize().hex()
    decoded = funded("decoderawtransaction", raw)
    assert "hex" not in decoded and decoded["vsize"] == 110
    (res,) = funded("testmempoolaccept", [raw])
    assert res["allowed"] is True and str(res["fees"]["base"]) == "0.00001410"
    assert funded("getrawmempool") == []  # testmempoolaccept does not add
    preview = funded("generateblock", Key("m").address, [raw], False)
    assert set(preview) == {"hash", "hex"} and funded("getblockcount") == 101
    mined = funded("generateblock", Key("m").address, [raw])
    assert funded("getblock", mined["hash"], 1)["tx"][1] == decoded["txid"]
    (again,) = funded("testmempoolaccept", [raw])
    assert again["allowed"] is False and again["reject-reason"] == "txn-already-known"
    status, reply = funded.raw("sendrawtransaction", [raw])
    assert (status, reply["error"]["code"]) == (500, -27)
