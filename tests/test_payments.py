"""settlement.payments: observed payments drive the invoice state machine (real database)."""

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.orm import Session

from pos import invoices
from pos.models import Invoice, PaymentStatus
from pos.runtime import Runtime
from pos.states import InvoiceStatus, PaymentMethod
from settlement.payments import REORG_GRACE, Observation, observe_payment, reevaluate

import factories


@pytest.fixture
def invoice(runtime: Runtime, session: Session) -> Invoice:
    shop = factories.merchant(session, runtime.settings)
    created = invoices.create_invoice(
        session,
        runtime.settings,
        runtime.rates,
        invoices.InvoiceRequest(shop.id, 250_000, PaymentMethod.KZTE),
    )
    session.commit()
    return created


def _see(
    session: Session,
    invoice: Invoice,
    txid: str,
    amount: int,
    status: PaymentStatus,
    now: datetime | None = None,
) -> list[str]:
    observe_payment(session, invoice, Observation("solana", txid, 0, amount, status), now)
    events = reevaluate(session, invoice, now)
    session.commit()
    return events


def test_full_payment_processing_then_settled(session: Session, invoice: Invoice) -> None:
    due = invoice.amount_due_atomic
    assert _see(session, invoice, "tx1", due, PaymentStatus.SEEN) == [
        "invoice.payment_seen",
        "invoice.processing",
    ]
    assert _see(session, invoice, "tx1", due, PaymentStatus.FINAL) == ["invoice.settled"]
    assert _see(session, invoice, "tx1", due, PaymentStatus.FINAL) == []  # idempotent
    assert invoice.status is InvoiceStatus.SETTLED and invoice.amount_paid_atomic == due


def test_underpay_then_top_up(session: Session, invoice: Invoice) -> None:
    due = invoice.amount_due_atomic
    assert _see(session, invoice, "a", due // 2, PaymentStatus.FINAL) == [
        "invoice.payment_seen",
        "invoice.paid_partial",
    ]
    assert invoice.status is InvoiceStatus.NEW
    events = _see(session, invoice, "b", due - due // 2, PaymentStatus.FINAL)
    assert events == ["invoice.payment_seen", "invoice.processing", "invoice.settled"]
    assert invoice.paid_partial and not invoice.paid_over


def test_overpayment_is_a_payment(session: Session, invoice: Invoice) -> None:
    events = _see(session, invoice, "a", invoice.amount_due_atomic + 1, PaymentStatus.SEEN)
    assert events == ["invoice.payment_seen", "invoice.processing", "invoice.paid_over"]


def test_tolerance_counts_a_slightly_short_payment_as_paid(
    session: Session, invoice: Invoice
) -> None:
    invoice.merchant.tolerance_bp = 100  # 1 %
    short = invoice.amount_due_atomic * 995 // 1000
    assert "invoice.processing" in _see(session, invoice, "a", short, PaymentStatus.SEEN)
    assert not invoice.paid_partial


def test_payment_after_expiry_lands_as_paid_late(session: Session, invoice: Invoice) -> None:
    invoice.expires_at = datetime.now(UTC) - timedelta(minutes=1)
    invoices.expire_due(session)
    session.commit()
    events = _see(session, invoice, "a", invoice.amount_due_atomic, PaymentStatus.SEEN)
    assert events == ["invoice.payment_seen", "invoice.paid_late", "invoice.processing"]


def test_on_time_payment_noticed_after_downtime_is_not_late(
    session: Session, invoice: Invoice
) -> None:
    # The chain knew it before expiry; the watcher only noticed later.
    paid_at = invoice.created_at + timedelta(minutes=1)
    observe_payment(
        session,
        invoice,
        Observation(
            "solana", "a", 0, invoice.amount_due_atomic, PaymentStatus.SEEN, seen_at=paid_at
        ),
        now=invoice.expires_at + timedelta(minutes=5),
    )
    assert reevaluate(session, invoice) == ["invoice.payment_seen", "invoice.processing"]


def test_double_spent_payment_makes_the_invoice_invalid(session: Session, invoice: Invoice) -> None:
    _see(session, invoice, "a", invoice.amount_due_atomic, PaymentStatus.SEEN)
    events = _see(session, invoice, "a", invoice.amount_due_atomic, PaymentStatus.REPLACED)
    assert events == ["invoice.payment_seen", "invoice.invalid"]
    assert invoice.amount_paid_atomic == 0


def test_reorged_payment_waits_for_the_grace_window(session: Session, invoice: Invoice) -> None:
    _see(session, invoice, "a", invoice.amount_due_atomic, PaymentStatus.CONFIRMED)
    now = datetime.now(UTC)
    assert _see(session, invoice, "a", invoice.amount_due_atomic, PaymentStatus.REORGED, now) == [
        "invoice.payment_seen"
    ]
    assert invoice.status is InvoiceStatus.PROCESSING
    assert reevaluate(session, invoice, now + REORG_GRACE + timedelta(seconds=1)) == [
        "invoice.invalid"
    ]


def test_reorg_takes_a_settled_invoice_back_to_processing(
    session: Session, invoice: Invoice
) -> None:
    _see(session, invoice, "a", invoice.amount_due_atomic, PaymentStatus.FINAL)
    assert invoice.status is InvoiceStatus.SETTLED
    assert _see(session, invoice, "a", invoice.amount_due_atomic, PaymentStatus.CONFIRMED) == [
        "invoice.reopened"
    ]
    assert invoice.status is InvoiceStatus.PROCESSING and invoice.settled_at is None
    assert _see(session, invoice, "a", invoice.amount_due_atomic, PaymentStatus.FINAL) == [
        "invoice.settled"
    ]


def test_the_same_output_is_stored_once(session: Session, invoice: Invoice) -> None:
    for _ in range(3):
        _see(session, invoice, "a", invoice.amount_due_atomic, PaymentStatus.SEEN)
    assert len(invoice.payments) == 1
