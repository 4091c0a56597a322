"""settlement.payments: observed payments drive the invoice state machine (real database)."""

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy.orm import Session

from pos import invoices
from pos.models import Invoice, PaymentStatus
from pos.runtime import Runtime
from pos.states import InvoiceStatus, PaymentMethod
from settlement.payments import (
    UNKNOWN_GRACE,
    Observation,
    PaymentFact,
    assess,
    observe_payment,
    reevaluate,
    reevaluate_safely,
)

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


def test_reorged_payment_keeps_counting_for_the_grace_window(
    session: Session, invoice: Invoice
) -> None:
    _see(session, invoice, "a", invoice.amount_due_atomic, PaymentStatus.CONFIRMED)
    now = datetime.now(UTC)
    assert _see(session, invoice, "a", invoice.amount_due_atomic, PaymentStatus.REORGED, now) == []
    assert invoice.status is InvoiceStatus.PROCESSING
    assert invoice.amount_paid_atomic == invoice.amount_due_atomic  # unknown, not gone
    assert reevaluate(session, invoice, now + UNKNOWN_GRACE + timedelta(seconds=1)) == [
        "invoice.payment_seen",
        "invoice.invalid",
    ]


def test_a_settled_invoice_reorged_out_for_good_turns_invalid(
    session: Session, invoice: Invoice
) -> None:
    # Issue #13.2: a settled invoice whose payment was reorged out and never re-mined.
    _see(session, invoice, "a", invoice.amount_due_atomic, PaymentStatus.FINAL)
    now = datetime.now(UTC)
    events = _see(session, invoice, "a", invoice.amount_due_atomic, PaymentStatus.REORGED, now)
    assert events == ["invoice.reopened"] and invoice.status is InvoiceStatus.PROCESSING
    later = now + UNKNOWN_GRACE + timedelta(minutes=1)
    assert reevaluate(session, invoice, later)[-1] == "invoice.invalid"


def test_a_vanished_payment_is_unknown_and_revives_when_mined(
    session: Session, invoice: Invoice
) -> None:
    # Issue #13.1: vanished from the mempool (node restart) is not double-spent.
    due = invoice.amount_due_atomic
    _see(session, invoice, "a", due, PaymentStatus.SEEN)
    now = datetime.now(UTC)
    assert _see(session, invoice, "a", due, PaymentStatus.MISSING, now) == []
    assert invoice.status is InvoiceStatus.PROCESSING
    # Past the grace window it no longer counts: invalid ...
    assert reevaluate(session, invoice, now + timedelta(hours=2))[-1] == "invoice.invalid"
    session.commit()
    # ... until the very same transaction is mined after all.
    events = _see(session, invoice, "a", due, PaymentStatus.FINAL)
    assert events == ["invoice.payment_seen", "invoice.processing", "invoice.settled"]
    assert invoice.status is InvoiceStatus.SETTLED and len(invoice.payments) == 1


def test_missing_since_is_the_first_moment_it_went_missing(
    session: Session, invoice: Invoice
) -> None:
    due = invoice.amount_due_atomic
    first = datetime.now(UTC)
    _see(session, invoice, "a", due, PaymentStatus.SEEN)
    _see(session, invoice, "a", due, PaymentStatus.MISSING, first)
    _see(session, invoice, "a", due, PaymentStatus.REORGED, first + timedelta(minutes=30))
    assert invoice.payments[0].missing_since == first
    _see(session, invoice, "a", due, PaymentStatus.SEEN)
    assert invoice.payments[0].missing_since is None


def test_a_marked_invoice_is_never_moved_by_a_watcher(session: Session, invoice: Invoice) -> None:
    invoices.mark(session, invoice, InvoiceStatus.SETTLED, "paid in cash", None)
    session.commit()
    events = _see(session, invoice, "a", invoice.amount_due_atomic, PaymentStatus.SEEN)
    assert events == ["invoice.payment_seen"]
    assert _see(session, invoice, "a", invoice.amount_due_atomic, PaymentStatus.REPLACED) == [
        "invoice.payment_seen"
    ]
    assert invoice.status is InvoiceStatus.SETTLED


def test_a_payment_after_the_late_window_never_counts(session: Session, invoice: Invoice) -> None:
    # Issue #13.7: three days after expiry is far past the 24-hour late window.
    invoice.expires_at = datetime.now(UTC) - timedelta(days=3)
    invoices.expire_due(session)
    session.commit()
    events = _see(session, invoice, "a", invoice.amount_due_atomic, PaymentStatus.FINAL)
    assert events == ["invoice.payment_rejected"]  # issue #17.5: the timeline says why
    assert invoice.status is InvoiceStatus.EXPIRED and not invoice.paid_late
    assert invoice.amount_paid_atomic == 0 and len(invoice.payments) == 1
    assert invoice.events[-1].data["reason"] == "too_late"
    assert _see(session, invoice, "a", invoice.amount_due_atomic, PaymentStatus.FINAL) == []


def test_lateness_is_judged_by_the_payment_that_completed_the_invoice(
    session: Session, invoice: Invoice
) -> None:
    # Issue #13.9: half paid in time, the rest after expiry -> paid late.
    due = invoice.amount_due_atomic
    in_time = invoice.expires_at - timedelta(minutes=5)
    after = invoice.expires_at + timedelta(minutes=5)
    for txid, amount, seen_at in (("a", due // 2, in_time), ("b", due - due // 2, after)):
        observe_payment(
            session,
            invoice,
            Observation("solana", txid, 0, amount, PaymentStatus.SEEN, seen_at=seen_at),
            now=after + timedelta(minutes=1),
        )
    events = reevaluate(session, invoice, after + timedelta(minutes=1))
    assert "invoice.paid_late" in events and invoice.status is InvoiceStatus.PROCESSING


def test_a_concurrent_mark_retries_only_that_invoice(
    runtime: Runtime, session: Session, invoice: Invoice
) -> None:
    # Issue #13.5: a person marks the invoice between the watcher's read and its write.
    observe_payment(
        session,
        invoice,
        Observation("solana", "a", 0, invoice.amount_due_atomic, PaymentStatus.SEEN),
    )
    session.commit()
    assert invoice.version == 1  # the watcher has read the invoice ...
    with runtime.session_factory() as person:  # ... and a person marks it before its write
        other = person.get_one(Invoice, invoice.id)
        invoices.mark(person, other, InvoiceStatus.INVALID, "fraud suspected", None)
        person.commit()
    events = reevaluate_safely(session, invoice.id)
    session.commit()
    assert events == ["invoice.payment_seen"]  # totals follow; the mark stands
    assert invoice.status is InvoiceStatus.INVALID and invoice.marked


def _fact(amount: int, status: PaymentStatus, at: datetime, missing: datetime | None = None):  # type: ignore[no-untyped-def]
    return PaymentFact(amount, status, at, missing)


T0 = datetime(2026, 12, 1, 12, tzinfo=UTC)


@given(
    st.lists(
        st.tuples(
            st.integers(min_value=1, max_value=10_000),
            st.sampled_from(list(PaymentStatus)),
            st.integers(min_value=-120, max_value=3_000),  # minutes from T0
            st.one_of(st.none(), st.integers(min_value=0, max_value=240)),
        ),
        max_size=6,
    ),
    st.integers(min_value=1, max_value=20_000),
    st.integers(min_value=0, max_value=3_000),
)
def test_assess_sums_exactly_what_counts(payments, threshold, now_minutes) -> None:  # type: ignore[no-untyped-def]
    now = T0 + timedelta(minutes=now_minutes)
    late_until = T0 + timedelta(hours=24)
    facts = [
        _fact(a, s, T0 + timedelta(minutes=m), None if g is None else T0 + timedelta(minutes=g))
        for a, s, m, g in payments
    ]
    verdict = assess(facts, threshold, late_until, now)
    # An independent statement of the rule.
    expected_paid = 0
    for f in facts:
        if f.first_seen_at > late_until or f.status is PaymentStatus.REPLACED:
            continue
        unknown = f.status in (PaymentStatus.REORGED, PaymentStatus.MISSING)
        if unknown and f.missing_since is not None and now - f.missing_since >= UNKNOWN_GRACE:
            continue
        expected_paid += f.amount_atomic
    assert verdict.paid_atomic == expected_paid
    assert 0 <= verdict.final_atomic <= verdict.paid_atomic
    assert (verdict.completed_at is not None) == (expected_paid >= threshold)
    if any(f.status is PaymentStatus.REPLACED for f in facts):
        assert verdict.loss_reason == "payment double-spent or replaced"


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
