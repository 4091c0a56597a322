"""Acceptance: the sandbox validator restarts (and forgets its history) while invoices are open.

surfpool keeps its ledger in memory, so after a restart the signatures the watcher recorded and
its `until` cursors point at transactions the node no longer knows. The watcher must neither
crash nor unpay anything, and must still see new payments.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from kzte_support import Shop

from pos.models import PaymentStatus
from pos.states import InvoiceStatus
from sandbox.solana.validator import start_validator
from settlement.kzte_watcher import CURSOR_PREFIX


def _port(url: str) -> int:
    port = urlsplit(url).port
    assert port is not None
    return port


def test_validator_restart_while_invoices_are_open(shop: Shop) -> None:
    paid = shop.invoice(700_00)
    waiting = shop.invoice(800_00)
    paid_sigs = shop.pay(shop.uri(paid.id))
    shop.drive_until(paid.id, lambda i: i.status is not InvoiceStatus.NEW, "processing")
    before = shop.reload(paid.id)
    cursor_key = CURSOR_PREFIX + (paid.kzte_reference or "")
    assert shop.rt.coordinator.client.get(cursor_key) == paid_sigs[0]

    old = shop.validator
    old.stop()
    # While the node is down every answer is unknown: nothing changes, nothing crashes.
    assert shop.watcher.run(shop.rt) == 0
    assert shop.watcher.last_report.unknown == shop.watcher.last_report.polled > 0

    restarted = start_validator(
        old.data_dir, rpc_port=_port(old.rpc_url), ws_port=_port(old.ws_url)
    )
    try:
        assert restarted.rpc_url == old.rpc_url and restarted.kzte_mint == old.kzte_mint
        shop.validator = restarted
        for _ in range(3):  # the new node knows none of the recorded signatures or cursors
            shop.watcher.run(shop.rt)
        after = shop.reload(paid.id)
        assert after.status is before.status
        assert after.amount_paid_atomic == before.amount_paid_atomic == paid.amount_due_atomic
        assert [(p.txid, p.status) for p in after.payments] == [
            (p.txid, p.status) for p in before.payments
        ]
        assert shop.reload(waiting.id).status is InvoiceStatus.NEW

        # A payment made on the new chain is detected and settles.
        new_sigs = shop.pay(shop.uri(waiting.id))
        settled = shop.drive_until(
            waiting.id, lambda i: i.status is InvoiceStatus.SETTLED, "settled"
        )
        assert [(p.txid, p.status) for p in settled.payments] == [
            (new_sigs[0], PaymentStatus.FINAL)
        ]
    finally:
        restarted.stop()
