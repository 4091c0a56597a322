"""Postings from invoice events on the real database: the worked example, reorgs, replays."""

import random
from datetime import timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ledger_support import MakeInvoice, ledger_size, legs_of, pay, unbalanced_transactions
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from pos import invoices
from pos.db import utcnow
from pos.models import InvoiceEvent, Merchant, PaymentStatus
from pos.runtime import Runtime
from pos.states import TRANSITIONS, InvoiceStatus, PaymentMethod
from settlement.ledger import payouts, reports, statements
from settlement.ledger.consumer import process_event, replay_from_database
from settlement.ledger.models import LedgerTransaction, TransactionKind
from settlement.ledger.posting import post_conversion, post_invoice_event


def _post_all(session: Session, runtime: Runtime) -> None:
    for event in session.scalars(select(InvoiceEvent).order_by(InvoiceEvent.created_at)).all():
        post_invoice_event(session, runtime.settings, event)
    session.commit()


def _transactions(session: Session, kind: TransactionKind | None = None) -> list[LedgerTransaction]:
    query = select(LedgerTransaction).order_by(LedgerTransaction.id)
    if kind is not None:
        query = query.where(LedgerTransaction.kind == kind)
    return list(session.scalars(query))


def test_worked_example_pay_settle_fee_payout_statement(
    runtime: Runtime, session: Session, shop: Merchant, make_invoice: MakeInvoice
) -> None:
    shop.fee_bp = 150  # 1.5 %
    invoice = make_invoice(100_100)  # 1 001.00 KZT
    assert invoice.amount_due_atomic == 1_001_000_000  # KZTE, 6 decimals
    # The shopper sends 1.234567 KZTE too much: 123.4567 tiyn, rounded down to 123.
    pay(session, invoice, 1_002_234_567)
    assert invoice.status is InvoiceStatus.SETTLED
    _post_all(session, runtime)

    [settlement] = _transactions(session)
    assert settlement.kind is TransactionKind.SETTLEMENT
    assert legs_of(settlement) == [
        (f"merchant:{shop.id}:payable", "credit", 98_598),  # 100 100 - 1 502
        ("zone:clearing:kzte", "debit", 100_223),  # gross
        ("zone:fees", "credit", 1_502),  # 1 501.5 tiyn, half-up
        ("zone:refunds_due", "credit", 123),
    ]

    today = utcnow().date()
    [payout] = payouts.run_payouts(session, today)
    session.commit()
    assert payout.amount_tiyn == 98_598 and payout.status.value == "pending"
    assert payouts.run_payouts(session, today) == []  # a second run batches nothing
    payouts.mark_paid(session, payout.id, "KZ-BANK-0001")
    session.commit()
    paid = _transactions(session, TransactionKind.PAYOUT)[0]
    assert legs_of(paid) == [
        (f"merchant:{shop.id}:payable", "debit", 98_598),
        ("zone:bank", "credit", 98_598),
    ]

    statement = statements.merchant_statement(session, shop.id, reports.DateRange(today, today))
    assert statement.opening_tiyn == 0
    assert [
        (ln.kind, ln.credit_tiyn, ln.debit_tiyn, ln.balance_tiyn) for ln in statement.lines
    ] == [
        ("settlement", 98_598, 0, 98_598),
        ("payout", 0, 98_598, 0),
    ]
    assert statement.closing_tiyn == 0
    balances = statements.balances(session)
    assert balances["zone:clearing:kzte"] == 100_223 and balances["zone:bank"] == -98_598
    assert sum(balances.values()) == 0
    assert unbalanced_transactions(session) == []


def test_default_fee_comes_from_the_settings(
    runtime: Runtime, session: Session, make_invoice: MakeInvoice
) -> None:
    invoice = make_invoice(250_000)
    pay(session, invoice, invoice.amount_due_atomic)
    _post_all(session, runtime)
    [txn] = _transactions(session)
    assert ("zone:fees", "credit", 2_500) in legs_of(txn)  # settings.default_fee_bp = 100


def test_reorg_reverses_and_a_resettle_posts_again(
    runtime: Runtime, session: Session, shop: Merchant, make_invoice: MakeInvoice
) -> None:
    invoice = make_invoice(500_000, PaymentMethod.BTC)
    due = invoice.amount_due_atomic
    assert pay(session, invoice, due, PaymentStatus.FINAL)[-1] == "invoice.settled"
    _post_all(session, runtime)
    # A reorg takes the confirmations away: settled -> processing, the posting is reversed.
    assert pay(session, invoice, due, PaymentStatus.CONFIRMED) == ["invoice.reopened"]
    _post_all(session, runtime)
    first, reversal = _transactions(session)
    assert reversal.kind is TransactionKind.REVERSAL and reversal.reverses_id == first.id
    swap = {"debit": "credit", "credit": "debit"}
    assert legs_of(reversal) == sorted((a, swap[s], n) for a, s, n in legs_of(first))
    assert statements.balances(session).get(f"merchant:{shop.id}:payable") == 0

    # Mined again: settles again under the new event's own key.
    assert pay(session, invoice, due, PaymentStatus.FINAL) == ["invoice.settled"]
    _post_all(session, runtime)
    # Then reorged out for good (past the grace window): invalid, reversed once more.
    # The payment is unknown, not gone: first only the confirmations are lost ...
    assert pay(session, invoice, due, PaymentStatus.REORGED) == ["invoice.reopened"]
    _post_all(session, runtime)
    # ... and past the grace window the money no longer counts.
    invoice.payments[0].missing_since = utcnow() - timedelta(hours=2)
    session.commit()
    from settlement.payments import reevaluate

    assert reevaluate(session, invoice)[-1] == "invoice.invalid"
    session.commit()
    _post_all(session, runtime)
    kinds = [t.kind for t in _transactions(session)]
    assert kinds == [TransactionKind.SETTLEMENT, TransactionKind.REVERSAL] * 2
    assert all(v == 0 for v in statements.balances(session).values())
    assert unbalanced_transactions(session) == []


def test_invalid_before_settle_posts_nothing(
    runtime: Runtime, session: Session, make_invoice: MakeInvoice
) -> None:
    invoice = make_invoice()
    pay(session, invoice, invoice.amount_due_atomic, PaymentStatus.SEEN)
    pay(session, invoice, invoice.amount_due_atomic, PaymentStatus.REPLACED)
    assert invoice.status is InvoiceStatus.INVALID
    _post_all(session, runtime)
    assert _transactions(session) == []


def test_conversion_posting_is_balanced_and_idempotent(session: Session) -> None:
    first = post_conversion(session, "conv:1", PaymentMethod.BTC, 1_000_000, 1_012_345, utcnow())
    again = post_conversion(session, "conv:1", PaymentMethod.BTC, 1_000_000, 1_012_345, utcnow())
    session.commit()
    assert first.id == again.id
    assert legs_of(first) == [
        ("zone:bank", "debit", 1_012_345),
        ("zone:clearing:btc", "credit", 1_000_000),
        ("zone:fx_result", "credit", 12_345),
    ]


# --- property: any sequence of events keeps the ledger balanced; replays change nothing -------

STEP = st.one_of(
    st.tuples(st.just("status"), st.sampled_from(list(InvoiceStatus)), st.integers(0, 3)),
    st.tuples(st.just("paid"), st.just(InvoiceStatus.NEW), st.integers(0, 3)),
)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=st.lists(STEP, min_size=1, max_size=12), order_seed=st.integers(0, 2**32))
def test_any_event_sequence_keeps_the_ledger_balanced_and_replay_is_a_no_op(
    runtime: Runtime,
    session_factory: sessionmaker[Session],
    session: Session,
    make_invoice: MakeInvoice,
    steps: list[tuple[str, InvoiceStatus, int]],
    order_seed: int,
) -> None:
    invoice = make_invoice(123_457)
    due = invoice.amount_due_atomic
    # Paid amounts from nothing to an overpayment; the settle event records the amount.
    amounts = [0, due * 99 // 100, due, due + 1_234_567]
    for kind, target, amount in steps:
        paid = amounts[amount]
        if kind == "paid":
            invoices.set_amount_paid(session, invoice, paid)
        elif target in TRANSITIONS[invoice.status]:
            invoices.change_status(session, invoice, target, {"paid_atomic": paid})
        session.commit()

    ids = list(
        session.scalars(select(InvoiceEvent.id).where(InvoiceEvent.invoice_id == invoice.id))
    )
    random.Random(order_seed).shuffle(ids)
    session.commit()  # end this session's read snapshot before other sessions write
    for event_id in ids:  # delivered in any order, as a stream with reclaims may
        process_event(session_factory, runtime.settings, event_id)
    size = ledger_size(session, invoice.id)
    assert unbalanced_transactions(session) == []

    # Expected: one open settlement exactly when the invoice ended settled with value paid.
    mine = select(LedgerTransaction).where(LedgerTransaction.invoice_id == invoice.id)
    txns = list(session.scalars(mine))
    settles = sum(t.kind is TransactionKind.SETTLEMENT for t in txns)
    reversals = sum(t.kind is TransactionKind.REVERSAL for t in txns)
    assert settles - reversals in (0, 1)
    if invoice.status is not InvoiceStatus.SETTLED:
        assert settles == reversals
    else:
        last_settle = session.scalars(
            select(InvoiceEvent)
            .where(InvoiceEvent.invoice_id == invoice.id, InvoiceEvent.type == "invoice.settled")
            .order_by(InvoiceEvent.invoice_version.desc())
        ).first()
        assert last_settle is not None
        assert settles - reversals == (1 if last_settle.data["paid_atomic"] > 0 else 0)
    session.commit()

    for event_id in ids:  # the stream delivers everything again
        process_event(session_factory, runtime.settings, event_id)
    replay_from_database(session_factory, runtime.settings)  # and the database replays it
    assert ledger_size(session, invoice.id) == size
