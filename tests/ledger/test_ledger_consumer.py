"""The posting consumer on a real Redis Stream: ack after commit, crash recovery, flushes."""

import pytest
from ledger_support import MakeInvoice, ledger_size, pay, unbalanced_transactions
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from pos import invoices
from pos.coordination import EVENT_STREAM
from pos.models import Invoice
from pos.runtime import Runtime
from settlement.ledger.consumer import (
    GROUP,
    LedgerConsumer,
    duty,
    process_event,
    replay_from_database,
)
from settlement.ledger.models import HandledEvent, LedgerTransaction, TransactionKind
from settlement.worker import Duty


def _settle_and_publish(runtime: Runtime, session: Session, invoice: Invoice) -> None:
    pay(session, invoice, invoice.amount_due_atomic)
    session.info["touched_invoices"] = {invoice.id}
    invoices.publish_after_commit(runtime.session_factory, runtime.coordinator, session)


def _settlements(session: Session) -> int:
    session.commit()  # a fresh snapshot: other sessions have written
    return (
        session.scalar(
            select(func.count())
            .select_from(LedgerTransaction)
            .where(LedgerTransaction.kind == TransactionKind.SETTLEMENT)
        )
        or 0
    )


def _pending(runtime: Runtime) -> int:
    return int(runtime.coordinator.client.xpending(EVENT_STREAM, GROUP)["pending"])


def _consumer(runtime: Runtime, name: str, reclaim_idle_ms: int = 60_000) -> LedgerConsumer:
    return LedgerConsumer(
        runtime.session_factory,
        runtime.coordinator,
        runtime.settings,
        name=name,
        reclaim_idle_ms=reclaim_idle_ms,
    )


def test_consumer_posts_settlements_from_the_stream_and_acks(
    runtime: Runtime, session: Session, make_invoice: MakeInvoice
) -> None:
    consumer = _consumer(runtime, "a")
    assert consumer.ensure_group() is True
    first, second = make_invoice(), make_invoice(300_000)
    _settle_and_publish(runtime, session, first)
    _settle_and_publish(runtime, session, second)
    handled = consumer.run_once()
    assert handled >= 6  # created, payment_seen, processing?, settled … of two invoices
    assert _settlements(session) == 2
    assert _pending(runtime) == 0
    assert consumer.run_once() == 0  # nothing new
    assert unbalanced_transactions(session) == []


def test_crash_between_commit_and_ack_posts_once(
    runtime: Runtime, session: Session, make_invoice: MakeInvoice
) -> None:
    crashed = _consumer(runtime, "crashed")
    crashed.ensure_group()
    invoice = make_invoice()
    _settle_and_publish(runtime, session, invoice)

    # The crashed consumer read everything, posted and committed the settlement, then died
    # before XACK: the entries stay pending under its name.
    reply = runtime.coordinator.client.xreadgroup(GROUP, "crashed", {EVENT_STREAM: ">"}, count=100)
    entries = reply[0][1]
    settled = [fields for _id, fields in entries if fields["type"] == "invoice.settled"]
    assert len(settled) == 1
    assert process_event(runtime.session_factory, runtime.settings, settled[0]["id"])
    assert _settlements(session) == 1
    assert _pending(runtime) == len(entries)

    # Another worker reclaims the idle entries, processes them again and acknowledges.
    survivor = _consumer(runtime, "survivor", reclaim_idle_ms=0)
    assert survivor.run_once() == len(entries)
    assert _pending(runtime) == 0
    assert _settlements(session) == 1  # posted once
    assert ledger_size(session) == (1, 4 if invoice.paid_over else 3)


def test_unacked_entries_are_not_reclaimed_before_they_are_idle(
    runtime: Runtime, session: Session, make_invoice: MakeInvoice
) -> None:
    _consumer(runtime, "x").ensure_group()
    _settle_and_publish(runtime, session, make_invoice())
    runtime.coordinator.client.xreadgroup(GROUP, "busy", {EVENT_STREAM: ">"}, count=100)
    other = _consumer(runtime, "other", reclaim_idle_ms=3_600_000)
    assert other.run_once() == 0  # still being worked on by "busy"
    assert _settlements(session) == 0


def test_redis_flushed_the_database_replay_posts_nothing_twice(
    runtime: Runtime, session: Session, make_invoice: MakeInvoice
) -> None:
    consumer = _consumer(runtime, "a")
    first = make_invoice()
    _settle_and_publish(runtime, session, first)
    consumer.run_once()
    assert _settlements(session) == 1

    # Redis loses everything, including the stream and the group, after a second settle was
    # published but before any consumer read it.
    second = make_invoice(400_000)
    _settle_and_publish(runtime, session, second)
    runtime.coordinator.client.flushall()

    consumer.run_once()  # NOGROUP: recreate the group and replay from the database
    assert _settlements(session) == 2
    assert replay_from_database(runtime.session_factory, runtime.settings) == 0
    # The relay re-streams old events after a rebuild; consuming them posts nothing new.
    invoices.rebuild_live_state(runtime.session_factory, runtime.coordinator, runtime.settings)
    third = make_invoice(500_000)
    _settle_and_publish(runtime, session, third)
    consumer.run_once()
    assert _settlements(session) == 3
    size = ledger_size(session)
    # A brand-new group (another deployment) reads the whole stream again: still nothing new.
    runtime.coordinator.client.xgroup_destroy(EVENT_STREAM, GROUP)
    fresh = _consumer(runtime, "fresh")
    fresh.run_once()
    assert ledger_size(session) == size
    assert unbalanced_transactions(session) == []


def test_replay_alone_posts_every_settlement_once(
    runtime: Runtime, session: Session, make_invoice: MakeInvoice
) -> None:
    for price in (100_000, 200_000, 300_000):
        invoice = make_invoice(price)
        pay(session, invoice, invoice.amount_due_atomic)
    assert replay_from_database(runtime.session_factory, runtime.settings) == 3
    assert _settlements(session) == 3
    assert replay_from_database(runtime.session_factory, runtime.settings) == 0
    handled = session.scalar(select(func.count()).select_from(HandledEvent))
    assert handled == 3


def test_stream_entry_for_an_unknown_event_is_acknowledged(runtime: Runtime) -> None:
    consumer = _consumer(runtime, "a")
    consumer.ensure_group()
    runtime.coordinator.client.xadd(
        EVENT_STREAM, {"id": "00000000-0000-0000-0000-000000000000", "type": "invoice.settled"}
    )
    assert consumer.run_once() == 1
    assert _pending(runtime) == 0


def test_duties_for_the_worker() -> None:
    duties = duty()
    assert [d.name for d in duties] == ["ledger-consume", "ledger-replay"]
    assert all(isinstance(d, Duty) for d in duties)


@pytest.mark.parametrize("runs", [1, 2])
def test_worker_duties_run_against_the_runtime(
    runtime: Runtime, session: Session, make_invoice: MakeInvoice, runs: int
) -> None:
    _settle_and_publish(runtime, session, make_invoice())
    for _ in range(runs):
        for d in duty():
            d.run(runtime)
    assert _settlements(session) == 1
