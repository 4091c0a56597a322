"""Acceptance: payments found through the destination token account, on the sandbox chain.

One getSignaturesForAddress per destination per poll, whatever the number of open invoices
paying it; the reference sweep is budgeted; a Redis flush costs a re-read, never a payment.
"""

from __future__ import annotations

import time
from datetime import timedelta

from kzte_proxy import rpc_proxy
from kzte_support import DEADLINE_SECONDS, EAGER, Shop
from solders.keypair import Keypair
from sqlalchemy import update

from pos import accounts, invoices
from pos.db import utcnow
from pos.invoices import InvoiceRequest
from pos.models import Invoice, SettlementMode
from pos.states import InvoiceStatus, PaymentMethod
from settlement import kzte_store
from settlement.kzte_validation import associated_token_address
from settlement.kzte_watcher import DESTINATION_CURSOR_PREFIX, KzteWatcher


def _merchant(shop: Shop, name: str) -> tuple[int, str]:
    wallet = str(Keypair().pubkey())
    with shop.rt.session_factory() as session:
        merchant = accounts.create_merchant(
            session,
            shop.rt.settings,
            name,
            solana_wallet=wallet,
            settlement_mode=SettlementMode.DIRECT,  # each its own destination
        )
        session.commit()
        return merchant.id, wallet


def _invoices(shop: Shop, merchant_id: int, count: int) -> list[Invoice]:
    made = []
    with shop.rt.session_factory() as session:
        for n in range(count):
            request = InvoiceRequest(merchant_id, 100_00 + n, PaymentMethod.KZTE)
            made.append(invoices.create_invoice(session, shop.rt.settings, shop.rt.rates, request))
        session.commit()
        session.expunge_all()
    return made


def test_one_read_per_destination_per_poll_for_any_number_of_invoices(shop: Shop) -> None:
    many = _invoices(shop, shop.merchant_id, 25)
    other_id, other_wallet = _merchant(shop, "Second Shop")
    _invoices(shop, other_id, 5)
    mint = shop.validator.kzte_mint
    ours, theirs = (associated_token_address(w, mint) for w in (shop.wallet, other_wallet))
    watcher = KzteWatcher(EAGER, sweep_per_pass=0)  # the destination feeds alone
    with rpc_proxy(shop.validator.rpc_url) as proxy:
        shop.rt.settings = shop.rt.settings.with_overrides(solana_rpc_url=proxy.url)
        watcher.run(shop.rt)
        # direct mode: one read per merchant token account, not one per invoice
        assert sorted(proxy.signature_reads()) == sorted([ours, theirs])
        target = many[17]
        sigs = shop.pay(shop.uri(target.id))
        proxy.reset()
        passes = 0
        deadline = time.monotonic() + DEADLINE_SECONDS
        while shop.reload(target.id).status is InvoiceStatus.NEW:
            assert time.monotonic() < deadline, "the destination feed never saw the payment"
            watcher.run(shop.rt)
            passes += 1
            time.sleep(0.2)
        reads = proxy.signature_reads()
    assert len(reads) == 2 * passes and set(reads) == {ours, theirs}
    paid = shop.reload(target.id)
    assert [p.txid for p in paid.payments] == sigs
    assert paid.amount_paid_atomic == target.amount_due_atomic
    assert watcher.stats.calls["getTransaction"] == 1  # only the new signature was read
    assert watcher.stats.calls["getAccountInfo"] == 1  # the mint's token program, once
    assert shop.rt.coordinator.client.get(DESTINATION_CURSOR_PREFIX + ours) == sigs[0]
    assert all(shop.reload(i.id).payments == [] for i in many if i.id != target.id)


def test_the_reference_sweep_is_budgeted(shop: Shop) -> None:
    made = _invoices(shop, shop.merchant_id, 12)
    watcher = KzteWatcher(EAGER, sweep_per_pass=5)  # every unpaid reference always due
    ours = associated_token_address(shop.wallet, shop.validator.kzte_mint)
    with rpc_proxy(shop.validator.rpc_url) as proxy:
        shop.rt.settings = shop.rt.settings.with_overrides(solana_rpc_url=proxy.url)
        per_pass = []
        for _ in range(3):
            proxy.reset()
            watcher.run(shop.rt)
            per_pass.append(proxy.signature_reads())
    # the destination once, plus the budget: the cost does not grow with the invoices
    assert [len(reads) for reads in per_pass] == [6, 6, 6]
    assert all(reads.count(ours) == 1 for reads in per_pass)
    first, second, third = ({r for r in reads if r != ours} for reads in per_pass)
    # round robin: every reference once before any is read again (the reads of one pass run
    # concurrently, so compare sets, pass by pass)
    assert not first & second and len(first | second) == 10
    assert first | second | third == {i.kzte_reference for i in made}


def test_a_redis_flush_costs_a_re_read_never_a_payment(shop: Shop) -> None:
    first = shop.invoice(200_00)
    first_sigs = shop.pay(shop.uri(first.id))
    shop.drive_until(first.id, lambda i: i.status is not InvoiceStatus.NEW, "processing")
    cursor = DESTINATION_CURSOR_PREFIX + associated_token_address(
        shop.wallet, shop.validator.kzte_mint
    )
    assert shop.rt.coordinator.client.get(cursor) == first_sigs[0]

    shop.rt.coordinator.client.flushall()  # cursors gone; a new worker process, no memory
    second = shop.invoice(250_00)
    second_sigs = shop.pay(shop.uri(second.id))
    shop.watcher = KzteWatcher(EAGER, sweep_per_pass=0)
    shop.drive_until(second.id, lambda i: i.status is not InvoiceStatus.NEW, "processing")
    assert [p.txid for p in shop.reload(first.id).payments] == first_sigs  # not twice
    assert [p.txid for p in shop.reload(second.id).payments] == second_sigs
    # the re-read listed both; the recorded payment was not fetched again
    assert shop.watcher.stats.calls["getTransaction"] == 1
    assert shop.rt.coordinator.client.get(cursor) == second_sigs[0]


def test_a_reference_outside_the_watch_window_is_not_waited_for(shop: Shop) -> None:
    # A transfer matching no loaded invoice may pay one created after the pass loaded them:
    # the watcher asks the database, and waits only for invoices it must watch.
    fresh, old = shop.invoice(100_00), shop.invoice(100_00)
    stranger = str(Keypair().pubkey())
    with shop.rt.session_factory() as session:
        session.execute(
            update(Invoice)
            .where(Invoice.id == old.id)
            .values(status=InvoiceStatus.EXPIRED, created_at=utcnow() - timedelta(hours=30))
        )
        session.commit()
    keys = {fresh.kzte_reference or "", old.kzte_reference or "", stranger}
    assert kzte_store.references_in_scope(shop.rt, keys, utcnow()) == {fresh.kzte_reference}
