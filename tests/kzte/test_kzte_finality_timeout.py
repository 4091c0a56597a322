"""Regression (issue #20, item 7): a KZTE payment that is `confirmed` but never finalizes.

Before the finality timeout such an invoice stayed `processing` forever. Now, past the timeout
the payment is unknown (MISSING) with an ERROR log and an audit row for the operator; it keeps
counting for the grace window, then the invoice turns invalid — never settled — and a late
finalization still settles it.

The sandbox validator is real; a proxy in front of it reports `finalized` statuses as
`confirmed` (a node whose confirmed block never finalizes), and the payment's timestamps are
moved back instead of waiting ten minutes and an hour.
"""

from __future__ import annotations

import json
import logging
import time
import urllib.request
from datetime import timedelta

import pytest
from kzte_proxy import rpc_proxy
from kzte_support import DEADLINE_SECONDS, Shop
from sqlalchemy import select, update

from pos.models import AuditLog, Invoice, Payment, PaymentStatus
from pos.states import InvoiceStatus
from settlement.kzte_store import FINALITY_ALERT, FINALITY_TIMEOUT
from settlement.payments import UNKNOWN_GRACE


def _node_commitment(rpc_url: str, signature: str) -> str | None:
    """What the validator itself says of the signature (no proxy in between)."""
    body = json.dumps(
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "getSignatureStatuses",
            "params": [[signature], {"searchTransactionHistory": True}],
        }
    ).encode()
    request = urllib.request.Request(rpc_url, body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as answer:
        status = json.loads(answer.read())["result"]["value"][0]
    return None if status is None else str(status["confirmationStatus"])


def _backdate(shop: Shop, signature: str, **moved_back: timedelta) -> None:
    with shop.rt.session_factory.begin() as session:
        payment = session.scalars(select(Payment).where(Payment.txid == signature)).one()
        values = {}
        for column, delta in moved_back.items():
            current = getattr(payment, column)
            assert current is not None, column
            values[column] = current - delta
        session.execute(update(Payment).where(Payment.id == payment.id).values(values))


def _events(shop: Shop, invoice_id: str) -> list[str]:
    with shop.rt.session_factory() as session:
        return [e.type for e in session.get_one(Invoice, invoice_id).events]


def _alerts(shop: Shop) -> list[AuditLog]:
    with shop.rt.session_factory() as session:
        rows = session.scalars(select(AuditLog).where(AuditLog.action == FINALITY_ALERT)).all()
        session.expunge_all()
        return list(rows)


def test_confirmed_payment_that_never_finalizes_is_unknown_then_invalid_then_revives(
    shop: Shop, caplog: pytest.LogCaptureFixture
) -> None:
    invoice = shop.invoice(900_00)
    with rpc_proxy(shop.validator.rpc_url) as proxy:
        proxy.hold_finality = True
        shop.rt.settings = shop.rt.settings.with_overrides(solana_rpc_url=proxy.url)
        (signature,) = shop.pay(shop.uri(invoice.id))
        seen = shop.drive_until(
            invoice.id, lambda i: i.status is not InvoiceStatus.NEW, "processing"
        )
        assert seen.status is InvoiceStatus.PROCESSING
        assert [(p.txid, p.status) for p in seen.payments] == [(signature, PaymentStatus.SEEN)]

        # The node finalizes it; the watcher is shown `confirmed` only.
        deadline = time.monotonic() + DEADLINE_SECONDS
        while _node_commitment(shop.validator.rpc_url, signature) != "finalized":
            assert time.monotonic() < deadline, "surfpool never finalized the payment"
            time.sleep(0.5)
        shop.watcher.run(shop.rt)
        held = shop.reload(invoice.id)
        assert held.status is InvoiceStatus.PROCESSING  # within the timeout: nothing changes
        assert [p.status for p in held.payments] == [PaymentStatus.SEEN]
        assert _alerts(shop) == []

        # The finality timeout passes: unknown, still counting, and the operator is told.
        _backdate(shop, signature, first_seen_at=FINALITY_TIMEOUT + timedelta(minutes=1))
        with caplog.at_level(logging.ERROR, logger="settlement.kzte_store"):
            shop.watcher.run(shop.rt)
        unknown = shop.reload(invoice.id)
        assert unknown.status is InvoiceStatus.PROCESSING
        assert unknown.amount_paid_atomic == invoice.amount_due_atomic
        (payment,) = unknown.payments
        assert payment.status is PaymentStatus.MISSING and payment.missing_since is not None
        errors = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert len(errors) == 1 and signature in errors[0].getMessage()
        (alert,) = _alerts(shop)
        assert alert.merchant_id == shop.merchant_id
        assert alert.detail["invoice_id"] == invoice.id
        assert alert.detail["signature"] == signature
        assert alert.detail["confirmed_for_seconds"] >= FINALITY_TIMEOUT.total_seconds()
        shop.watcher.run(shop.rt)  # one alert per payment, not one per pass
        assert len(_alerts(shop)) == 1
        assert shop.reload(invoice.id).payments[0].status is PaymentStatus.MISSING

        # The grace window passes: the invoice is invalid, and it was never settled.
        _backdate(shop, signature, missing_since=UNKNOWN_GRACE + timedelta(minutes=1))
        shop.watcher.run(shop.rt)
        invalid = shop.reload(invoice.id)
        assert invalid.status is InvoiceStatus.INVALID
        assert invalid.amount_paid_atomic == 0 and invalid.settled_at is None
        assert "invoice.settled" not in _events(shop, invoice.id)

        # The node reports it finalized after all: the money arrived, the invoice settles.
        proxy.hold_finality = False
        settled = shop.drive_until(
            invoice.id, lambda i: i.status is InvoiceStatus.SETTLED, "settled"
        )
        assert [(p.txid, p.status) for p in settled.payments] == [(signature, PaymentStatus.FINAL)]
        types = _events(shop, invoice.id)
        assert types[types.index("invoice.invalid") :] == [
            "invoice.invalid",
            "invoice.payment_seen",  # the amount counts again
            "invoice.processing",
            "invoice.settled",
        ]
        assert types.count("invoice.settled") == 1
        assert len(_alerts(shop)) == 1
