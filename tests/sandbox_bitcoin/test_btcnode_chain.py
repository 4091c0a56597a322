"""Consensus/mempool behaviour: maturity, signatures, RBF, reorgs, persistence, concurrency."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from btcnode_helpers import Client, Key, RPCFailure, coinbase_coin, spend

from sandbox.bitcoin.node import start_node

MERCHANT = Key("merchant")
OTHER = Key("other")


def send(rpc: Client, tx) -> str:  # type: ignore[no-untyped-def]
    return rpc("sendrawtransaction", tx.serialize().hex())


def test_coinbase_maturity(rpc: Client, shopper: Key) -> None:
    rpc("generatetoaddress", 99, shopper.address)  # coinbase 1 needs tip >= 100 to be spent
    coin = coinbase_coin(rpc, 1)
    tx = spend(shopper, [coin], [(MERCHANT.spk, coin[2] - 1000)])
    with pytest.raises(RPCFailure) as err:
        send(rpc, tx)
    assert err.value.code == -26 and err.value.status == 500
    assert err.value.message == (
        "bad-txns-premature-spend-of-coinbase, tried to spend coinbase at depth 99"
    )
    rpc("generatetoaddress", 1, OTHER.address)
    assert send(rpc, tx) == tx.GetTxid()[::-1].hex()


def test_subsidy_and_fees_go_to_miner(funded: Client, shopper: Key) -> None:
    coin = coinbase_coin(funded, 1)
    send(funded, spend(shopper, [coin], [(MERCHANT.spk, coin[2] - 5000)]))
    block = funded("getblock", funded("generatetoaddress", 1, OTHER.address)[0], 2)
    assert str(block["tx"][0]["vout"][0]["value"]) == "50.00005000"
    assert str(block["tx"][1]["fee"]) == "0.00005000"


def test_bad_signature_and_missing_inputs_rejected(funded: Client, shopper: Key) -> None:
    coin = coinbase_coin(funded, 1)
    forged = spend(OTHER, [coin], [(MERCHANT.spk, coin[2] - 1000)])
    with pytest.raises(RPCFailure) as err:
        send(funded, forged)
    assert err.value.code == -26 and "mandatory-script-verify-flag-failed" in err.value.message
    # Right key, but the signature commits to a different amount (BIP143) -> invalid.
    wrong_amount = spend(shopper, [(coin[0], 0, coin[2] + 1)], [(MERCHANT.spk, coin[2] - 1000)])
    with pytest.raises(RPCFailure) as err:
        send(funded, wrong_amount)
    assert err.value.code == -26
    missing = spend(shopper, [("11" * 32, 0, 10_000)], [(MERCHANT.spk, 5000)])
    with pytest.raises(RPCFailure) as err:
        send(funded, missing)
    assert (err.value.code, err.value.message) == (-25, "bad-txns-inputs-missingorspent")
    assert funded("getrawmempool") == []


def test_rbf_replacement_evicts_original_and_descendants(funded: Client, shopper: Key) -> None:
    coin = coinbase_coin(funded, 1)
    original = spend(shopper, [coin], [(MERCHANT.spk, 100_000), (shopper.spk, coin[2] - 102_000)])
    txid = send(funded, original)
    child = spend(shopper, [(txid, 1, coin[2] - 102_000)], [(shopper.spk, coin[2] - 104_000)])
    child_id = send(funded, child)
    entry = funded("getmempoolentry", txid)
    assert entry["descendantcount"] == 2 and entry["spentby"] == [child_id]
    # Same fee -> rejected with Core's message.
    cheap = spend(shopper, [coin], [(OTHER.spk, 100_000), (shopper.spk, coin[2] - 102_000)])
    with pytest.raises(RPCFailure) as err:
        send(funded, cheap)
    assert err.value.code == -26
    assert err.value.message.startswith("insufficient fee, rejecting replacement ")
    assert "less fees than conflicting txs; 0.00002 < 0.00004" in err.value.message
    bumped = spend(shopper, [coin], [(OTHER.spk, 100_000), (shopper.spk, coin[2] - 110_000)])
    new_id = send(funded, bumped)
    assert funded("getrawmempool") == [new_id]
    for gone in (txid, child_id):
        with pytest.raises(RPCFailure) as err:
            funded("getrawtransaction", gone, True)
        assert err.value.code == -5
    with pytest.raises(RPCFailure) as err:
        funded("getmempoolentry", txid)
    assert err.value.message == "Transaction not in mempool"


def test_reorg_returns_tx_to_mempool_and_remines(funded: Client, shopper: Key) -> None:
    coin = coinbase_coin(funded, 1)
    txid = send(funded, spend(shopper, [coin], [(MERCHANT.spk, coin[2] - 3000)]))
    (b102,) = funded("generatetoaddress", 1, OTHER.address)
    assert funded("getrawmempool") == []
    assert funded("gettxout", txid, 0)["confirmations"] == 1
    assert funded("invalidateblock", b102) is None
    assert funded("getblockcount") == 101
    assert funded("getrawmempool") == [txid]
    tx = funded("getrawtransaction", txid, True)
    assert "blockhash" not in tx and "vsize_adjusted" in tx
    stale = funded("getrawtransaction", txid, True, b102)
    assert stale["in_active_chain"] is False and stale["confirmations"] == 0
    assert funded("getblock", b102)["confirmations"] == -1
    new = funded("generatetoaddress", 2, OTHER.address)
    assert b102 not in new and funded("getrawmempool") == []
    again = funded("getrawtransaction", txid, True)
    assert again["blockhash"] == new[0] and again["confirmations"] == 2
    funded("reconsiderblock", b102)
    assert funded("getbestblockhash") == new[1]
    tips = funded("getchaintips")
    assert [(t["hash"], t["status"]) for t in tips] == [(new[1], "active"), (b102, "valid-fork")]


def test_longer_fork_wins_after_reconsider(funded: Client, shopper: Key) -> None:
    coin = coinbase_coin(funded, 1)
    txid = send(funded, spend(shopper, [coin], [(MERCHANT.spk, coin[2] - 3000)]))
    a = funded("generatetoaddress", 1, OTHER.address)
    funded("invalidateblock", a[0])
    # A conflicting spend confirms on the other branch...
    ds = spend(shopper, [coin], [(OTHER.spk, coin[2] - 9000)])
    ds_id = send(funded, ds)
    assert funded("getrawmempool") == [ds_id]
    funded("generatetoaddress", 1, OTHER.address)
    # ...then the first branch becomes longer and wins: ds is conflicted and evicted.
    funded("reconsiderblock", a[0])
    assert funded("getblockcount") == 102
    funded("invalidateblock", funded("getbestblockhash"))
    funded("reconsiderblock", a[0])
    assert funded("getbestblockhash") == a[0]
    assert funded("gettxout", txid, 0)["confirmations"] == 1
    assert funded("getrawmempool") == []


def test_restart_persists_chain_and_invalid_marks(tmp_path: Path, shopper: Key) -> None:
    datadir = tmp_path / "persist"
    node = start_node(datadir)
    try:
        rpc = Client(node)
        rpc("generatetoaddress", 101, shopper.address)
        coin = coinbase_coin(rpc, 1)
        txid = send(rpc, spend(shopper, [coin], [(MERCHANT.spk, coin[2] - 3000)]))
        hashes = rpc("generatetoaddress", 2, OTHER.address)
        rpc("invalidateblock", hashes[1])
        best, tips = rpc("getbestblockhash"), rpc("getchaintips")
        c2 = coinbase_coin(rpc, 2)
        pending = send(rpc, spend(shopper, [c2], [(OTHER.spk, c2[2] - 5000)]))
    finally:
        node.stop()
    node = start_node(datadir)
    try:
        rpc = Client(node)
        assert rpc("getblockcount") == 102
        assert rpc("getbestblockhash") == best
        assert rpc("getchaintips") == tips
        assert rpc("getrawtransaction", txid, True)["confirmations"] == 1
        assert rpc("gettxout", txid, 0) is not None
        assert rpc("getrawmempool") == [pending]  # the mempool is saved on shutdown
        assert rpc("generatetoaddress", 1, OTHER.address)[0] != hashes[1]
    finally:
        node.stop()


def test_concurrent_clients(funded: Client, shopper: Key) -> None:
    coin = coinbase_coin(funded, 1)
    outputs = [(shopper.spk, 10_000_000)] * 20 + [(shopper.spk, coin[2] - 200_010_000)]
    fan = spend(shopper, [coin], outputs)
    fan_id = send(funded, fan)
    txs = [
        spend(shopper, [(fan_id, i, 10_000_000)], [(MERCHANT.spk, 9_990_000)]) for i in range(20)
    ]
    errors: list[BaseException] = []
    results: list[str] = []

    def worker(chunk: list) -> None:  # type: ignore[type-arg]
        client = Client(funded.node)
        try:
            for tx in chunk:
                results.append(send(client, tx))
                client("getblockcount")
                client("getrawmempool", True)
                client("getblock", client("getbestblockhash"), 2)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(txs[i::5],)) for i in range(5)]
    miner = threading.Thread(
        target=lambda: Client(funded.node)("generatetoaddress", 5, OTHER.address)
    )
    for t in [*threads, miner]:
        t.start()
    for t in [*threads, miner]:
        t.join(60)
    assert not errors
    assert len(results) == 20
    funded("generatetoaddress", 1, OTHER.address)
    assert funded("getrawmempool") == []
    for txid in results:
        assert funded("getrawtransaction", txid, True)["confirmations"] >= 1


def test_policy_dust_nonfinal_and_relative_locktime(funded: Client, shopper: Key) -> None:
    coin = coinbase_coin(funded, 1)
    dust = spend(shopper, [coin], [(MERCHANT.spk, 293), (shopper.spk, coin[2] - 10_000)])
    with pytest.raises(RPCFailure) as err:
        send(funded, dust)
    assert (err.value.code, err.value.message) == (-26, "dust")
    # Relative lock of 5 blocks on a coin with 101 confirmations is satisfied...
    ok = spend(shopper, [coin], [(MERCHANT.spk, coin[2] - 10_000)], sequence=5)
    txid = send(funded, ok)
    # ...but spending the fresh output with a 1-block relative lock is not yet.
    child = spend(
        shopper, [(txid, 0, coin[2] - 10_000)], [(OTHER.spk, coin[2] - 20_000)], sequence=1
    )
    with pytest.raises(RPCFailure) as err:
        send(funded, child)
    assert err.value.message == "non-BIP68-final"


def test_unexpected_exception_is_rpc_misc_error(rpc: Client) -> None:
    status, reply = rpc.raw("getblockhash", [1e400])
    assert status == 500 and reply["error"]["code"] == -1
