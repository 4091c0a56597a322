"""The Bitcoin watcher over JSON-RPC (standard Core RPC only), on the sandbox and on Core.

The lifecycle scenarios of the issue (reorgs, replacements, evictions, odd outputs, downtime,
pruning) are in test_btc_scenarios.py; these are the everyday paths.
"""

from __future__ import annotations

import threading
import time
from decimal import Decimal

from btc_harness import World, status_is
from chains import Chain

from pos.models import PaymentStatus
from pos.settings import BitcoinNetwork
from pos.states import InvoiceStatus
from settlement.btc_watcher import duty, rewind
from settlement.chain_state import ChainCursor
from settlement.chains.bitcoin_core import BitcoinCoreClient
from settlement.verifiers import BitcoinVerifier
from settlement.worker import all_duties


def test_underpay_then_top_up(world: World) -> None:
    invoice_id = world.invoice()
    world.pay(invoice_id, factor=Decimal("0.5"))
    invoice = world.until(invoice_id, lambda i: i.paid_partial)
    assert invoice.status is InvoiceStatus.NEW
    assert world.uri(invoice_id).count("amount=") == 1  # the URI now asks for the rest
    world.pay(invoice_id)
    invoice = world.until(invoice_id, status_is(InvoiceStatus.PROCESSING))
    assert invoice.amount_paid_atomic >= invoice.amount_due_atomic
    assert len(invoice.payments) == 2


def test_overpay_is_flagged(world: World) -> None:
    invoice_id = world.invoice()
    world.pay(invoice_id, factor=Decimal("1.2"))
    invoice = world.until(invoice_id, lambda i: i.paid_over)
    assert invoice.status is InvoiceStatus.PROCESSING


def test_payment_after_expiry_is_paid_late(world: World) -> None:
    invoice_id = world.invoice()
    world.expire_in(invoice_id, -1)
    world.until(invoice_id, status_is(InvoiceStatus.EXPIRED))
    world.pay(invoice_id)
    invoice = world.until(invoice_id, status_is(InvoiceStatus.PROCESSING))
    assert invoice.paid_late


def test_reorg_of_depth_three_then_a_double_spend_in_the_mempool_is_invalid(
    world: World,
) -> None:
    world.set_merchant(confirmations_required=2)
    invoice_id = world.invoice()
    txid = world.pay(invoice_id)
    world.until(invoice_id, status_is(InvoiceStatus.PROCESSING))
    first = world.chain.mine(3)[0]
    world.until(invoice_id, status_is(InvoiceStatus.SETTLED))
    world.chain.rpc("invalidateblock", first)  # three blocks gone; the payment is unconfirmed
    world.chain.double_spend(txid)  # the shopper sends the same coins elsewhere (full RBF) ...
    world.chain.mine(4)  # ... and the new, longer chain confirms the double spend
    invoice = world.until(invoice_id, status_is(InvoiceStatus.INVALID))
    assert invoice.amount_paid_atomic == 0
    assert [p.status for p in invoice.payments] == [PaymentStatus.REPLACED]


def test_node_down_briefly_means_unknown_not_expired(world: World) -> None:
    invoice_id = world.invoice()
    world.pay(invoice_id)  # paid in time, but the watcher has not looked yet
    world.chain.stop()
    world.expire_in(invoice_id, 1)  # the window passes meanwhile
    time.sleep(1.5)
    for _ in range(3):
        world.tick()  # the node is unreachable: unknown, so nothing may expire
    assert world.load(invoice_id).status is InvoiceStatus.NEW
    world.chain.start()  # back, with its mempool
    invoice = world.until(invoice_id, status_is(InvoiceStatus.PROCESSING))
    assert not invoice.paid_late  # the node saw it before the window closed


def test_watcher_catches_up_every_block_it_missed(world: World) -> None:
    invoice_id = world.invoice()
    world.pay(invoice_id)
    world.chain.mine(1)
    world.chain.mine(4)  # five blocks pass while no worker runs
    invoice = world.until(invoice_id, status_is(InvoiceStatus.SETTLED))
    assert invoice.payments[0].confirmations == 5
    with world.runtime.session_factory() as session:
        cursor = session.get(ChainCursor, "bitcoin")
        assert cursor is not None
        assert cursor.height == world.chain.tip()
        assert cursor.block_hash == world.chain.rpc("getbestblockhash")


def test_rescan_finds_a_payment_the_index_missed(world: World) -> None:
    invoice_id = world.invoice()
    address = world.address(invoice_id)
    world.runtime.coordinator.unwatch("btc", [address])  # as if registered too late
    world.pay(invoice_id)
    height = world.chain.tip() + 1
    world.chain.mine(1)
    world.tick()
    assert world.load(invoice_id).status is InvoiceStatus.NEW  # invisible to the watcher
    world.runtime.coordinator.watch("btc", address, invoice_id)
    with world.runtime.session_factory.begin() as session:
        rewind(session, height)
    invoice = world.until(invoice_id, status_is(InvoiceStatus.SETTLED))
    assert invoice.payments[0].block_height == height


def test_a_node_of_another_network_is_refused(world: World) -> None:
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


def test_zmq_sequence_wakes_the_watcher(chain: Chain) -> None:
    woken = threading.Event()
    watcher = duty(chain.zmq_url)
    try:
        assert watcher.start is not None
        watcher.start(woken.set)
        deadline = time.monotonic() + 20
        while not woken.is_set() and time.monotonic() < deadline:
            chain.mine(1)  # a block: a `sequence` message
            woken.wait(0.5)
        assert woken.is_set()
    finally:
        if watcher.close is not None:
            watcher.close()


def test_reconciliation_verifier_rereads_the_payment_from_its_block(world: World) -> None:
    invoice_id = world.invoice()
    world.pay(invoice_id)
    block = world.chain.mine(1)[0]
    invoice = world.until(invoice_id, status_is(InvoiceStatus.SETTLED))
    payment = invoice.payments[0]
    payment.invoice = invoice
    client = BitcoinCoreClient(world.chain.url)
    verifier = BitcoinVerifier(client)
    try:
        assert verifier.verify(payment) is True
        payment.amount_atomic += 1
        assert verifier.verify(payment) is False  # the node shows another amount
        payment.amount_atomic -= 1
        world.chain.rpc("invalidateblock", block)
        assert verifier.verify(payment) is False  # its block left the best chain
    finally:
        client.close()
    down = BitcoinVerifier(BitcoinCoreClient("http://u:p@127.0.0.1:1", timeout=0.5, retries=0))
    assert down.verify(payment) is None  # no answer is not a verdict


def test_a_long_catch_up_commits_as_it_goes(world: World) -> None:
    invoice_id = world.invoice()
    world.pay(invoice_id)
    world.chain.mine(1)
    world.chain.mine(150)  # more than one commit's worth of blocks while no worker runs
    world.tick()  # a single pass scans them all
    invoice = world.load(invoice_id)
    assert invoice.status is InvoiceStatus.SETTLED
    assert invoice.payments[0].confirmations == 151
    with world.runtime.session_factory() as session:
        cursor = session.get(ChainCursor, "bitcoin")
        assert cursor is not None and cursor.height == world.chain.tip()


def test_merchant_policy_of_two_confirmations_waits_for_the_second(world: World) -> None:
    world.set_merchant(confirmations_required=2)
    invoice_id = world.invoice()
    world.pay(invoice_id)
    world.chain.mine(1)
    invoice = world.until(
        invoice_id, lambda i: bool(i.payments) and i.payments[0].confirmations == 1
    )
    assert invoice.status is InvoiceStatus.PROCESSING
    world.chain.mine(1)
    invoice = world.until(invoice_id, status_is(InvoiceStatus.SETTLED))
    assert (invoice.payments[0].status, invoice.payments[0].confirmations) == (
        PaymentStatus.FINAL,
        2,
    )
