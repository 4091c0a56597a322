"""Issue #14 refunds on the sandbox Bitcoin node and on a real Bitcoin Core: the refund watcher
posts a refund only when a transaction in the best chain pays the claimed address the claimed
satoshi — and, for the zone (`tenge`), spends an output the zone itself received. Without a
transaction index the watcher finds it in the mempool or in the blocks mined since."""

from __future__ import annotations

import time

import pytest
from btc_harness import World, make_world, status_is
from chains import Chain
from zone_wallet import SHOPPER, zone_spend

from pos import accounts
from pos.demo_wallets import demo_account_xpub
from pos.models import Payment, SettlementMode
from pos.runtime import Runtime
from pos.states import InvoiceStatus
from settlement import refund_watch
from settlement.ledger import refunds
from settlement.ledger.balances import balance_map
from settlement.ledger.models import Refund, RefundStatus

pytestmark = [pytest.mark.db, pytest.mark.slow]


def _world(runtime: Runtime, chain: Chain, mode: SettlementMode) -> World:
    with runtime.session_factory.begin() as session:
        merchant = accounts.create_merchant(
            session,
            runtime.settings,
            f"{mode.value} refunds",
            btc_xpub=demo_account_xpub(f"refunds {mode.value}", runtime.settings.bitcoin_network),
            settlement_mode=mode,
        )
    return make_world(runtime, chain, merchant)


def _overpaid(world: World) -> tuple[str, Payment]:
    invoice_id = world.invoice(250_000)
    due = world.load(invoice_id).amount_due_atomic
    world.chain.pay(world.address(invoice_id), due + 30_000)
    world.chain.mine(1)
    world.until(invoice_id, status_is(InvoiceStatus.SETTLED))
    world.tick()
    world.tick()  # booked
    return invoice_id, world.load(invoice_id).payments[0]


def _claimed_refund(world: World, invoice_id: str) -> int:
    with world.runtime.session_factory() as session:
        refund = refunds.create(session, world.runtime.settings, invoice_id)
        assert refund.amount_atomic == 30_000
        refunds.claim(session, world.runtime.settings, refund.token, SHOPPER)
        session.commit()
        return refund.id


def _record(world: World, refund_id: int, txid: str) -> None:
    with world.runtime.session_factory() as session:
        refunds.record_sent(session, refund_id, txid)  # searched from a day of blocks back
        session.commit()


def _watch(world: World, refund_id: int, until: str, passes: int = 30) -> Refund:
    for _ in range(passes):
        refund_watch.run(world.runtime)
        with world.runtime.session_factory() as session:
            refund = session.get_one(Refund, refund_id)
            session.expunge(refund)
        if refund.status.value == until or (refund.problem or "").find(until) >= 0:
            return refund
        time.sleep(0.1)
    raise AssertionError(f"refund {refund_id}: {refund.status} {refund.problem}")


def test_a_zone_refund_must_spend_the_zones_coins_and_is_posted_once_mined(
    runtime: Runtime, chain: Chain
) -> None:
    world = _world(runtime, chain, SettlementMode.TENGE)
    invoice_id, payment = _overpaid(world)
    refund_id = _claimed_refund(world, invoice_id)

    stranger = world.chain.pay(SHOPPER, 30_000)  # pays the claim, but not from the zone
    _record(world, refund_id, stranger)
    world.chain.mine(1)
    assert "spends nothing the zone received" in (
        _watch(world, refund_id, "spends nothing").problem or ""
    )

    index = world.load(invoice_id).btc_derivation_index or 0
    txid = world.chain.send_raw(zone_spend(payment, index, SHOPPER, 30_000))
    _record(world, refund_id, txid)  # the right transaction replaces the wrong one
    assert "confirmations" in (_watch(world, refund_id, "confirmations").problem or "")
    world.chain.mine(1)
    done = _watch(world, refund_id, "confirmed")
    assert done.transaction_id is not None
    with runtime.session_factory() as session:
        balances = balance_map(session)
    assert balances["zone:refunds_due"][0] == 0
    assert balances["zone:clearing:btc"][1] == payment.amount_atomic - 30_000
    world.close()


def test_a_direct_refund_found_in_a_later_block_without_a_transaction_index(
    runtime: Runtime, chain: Chain
) -> None:
    world = _world(runtime, chain, SettlementMode.DIRECT)
    invoice_id, _payment = _overpaid(world)
    refund_id = _claimed_refund(world, invoice_id)
    txid = world.chain.pay(SHOPPER, 29_000)  # the merchant's wallet sends too little first
    world.chain.mine(2)
    _record(world, refund_id, txid)
    assert "the claim is 30000 sat" in (_watch(world, refund_id, "the claim is").problem or "")
    right = world.chain.pay(SHOPPER, 30_000)
    _record(world, refund_id, right)
    world.chain.mine(1)
    done = _watch(world, refund_id, "confirmed")
    assert done.block_hash is not None and done.status is RefundStatus.CONFIRMED
    with runtime.session_factory() as session:
        balances = balance_map(session)
    merchant = world.merchant_id
    assert balances[f"merchant:{merchant}:refunds_owed"][0] == 0
    world.close()
