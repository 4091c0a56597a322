"""Payment lifecycle scenarios on both chains: reorgs, replacements, evictions, odd outputs,
downtime and pruning (DESIGN §5). Each asserts the exact invoice and payment statuses, the
amounts, and the merchant's payable in the ledger (posted on settle, reversed on loss).

The worker only runs when a test ticks it, so each test decides what the watcher sees.
"""

from __future__ import annotations

import logging
import time

import pytest
from btc_harness import World, status_is
from sqlalchemy import select

from pos.models import Invoice, Payment
from pos.states import InvoiceStatus
from settlement.btc_watcher import rewind
from settlement.chain_state import ChainCursor

COUNTING = ("seen", "confirmed", "final")
DOWNTIME_SECONDS = 60.0
DUST_SAT = 293  # one below the P2WPKH dust limit (294 at Core's default dust relay fee)


def events(invoice: Invoice) -> list[str]:
    return [e.type for e in invoice.events]


def payments(invoice: Invoice) -> list[tuple[str, str]]:
    return [(p.txid, p.status.value) for p in invoice.payments]


def first_payment_changed(invoice: Invoice) -> bool:
    return bool(invoice.payments) and invoice.payments[0].status.value != "seen"


def cursor_height(world: World) -> int:
    with world.runtime.session_factory() as session:
        cursor = session.get(ChainCursor, "bitcoin")
        assert cursor is not None
        return cursor.height


def paid_and_settled(world: World, blocks: int = 1) -> tuple[str, str]:
    """An invoice paid in full, seen in the mempool, then settled `blocks` blocks deep."""
    invoice_id = world.invoice()
    txid = world.pay(invoice_id)
    world.until(invoice_id, status_is(InvoiceStatus.PROCESSING))
    world.chain.mine(blocks)
    world.until(invoice_id, status_is(InvoiceStatus.SETTLED))
    assert world.payable() == world.net_tiyn(invoice_id)
    return invoice_id, txid


def test_pay_then_processing_then_settled_after_one_block(world: World) -> None:
    invoice_id = world.invoice()
    txid = world.pay(invoice_id)
    invoice = world.until(invoice_id, status_is(InvoiceStatus.PROCESSING))
    assert invoice.amount_paid_atomic == invoice.amount_due_atomic and not invoice.flags
    assert [(p.txid, p.status.value, p.confirmations) for p in invoice.payments] == [
        (txid, "seen", 0)
    ]
    assert world.payable() == 0  # nothing is owed before the payment is final
    world.chain.mine(1)
    invoice = world.until(invoice_id, status_is(InvoiceStatus.SETTLED))
    payment = invoice.payments[0]
    assert (payment.txid, payment.status.value, payment.confirmations) == (txid, "final", 1)
    assert payment.amount_atomic == invoice.amount_due_atomic == invoice.amount_paid_atomic
    assert events(invoice) == [
        "invoice.created",
        "invoice.payment_seen",
        "invoice.processing",
        "invoice.settled",
    ]
    assert world.payable() == world.net_tiyn(invoice_id) > 0
    assert world.ledger_balanced()


@pytest.mark.parametrize("depth", [1, 3, 6])
def test_reorg_with_the_payment_mined_again_settles_again(world: World, depth: int) -> None:
    invoice_id, txid = paid_and_settled(world, blocks=depth)  # the payment's block is first
    world.chain.reorg(depth, remine=True)  # a longer chain without it; back to the mempool
    invoice = world.until(invoice_id, lambda i: i.status is not InvoiceStatus.SETTLED)
    assert invoice.status is InvoiceStatus.PROCESSING
    assert events(invoice)[-1] == "invoice.reopened" and invoice.settled_at is None
    assert payments(invoice) == [(txid, "seen")]
    assert invoice.amount_paid_atomic == invoice.amount_due_atomic
    assert world.payable() == 0  # the settlement posting was reversed

    block = world.chain.mine(1)[0]  # mined again, in the new chain
    invoice = world.until(invoice_id, status_is(InvoiceStatus.SETTLED))
    assert [(p.txid, p.status.value, p.block_hash) for p in invoice.payments] == [
        (txid, "final", block)
    ]  # one row per output, whatever happened to its blocks
    assert events(invoice).count("invoice.settled") == 2
    assert events(invoice).count("invoice.reopened") == 1
    assert "invoice.invalid" not in events(invoice)
    assert world.payable() == world.net_tiyn(invoice_id)
    assert world.ledger_balanced()


@pytest.mark.parametrize("depth", [1, 3, 6])
def test_reorg_that_drops_the_payment_is_invalid_only_after_the_grace_window(
    world: World, depth: int
) -> None:
    invoice_id, txid = paid_and_settled(world, blocks=depth)
    world.chain.reorg(depth, remine=False)  # the new chain lacks it and no node has it
    invoice = world.until(invoice_id, lambda i: i.status is not InvoiceStatus.SETTLED)
    assert invoice.status is InvoiceStatus.PROCESSING  # not invalid at once
    assert events(invoice)[-1] == "invoice.reopened"
    for _ in range(3):
        world.tick()
    assert world.load(invoice_id).status is InvoiceStatus.PROCESSING
    assert world.payable() == 0  # reversed when it reopened

    assert world.backdate_missing(invoice_id) == 1  # the grace window has passed
    invoice = world.until(invoice_id, lambda i: i.status is not InvoiceStatus.PROCESSING)
    assert invoice.status is InvoiceStatus.INVALID
    assert len(invoice.payments) == 1
    payment = invoice.payments[0]
    assert payment.txid == txid and payment.status.value not in (*COUNTING, "replaced")
    assert world.payable() == 0
    assert world.ledger_balanced()


def test_fee_bump_to_the_same_address_still_pays(world: World) -> None:
    invoice_id = world.invoice()
    txid = world.pay(invoice_id)
    world.until(invoice_id, status_is(InvoiceStatus.PROCESSING))
    bumped = world.chain.bump_fee(txid)  # same payee and amount, more fee, less change
    invoice = world.until(invoice_id, lambda i: len(i.payments) == 2)
    assert invoice.status is InvoiceStatus.PROCESSING
    assert sorted(payments(invoice)) == sorted([(txid, "replaced"), (bumped, "seen")])
    assert invoice.amount_paid_atomic == invoice.amount_due_atomic
    world.chain.mine(1)
    invoice = world.until(invoice_id, status_is(InvoiceStatus.SETTLED))
    assert sorted(payments(invoice)) == sorted([(txid, "replaced"), (bumped, "final")])
    assert invoice.amount_paid_atomic == invoice.amount_due_atomic
    assert "invoice.invalid" not in events(invoice)
    assert world.payable() == world.net_tiyn(invoice_id)
    assert world.ledger_balanced()


def test_rbf_to_another_address_is_invalid(world: World) -> None:
    invoice_id = world.invoice()
    txid = world.pay(invoice_id)
    world.until(invoice_id, status_is(InvoiceStatus.PROCESSING))
    world.chain.double_spend(txid)  # same coins to the shopper's other address, more fee
    invoice = world.until(invoice_id, lambda i: i.status is not InvoiceStatus.PROCESSING)
    assert invoice.status is InvoiceStatus.INVALID
    assert payments(invoice) == [(txid, "replaced")]
    assert invoice.amount_paid_atomic == 0
    world.chain.mine(1)
    world.tick()
    invoice = world.load(invoice_id)
    assert invoice.status is InvoiceStatus.INVALID and invoice.settled_at is None
    assert world.payable() == 0


@pytest.mark.parametrize("restarted_worker", [False, True], ids=["same-worker", "new-worker"])
def test_double_spend_of_a_confirmed_payment_through_a_reorg_is_invalid(
    world: World, restarted_worker: bool
) -> None:
    invoice_id, txid = paid_and_settled(world)
    block = world.chain.rpc("getbestblockhash")
    conflict = world.chain.conflicting_tx(txid)  # the same coins, to the shopper's other key
    world.chain.rpc("invalidateblock", block)  # the payment is back in the mempool ...
    if restarted_worker:
        invoice = world.until(invoice_id, status_is(InvoiceStatus.PROCESSING))
        assert payments(invoice) == [(txid, "seen")]
        world.new_worker()  # whatever proves the conflict must come from the database
    world.chain.mine_block([conflict])  # ... and the replacing chain confirms the conflict
    invoice = world.until(
        invoice_id,
        lambda i: i.status is InvoiceStatus.INVALID or i.payments[0].status.value not in COUNTING,
    )
    assert invoice.status is InvoiceStatus.INVALID
    assert payments(invoice) == [(txid, "replaced")]
    assert invoice.amount_paid_atomic == 0
    assert world.payable() == 0
    assert world.ledger_balanced()


def test_restart_without_the_mempool_then_rebroadcast_settles_the_same_payment(
    world: World,
) -> None:
    invoice_id = world.invoice()
    txid = world.pay(invoice_id)
    invoice = world.until(invoice_id, status_is(InvoiceStatus.PROCESSING))
    payment_id = invoice.payments[0].id
    world.chain.restart(persist_mempool=False, load_wallet=False)  # the tx vanishes
    assert not world.chain.in_mempool(txid)
    invoice = world.until(invoice_id, first_payment_changed)
    assert invoice.status is InvoiceStatus.PROCESSING
    assert payments(invoice) == [(txid, "missing")]  # unknown, not replaced ...
    assert invoice.amount_paid_atomic == invoice.amount_due_atomic  # ... and still counting

    world.chain.load_wallet()  # the shopper's wallet resubmits it
    assert world.chain.in_mempool(txid)
    world.chain.mine(1)
    invoice = world.until(invoice_id, status_is(InvoiceStatus.SETTLED))
    assert [(p.id, p.txid, p.status.value) for p in invoice.payments] == [
        (payment_id, txid, "final")
    ]
    assert "invoice.invalid" not in events(invoice)
    assert world.payable() == world.net_tiyn(invoice_id)
    assert world.ledger_balanced()


def test_evicted_for_good_is_invalid_after_the_grace_window_and_revives_if_mined(
    world: World,
) -> None:
    invoice_id = world.invoice()
    txid = world.pay(invoice_id)
    invoice = world.until(invoice_id, status_is(InvoiceStatus.PROCESSING))
    payment_id = invoice.payments[0].id
    saved = world.chain.raw_tx(txid)  # somebody keeps the signed transaction
    world.chain.restart(persist_mempool=False, load_wallet=False)  # nobody rebroadcasts
    invoice = world.until(invoice_id, first_payment_changed)
    assert invoice.status is InvoiceStatus.PROCESSING
    assert payments(invoice) == [(txid, "missing")]
    for _ in range(3):
        world.tick()
    assert world.load(invoice_id).status is InvoiceStatus.PROCESSING

    assert world.backdate_missing(invoice_id) == 1  # the grace window has passed
    invoice = world.until(invoice_id, lambda i: i.status is not InvoiceStatus.PROCESSING)
    assert invoice.status is InvoiceStatus.INVALID
    assert world.payable() == 0

    world.chain.send_raw(saved)  # it was never double-spent: it can still be mined
    world.chain.mine(1)
    invoice = world.until(invoice_id, lambda i: i.status is not InvoiceStatus.INVALID)
    assert invoice.status is InvoiceStatus.SETTLED
    assert [(p.id, p.txid, p.status.value) for p in invoice.payments] == [
        (payment_id, txid, "final")
    ]
    assert world.payable() == world.net_tiyn(invoice_id)
    assert world.ledger_balanced()


def test_zero_value_and_dust_outputs_never_count_and_never_stop_the_scan(
    world: World,
) -> None:
    zero_id, dust_id, normal_id, later_id = (world.invoice() for _ in range(4))
    odd = world.chain.raw_payment([(world.address(zero_id), 0), (world.address(dust_id), DUST_SAT)])
    normal = world.pay(normal_id)
    world.chain.mine_block([odd, normal])  # one block: consensus allows what policy does not
    invoice = world.until(normal_id, status_is(InvoiceStatus.SETTLED))
    assert payments(invoice) == [(normal, "final")]
    for odd_id in (zero_id, dust_id):
        invoice = world.load(odd_id)
        assert (invoice.status, invoice.payments, invoice.amount_paid_atomic) == (
            InvoiceStatus.NEW,
            [],
            0,
        )
        assert not invoice.paid_partial
    later = world.pay(later_id)
    world.chain.mine(1)  # the next block is scanned as well
    invoice = world.until(later_id, status_is(InvoiceStatus.SETTLED))
    assert payments(invoice) == [(later, "final")]
    assert cursor_height(world) == world.chain.tip()
    assert world.payable() == world.net_tiyn(normal_id) + world.net_tiyn(later_id)


def test_a_coinbase_output_to_an_invoice_address_never_counts(world: World) -> None:
    invoice_id = world.invoice()
    world.chain.mine(1, to=world.address(invoice_id))  # a miner pays the invoice address
    world.tick()
    world.chain.mine(101)  # even once the coinbase is mature and spendable
    world.tick()
    invoice = world.load(invoice_id)
    assert (invoice.status, invoice.payments, invoice.amount_paid_atomic) == (
        InvoiceStatus.NEW,
        [],
        0,
    )
    assert not invoice.paid_partial and not invoice.paid_over
    assert cursor_height(world) == world.chain.tip()


@pytest.mark.slow
def test_node_down_for_a_minute_never_expires_an_invoice_paid_before(world: World) -> None:
    invoice_id = world.invoice()
    txid = world.pay(invoice_id)  # paid in time; the watcher has not looked yet
    world.chain.stop()
    world.expire_in(invoice_id, 1)  # its window closes during the downtime
    deadline = time.monotonic() + DOWNTIME_SECONDS
    while time.monotonic() < deadline:
        world.tick()  # every pass finds the node down: unknown, so nothing may expire
        assert world.load(invoice_id).status is InvoiceStatus.NEW
        time.sleep(2)
    world.chain.start()
    invoice = world.until(invoice_id, lambda i: i.status is not InvoiceStatus.NEW)
    assert invoice.status is InvoiceStatus.PROCESSING
    assert not invoice.paid_late  # the node had it before the window closed
    assert payments(invoice) == [(txid, "seen")]
    assert "invoice.expired" not in events(invoice)


def test_a_pruned_node_stops_the_watcher_with_a_rescan_hint(
    pruned_world: World, caplog: pytest.LogCaptureFixture
) -> None:
    world, chain = pruned_world, pruned_world.chain
    checkpoint = cursor_height(world)
    chain.mine(600)  # the worker is away for a long time ...
    last_pruned = chain.prune(chain.tip() - 288)  # ... and the node prunes what it missed
    assert last_pruned > checkpoint + 1
    invoice_id = world.invoice()
    txid = world.pay(invoice_id)
    chain.mine(1)  # paid in a block that is still available

    with caplog.at_level(logging.ERROR):
        world.tick()  # must neither raise nor skip the pruned blocks
    hints = [
        r
        for r in caplog.records
        if r.levelno == logging.ERROR
        and "cryptocity rescan bitcoin --from-height" in r.getMessage()
    ]
    assert hints, [r.getMessage() for r in caplog.records]
    assert cursor_height(world) == checkpoint
    assert world.load(invoice_id).status is InvoiceStatus.NEW

    available = int(chain.rpc("getblockchaininfo")["pruneheight"])
    with world.runtime.session_factory.begin() as session:
        rewind(session, available)  # what `cryptocity rescan bitcoin --from-height` does
    caplog.clear()
    with caplog.at_level(logging.ERROR):
        invoice = world.until(invoice_id, status_is(InvoiceStatus.SETTLED))
    assert payments(invoice) == [(txid, "final")]
    assert cursor_height(world) == chain.tip()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_payments_are_unique_per_output(world: World) -> None:
    invoice_id, txid = paid_and_settled(world)
    world.chain.mine(2)
    world.tick()
    with world.runtime.session_factory() as session:
        rows = session.scalars(select(Payment).where(Payment.txid == txid)).all()
    assert [(p.invoice_id, p.status.value, p.confirmations) for p in rows] == [
        (invoice_id, "final", 3)
    ]
