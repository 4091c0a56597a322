"""The Bitcoin watcher against the sandbox node over JSON-RPC (standard Core RPC only)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from btc_harness import World, coins_of, double_spend, rpc
from sqlalchemy import select, update

from pos.models import Invoice, Merchant, Payment, PaymentStatus
from pos.runtime import Runtime
from pos.states import InvoiceStatus
from sandbox.bitcoin.node import MINER_ADDRESS, start_node
from sandbox.bitcoin.wallet import RPC, ShopperWallet
from settlement.btc_watcher import rewind
from settlement.chain_state import ChainCursor
from settlement.chains.bitcoin_core import btc_to_sat
from settlement.worker import all_duties


def _status(status: InvoiceStatus):  # type: ignore[no-untyped-def]
    return lambda invoice: invoice.status is status


def test_pay_then_processing_then_settled_after_one_block(world: World) -> None:
    invoice_id = world.invoice()
    world.pay(invoice_id)
    invoice = world.until(invoice_id, _status(InvoiceStatus.PROCESSING))
    assert invoice.amount_paid_atomic == invoice.amount_due_atomic and not invoice.flags
    world.mine(1)
    invoice = world.until(invoice_id, _status(InvoiceStatus.SETTLED))
    with world.runtime.session_factory() as session:
        payment = session.scalars(select(Payment)).one()
        assert (payment.status, payment.confirmations) == (PaymentStatus.FINAL, 1)
        types = [e.type for e in invoices_events(session, invoice_id)]
    assert types == [
        "invoice.created",
        "invoice.payment_seen",
        "invoice.processing",
        "invoice.settled",
    ]


def invoices_events(session, invoice_id):  # type: ignore[no-untyped-def]
    from pos.models import InvoiceEvent

    return session.scalars(
        select(InvoiceEvent)
        .where(InvoiceEvent.invoice_id == invoice_id)
        .order_by(InvoiceEvent.invoice_version)
    ).all()


def test_underpay_then_top_up(world: World) -> None:
    invoice_id = world.invoice()
    world.pay(invoice_id, amount_factor=Decimal("0.5"))
    invoice = world.until(invoice_id, lambda i: i.paid_partial)
    assert invoice.status is InvoiceStatus.NEW
    assert world.uri(invoice_id).count("amount=") == 1  # the URI now asks for the rest
    world.pay(invoice_id)
    invoice = world.until(invoice_id, _status(InvoiceStatus.PROCESSING))
    assert invoice.amount_paid_atomic >= invoice.amount_due_atomic
    assert len(invoice.payments) == 2


def test_overpay_is_flagged(world: World) -> None:
    invoice_id = world.invoice()
    world.pay(invoice_id, amount_factor=Decimal("1.2"))
    invoice = world.until(invoice_id, lambda i: i.paid_over)
    assert invoice.status is InvoiceStatus.PROCESSING


def test_payment_after_expiry_is_paid_late(world: World) -> None:
    invoice_id = world.invoice()
    with world.runtime.session_factory.begin() as session:
        session.execute(
            update(Invoice)
            .where(Invoice.id == invoice_id)
            .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    world.until(invoice_id, _status(InvoiceStatus.EXPIRED))
    world.pay(invoice_id)
    invoice = world.until(invoice_id, _status(InvoiceStatus.PROCESSING))
    assert invoice.paid_late


def test_reorg_of_depth_one_takes_settled_back_and_it_comes_again(world: World) -> None:
    invoice_id = world.invoice()
    world.pay(invoice_id)
    world.until(invoice_id, _status(InvoiceStatus.PROCESSING))
    block = world.mine(1)[0]
    world.until(invoice_id, _status(InvoiceStatus.SETTLED))
    rpc(world.node, "invalidateblock", block)  # the payment goes back to the mempool
    invoice = world.until(invoice_id, _status(InvoiceStatus.PROCESSING))
    assert invoice.settled_at is None
    world.mine(2)  # a longer chain mines it again
    invoice = world.until(invoice_id, _status(InvoiceStatus.SETTLED))
    types = [e.type for e in invoice.events]
    assert types.count("invoice.settled") == 2 and "invoice.reopened" in types


def test_reorg_of_depth_three_with_a_double_spend_makes_it_invalid(world: World) -> None:
    with world.runtime.session_factory.begin() as session:
        session.execute(update(Merchant).values(confirmations_required=2))
    invoice_id = world.invoice()
    txid = world.pay(invoice_id)[0]
    world.until(invoice_id, _status(InvoiceStatus.PROCESSING))
    first = world.mine(3)[0]
    world.until(invoice_id, _status(InvoiceStatus.SETTLED))
    rpc(world.node, "invalidateblock", first)  # three blocks gone; the payment is unconfirmed
    double_spend(world, txid)  # the shopper sends the same coins elsewhere (full RBF) ...
    world.mine(4)  # ... and the new, longer chain confirms the double spend
    invoice = world.until(invoice_id, _status(InvoiceStatus.INVALID))
    assert invoice.amount_paid_atomic == 0
    assert [p.status for p in invoice.payments] == [PaymentStatus.REPLACED]


def test_rbf_double_spend_to_another_address_is_invalid(world: World) -> None:
    invoice_id = world.invoice()
    txids = world.pay(invoice_id)
    world.until(invoice_id, _status(InvoiceStatus.PROCESSING))
    double_spend(world, txids[0])
    invoice = world.until(invoice_id, _status(InvoiceStatus.INVALID))
    world.mine(1)
    world.tick()
    invoice = world.load(invoice_id)
    assert invoice.status is InvoiceStatus.INVALID and invoice.settled_at is None


def test_fee_bump_to_the_same_address_still_pays(world: World) -> None:
    invoice_id = world.invoice()
    txid = world.pay(invoice_id)[0]
    world.until(invoice_id, _status(InvoiceStatus.PROCESSING))
    raw = rpc(world.node, "getrawtransaction", txid, True)
    address = world.load(invoice_id).btc_address
    outputs = [
        (bytes.fromhex(out["scriptPubKey"]["hex"]), btc_to_sat(out["value"]))
        for out in raw["vout"]
        if out["scriptPubKey"].get("address") == address
    ]
    wallet, coins = ShopperWallet(world.wallet_dir, RPC(world.node.url)), coins_of(world, txid)
    wallet.send(coins, outputs, min_fee=15_000)  # same payee, more fee: a plain fee bump
    world.mine(1)
    invoice = world.until(invoice_id, _status(InvoiceStatus.SETTLED))
    statuses = sorted(p.status.value for p in invoice.payments)
    assert statuses == ["final", "replaced"]


def test_node_down_means_unknown_not_expired(world: World, tmp_path: Path) -> None:
    invoice_id = world.invoice()
    world.pay(invoice_id)  # paid in time, but the watcher has not looked yet
    port = world.node.port
    world.node.stop()
    with world.runtime.session_factory.begin() as session:  # the window passes meanwhile
        session.execute(
            update(Invoice)
            .where(Invoice.id == invoice_id)
            .values(expires_at=datetime.now(UTC) + timedelta(seconds=1))
        )
    time.sleep(1.5)
    for _ in range(3):
        world.tick()  # the node is unreachable: unknown, so nothing may expire
    assert world.load(invoice_id).status is InvoiceStatus.NEW

    world.node = start_node(tmp_path / "node", rpcport=port)  # back, with its mempool
    try:
        invoice = world.until(invoice_id, _status(InvoiceStatus.PROCESSING))
        assert not invoice.paid_late  # the node saw it before the window closed
    finally:
        world.node.stop()


def test_watcher_catches_up_every_block_it_missed(world: World) -> None:
    invoice_id = world.invoice()
    world.pay(invoice_id)
    world.mine(1)
    world.mine(4)  # five blocks pass while no worker runs
    invoice = world.until(invoice_id, _status(InvoiceStatus.SETTLED))
    assert invoice.payments[0].confirmations == 5
    with world.runtime.session_factory() as session:
        cursor = session.get(ChainCursor, "bitcoin")
        assert cursor is not None
        assert cursor.height == rpc(world.node, "getblockcount")
        assert cursor.block_hash == rpc(world.node, "getbestblockhash")


def test_rescan_finds_a_payment_the_index_missed(world: World) -> None:
    invoice_id = world.invoice()
    address = world.load(invoice_id).btc_address or ""
    world.runtime.coordinator.unwatch("btc", [address])  # as if registered too late
    world.pay(invoice_id)
    height = rpc(world.node, "getblockcount") + 1
    world.mine(1)
    world.tick()
    assert world.load(invoice_id).status is InvoiceStatus.NEW  # invisible to the watcher
    world.runtime.coordinator.watch("btc", address, invoice_id)
    with world.runtime.session_factory.begin() as session:
        rewind(session, height)
    invoice = world.until(invoice_id, _status(InvoiceStatus.SETTLED))
    assert invoice.payments[0].block_height == height


def test_a_node_of_another_network_is_refused(world: World) -> None:
    from pos.settings import BitcoinNetwork

    invoice_id = world.invoice()
    world.pay(invoice_id)
    world.close()
    world.runtime.settings = world.runtime.settings.with_overrides(
        bitcoin_network=BitcoinNetwork.TESTNET
    )
    world.duties = all_duties(world.runtime.settings)  # a fresh watcher reads the new setting
    for _ in range(3):
        world.tick()
    assert world.load(invoice_id).status is InvoiceStatus.NEW


def test_zmq_sequence_wakes_the_watcher(runtime: Runtime, tmp_path: Path) -> None:
    import socket as sockets
    import threading

    from settlement.btc_watcher import duty

    with sockets.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        endpoint = f"tcp://127.0.0.1:{probe.getsockname()[1]}"
    node = start_node(tmp_path / "zmq-node", rpcport=0, zmqpubsequence=endpoint)
    woken = threading.Event()
    watcher = duty(endpoint)
    try:
        assert watcher.start is not None
        watcher.start(woken.set)
        deadline = time.monotonic() + 20
        while not woken.is_set() and time.monotonic() < deadline:
            rpc(node, "generatetoaddress", 1, MINER_ADDRESS)  # a block: a `sequence` message
            woken.wait(0.5)
        assert woken.is_set()
    finally:
        if watcher.close is not None:
            watcher.close()
        node.stop()


def test_reconciliation_verifier_rereads_the_payment_from_its_block(world: World) -> None:
    from settlement.chains.bitcoin_core import BitcoinCoreClient
    from settlement.verifiers import BitcoinVerifier

    invoice_id = world.invoice()
    world.pay(invoice_id)
    block = world.mine(1)[0]
    invoice = world.until(invoice_id, _status(InvoiceStatus.SETTLED))
    payment = invoice.payments[0]
    payment.invoice = invoice
    client = BitcoinCoreClient(world.node.url)
    verifier = BitcoinVerifier(client)
    try:
        assert verifier.verify(payment) is True
        payment.amount_atomic += 1
        assert verifier.verify(payment) is False  # the node shows another amount
        payment.amount_atomic -= 1
        rpc(world.node, "invalidateblock", block)
        assert verifier.verify(payment) is False  # its block left the best chain
    finally:
        client.close()
    down = BitcoinVerifier(BitcoinCoreClient("http://u:p@127.0.0.1:1", timeout=0.5, retries=0))
    assert down.verify(payment) is None  # no answer is not a verdict


def test_a_long_catch_up_commits_as_it_goes(world: World) -> None:
    invoice_id = world.invoice()
    world.pay(invoice_id)
    world.mine(1)
    world.mine(150)  # more than one commit's worth of blocks while no worker runs
    world.tick()  # a single pass scans them all
    invoice = world.load(invoice_id)
    assert invoice.status is InvoiceStatus.SETTLED
    assert invoice.payments[0].confirmations == 151
    with world.runtime.session_factory() as session:
        cursor = session.get(ChainCursor, "bitcoin")
        assert cursor is not None and cursor.height == rpc(world.node, "getblockcount")
