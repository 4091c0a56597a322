"""Acceptance: KZTE invoices paid on the sandbox chain, watched over JSON-RPC."""

from __future__ import annotations

import re
import time
from datetime import timedelta
from decimal import Decimal

import pytest
from kzte_support import DEADLINE_SECONDS, EAGER, Shop
from solders.keypair import Keypair
from sqlalchemy import select, update

from pos import invoices
from pos.db import utcnow
from pos.models import Invoice, InvoiceEvent, PaymentStatus
from pos.states import EventType, InvoiceStatus, PaymentMethod
from settlement.kzte_validation import associated_token_address
from settlement.kzte_watcher import (
    CHAIN,
    CURSOR_PREFIX,
    DESTINATION_CURSOR_PREFIX,
    METHOD,
    KzteWatcher,
    duty,
)
from settlement.verifiers import SolanaVerifier


def test_pay_goes_processing_then_settled(shop: Shop) -> None:
    invoice = shop.invoice(1500_00)
    assert shop.watcher.run(shop.rt) == 0  # nothing paid yet: nothing changes
    sigs = shop.pay(shop.uri(invoice.id))

    seen = shop.drive_until(invoice.id, lambda i: i.status is not InvoiceStatus.NEW, "processing")
    assert seen.status in (InvoiceStatus.PROCESSING, InvoiceStatus.SETTLED)
    assert seen.amount_paid_atomic == invoice.amount_due_atomic == 1500_000000
    assert [(p.chain, p.txid, p.output_index) for p in seen.payments] == [(CHAIN, sigs[0], 0)]

    settled = shop.drive_until(invoice.id, lambda i: i.status is InvoiceStatus.SETTLED, "settled")
    assert [p.status for p in settled.payments] == [PaymentStatus.FINAL]
    assert settled.flags == []
    assert settled.settled_at is not None
    # the destination's cursor moved: later polls ask only for newer signatures
    destination = associated_token_address(shop.wallet, shop.validator.kzte_mint)
    assert shop.rt.coordinator.client.get(DESTINATION_CURSOR_PREFIX + destination) == sigs[0]
    assert shop.watcher.stats.calls["getTransaction"] == 1
    # Reconciliation re-reads it from the node and agrees; a tampered amount does not.
    payment = settled.payments[0]
    payment.invoice = settled
    verifier = SolanaVerifier(shop.validator.rpc_url)
    assert verifier.verify(payment) is True
    payment.amount_atomic += 1
    assert verifier.verify(payment) is False


def test_underpay_then_top_up(shop: Shop) -> None:
    invoice = shop.invoice(1000_00)
    first = shop.pay(shop.uri(invoice.id), amount_factor=Decimal("0.4"))
    partial = shop.drive_until(invoice.id, lambda i: i.paid_partial, "paid_partial")
    assert partial.status is InvoiceStatus.NEW
    assert partial.amount_paid_atomic == 400_000000

    top_up_uri = shop.uri(invoice.id)  # the URI now asks for the remainder
    assert "amount=600&" in top_up_uri
    second = shop.pay(top_up_uri)
    done = shop.drive_until(invoice.id, lambda i: i.status is InvoiceStatus.SETTLED, "settled")
    assert done.amount_paid_atomic == 1000_000000
    assert sorted(p.txid for p in done.payments) == sorted(first + second)
    assert "paid_over" not in done.flags


def test_overpay_records_both_signatures(shop: Shop) -> None:
    invoice = shop.invoice(200_00)
    uri = shop.uri(invoice.id)
    first = shop.pay(uri)
    shop.drive_until(invoice.id, lambda i: i.status is not InvoiceStatus.NEW, "processing")
    second = shop.pay(uri)  # the shopper scans the same QR again
    over = shop.drive_until(invoice.id, lambda i: i.paid_over, "paid_over")
    assert over.amount_paid_atomic == 2 * invoice.amount_due_atomic
    assert sorted(p.txid for p in over.payments) == sorted(first + second)
    final = shop.drive_until(
        invoice.id,
        lambda i: all(p.status is PaymentStatus.FINAL for p in i.payments),
        "final in both payments",
    )
    assert final.status is InvoiceStatus.SETTLED and final.paid_over


def test_wrong_mint_is_not_counted(shop: Shop, caplog: pytest.LogCaptureFixture) -> None:
    invoice = shop.invoice(300_00)
    sigs = shop.pay(shop.uri(invoice.id), wrong_mint=True)
    # decided on the first pass that sees it: rejected, logged, cursor moved past it
    shop.drive_until(invoice.id, lambda _i: shop.watcher.last_report.rejected == 1, "judged")
    after = shop.reload(invoice.id)
    assert after.status is InvoiceStatus.NEW
    assert after.amount_paid_atomic == 0 and after.payments == []
    assert any("wrong mint" in r.getMessage() and sigs[0] in r.getMessage() for r in caplog.records)
    assert shop.rt.coordinator.client.get(CURSOR_PREFIX + invoice.kzte_reference) == sigs[0]  # type: ignore[operator]
    assert _rejections(shop, invoice.id) == [(sigs[0], "wrong_mint")]  # the owner's timeline


def test_wrong_recipient_is_not_counted(shop: Shop, caplog: pytest.LogCaptureFixture) -> None:
    invoice = shop.invoice(300_00)
    thief = str(Keypair().pubkey())
    altered = shop.uri(invoice.id).replace(f"solana:{shop.wallet}?", f"solana:{thief}?")
    assert thief in altered and invoice.kzte_reference in altered  # type: ignore[operator]
    sigs = shop.pay(altered)
    shop.drive_until(invoice.id, lambda _i: shop.watcher.last_report.rejected == 1, "judged")
    after = shop.reload(invoice.id)
    assert after.status is InvoiceStatus.NEW and after.payments == []
    assert any(
        "wrong recipient" in r.getMessage() and sigs[0] in r.getMessage() for r in caplog.records
    )
    assert _rejections(shop, invoice.id) == [(sigs[0], "wrong_recipient")]
    # A watcher that forgot it (a restart, a new leader) judges it again: noted once only.
    KzteWatcher(schedule=EAGER).run(shop.rt)
    assert _rejections(shop, invoice.id) == [(sigs[0], "wrong_recipient")]


def _rejections(shop: Shop, invoice_id: str) -> list[tuple[str, str]]:
    """(signature, reason) of the invoice's "payment not accepted" timeline events."""
    with shop.rt.session_factory() as session:
        events = session.scalars(
            select(InvoiceEvent)
            .where(
                InvoiceEvent.invoice_id == invoice_id,
                InvoiceEvent.type == EventType.PAYMENT_REJECTED.value,
            )
            .order_by(InvoiceEvent.invoice_version)
        ).all()
        return [(e.data["txid"], e.data["reason"]) for e in events]


def test_expired_then_paid_late(shop: Shop) -> None:
    invoice = shop.invoice(500_00)
    with shop.rt.session_factory() as session:
        session.execute(
            update(Invoice)
            .where(Invoice.id == invoice.id)
            .values(expires_at=utcnow() - timedelta(minutes=1))
        )
        assert invoices.expire_due(session) == [invoice.id]
        session.commit()
    shop.pay(shop.uri(invoice.id))
    late = shop.drive_until(invoice.id, lambda i: i.status is InvoiceStatus.SETTLED, "settled")
    assert late.paid_late
    assert late.amount_paid_atomic == invoice.amount_due_atomic


def test_duty_is_leader_only_and_polls(shop: Shop) -> None:
    d = duty(KzteWatcher(EAGER))
    assert d.leader_only and d.interval_seconds == 1.0 and d.name == "kzte-watcher"
    assert duty().leader_only
    invoice = shop.invoice(250_00)
    shop.pay(shop.uri(invoice.id))
    deadline = time.monotonic() + DEADLINE_SECONDS
    while shop.reload(invoice.id).status is InvoiceStatus.NEW:  # driven through the duty itself
        assert time.monotonic() < deadline, "the duty never saw the payment"
        d.run(shop.rt)
        time.sleep(0.2)
    assert shop.reload(invoice.id).amount_paid_atomic == invoice.amount_due_atomic


def test_node_timeout_is_unknown_and_changes_nothing(shop: Shop, silent_port: int) -> None:
    invoice = shop.invoice(400_00)
    shop.pay(shop.uri(invoice.id))
    live_url = shop.rt.settings.solana_rpc_url
    shop.rt.settings = shop.rt.settings.with_overrides(
        solana_rpc_url=f"http://127.0.0.1:{silent_port}"
    )
    watcher = KzteWatcher(EAGER, timeout_seconds=0.5, attempts=2)
    assert watcher.run(shop.rt) == 0
    # the mint's token program (it names the destination) and the reference sweep: unknown
    assert watcher.last_report.unknown == watcher.last_report.polled == 2
    assert watcher.stats.calls["getAccountInfo"] == 2  # retried, then gave up
    assert watcher.stats.calls["getSignaturesForAddress"] == 2
    untouched = shop.reload(invoice.id)
    assert untouched.status is InvoiceStatus.NEW and untouched.payments == []
    assert shop.rt.coordinator.client.get(CURSOR_PREFIX + invoice.kzte_reference) is None  # type: ignore[operator]
    assert not shop.rt.coordinator.client.keys(DESTINATION_CURSOR_PREFIX + "*")
    # the node is back: the same watcher finds the payment
    shop.rt.settings = shop.rt.settings.with_overrides(solana_rpc_url=live_url)
    shop.watcher = watcher
    shop.drive_until(invoice.id, lambda i: i.status is not InvoiceStatus.NEW, "processing")


def test_expiry_waits_for_a_complete_view_of_the_chain(shop: Shop, silent_port: int) -> None:
    invoice = shop.invoice(600_00)
    now = utcnow()
    with shop.rt.session_factory() as session:
        session.execute(
            update(Invoice)
            .where(Invoice.id == invoice.id)
            .values(created_at=now - timedelta(minutes=20), expires_at=now - timedelta(minutes=1))
        )
        session.commit()

    def sweep() -> list[str]:
        cutoff = shop.rt.coordinator.watermark(METHOD)
        with shop.rt.session_factory() as session:
            expired = invoices.expire_due(session, cutoffs={PaymentMethod.KZTE: cutoff})
            session.commit()
        return expired

    live_url = shop.rt.settings.solana_rpc_url
    shop.rt.settings = shop.rt.settings.with_overrides(
        solana_rpc_url=f"http://127.0.0.1:{silent_port}"
    )
    watcher = KzteWatcher(EAGER, timeout_seconds=0.3, attempts=1)
    watcher.run(shop.rt)  # the node hangs: the reference was never read
    mark = shop.rt.coordinator.watermark(METHOD)
    assert mark is not None and mark < now - timedelta(minutes=1)
    assert sweep() == []  # a payment made in time might still be on its way

    shop.rt.settings = shop.rt.settings.with_overrides(solana_rpc_url=live_url)
    watcher.run(shop.rt)  # read completely: nothing paid
    assert sweep() == [invoice.id]


def test_one_transfer_never_pays_two_invoices(shop: Shop, caplog: pytest.LogCaptureFixture) -> None:
    first, second = shop.invoice(350_00), shop.invoice(350_00)
    # No memo, so only the reference ties the transfer to an invoice, and it names both.
    uri = re.sub(r"&memo=[^&]*", "", shop.uri(first.id))
    both = f"{uri}&reference={second.kzte_reference}"
    sigs = shop.pay(both)
    shop.drive_until(
        first.id,
        lambda _i: any(shop.reload(i.id).payments for i in (first, second)),
        "paid once",
    )
    for _ in range(3):
        shop.watcher.run(shop.rt)
    payments = [p for i in (first, second) for p in shop.reload(i.id).payments]
    assert [p.txid for p in payments] == sigs
    assert any("already pays invoice" in r.getMessage() for r in caplog.records)
