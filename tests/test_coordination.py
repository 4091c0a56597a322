"""Redis coordination: the Lua check-and-set, leases, and surviving a flush."""

from datetime import UTC, datetime, timedelta

from pos import invoices
from pos.coordination import EVENT_STREAM, Coordinator
from pos.runtime import Runtime
from pos.states import InvoiceStatus, PaymentMethod
from settlement.worker import WorkerState, core_duties, run_pass

import factories


def test_snapshot_only_moves_forward_and_each_version_streams_once(
    coordinator: Coordinator,
) -> None:
    event = {"id": "e2", "type": "invoice.processing"}
    assert coordinator.apply_event("inv1", 2, event, {"status": "processing"}, 2, False) == (
        True,
        True,
    )
    # A late copy of version 1 neither rolls the snapshot back nor re-streams anything.
    assert coordinator.apply_event("inv1", 1, {"id": "e1"}, {"status": "new"}, 1, False) == (
        False,
        False,
    )
    assert coordinator.apply_event("inv1", 2, event, {"status": "processing"}, 2, False) == (
        False,
        False,
    )
    assert coordinator.get_live("inv1") == {"status": "processing", "version": "2", "streamed": "2"}
    assert coordinator.client.xlen(EVENT_STREAM) == 1


def test_terminal_snapshots_expire_and_open_ones_do_not(coordinator: Coordinator) -> None:
    coordinator.apply_event("a", 1, {"id": "1"}, {"status": "new"}, 1, terminal=False)
    coordinator.apply_event("b", 1, {"id": "2"}, {"status": "expired"}, 1, terminal=True)
    assert coordinator.client.ttl("cc:inv:{a}") == -1
    assert coordinator.client.ttl("cc:inv:{b}") > 0


def test_lease_has_one_holder_and_fencing_tokens_grow(coordinator: Coordinator) -> None:
    first = coordinator.acquire_lease("btc-watcher", "worker-a", 10_000)
    assert first is not None
    assert coordinator.acquire_lease("btc-watcher", "worker-b", 10_000) is None
    assert coordinator.acquire_lease("btc-watcher", "worker-a", 10_000) == first  # renewal
    coordinator.release_lease("btc-watcher", "worker-b")  # not the holder: no effect
    assert coordinator.acquire_lease("btc-watcher", "worker-b", 10_000) is None
    coordinator.release_lease("btc-watcher", "worker-a")
    second = coordinator.acquire_lease("btc-watcher", "worker-b", 10_000)
    assert second is not None and second > first


def test_flushing_redis_loses_no_invoice(runtime: Runtime) -> None:
    with runtime.session_factory.begin() as session:
        shop = factories.merchant(session, runtime.settings)
    created: dict[str, str] = {}
    with runtime.session_factory() as session:
        for method in (PaymentMethod.BTC, PaymentMethod.KZTE, PaymentMethod.KZTE):
            invoice = invoices.create_invoice(
                session,
                runtime.settings,
                runtime.rates,
                invoices.InvoiceRequest(shop.id, 500_000, method),
            )
            created[invoice.id] = invoice.btc_address or invoice.kzte_reference or ""
        session.commit()
        paid = next(iter(created))
        invoices.change_status(
            session, invoices.get_invoice(session, paid), InvoiceStatus.PROCESSING
        )
        session.commit()
        invoices.publish_after_commit(runtime.session_factory, runtime.coordinator, session)
    state, duties = WorkerState(), core_duties()
    run_pass(runtime, duties, state, force=True)  # first pass on an empty epoch rebuilds once
    before = {i: runtime.coordinator.get_live(i) for i in created}

    runtime.coordinator.client.flushall()
    counts = run_pass(runtime, duties, state, force=True)

    assert counts["rebuild-if-flushed"] == 3
    after = {i: runtime.coordinator.get_live(i) for i in created}
    for invoice_id in created:
        assert after[invoice_id] is not None
        assert {k: v for k, v in after[invoice_id].items() if k != "streamed"} == {  # type: ignore[union-attr]
            k: v for k, v in (before[invoice_id] or {}).items() if k != "streamed"
        }
    assert after[paid]["status"] == "processing"  # type: ignore[index]
    for method in ("btc", "kzte"):
        watched = runtime.coordinator.lookup(method, list(created.values()))
        assert all(invoice_id in created for invoice_id in watched.values())
    assert sum(runtime.coordinator.watched_count(m) for m in ("btc", "kzte")) == 3
    # Nothing was re-streamed: the stream's consumers replay from the database, not from here.
    assert runtime.coordinator.client.xlen(EVENT_STREAM) == 0


def test_worker_pass_expires_and_publishes(runtime: Runtime) -> None:
    with runtime.session_factory.begin() as session:
        shop = factories.merchant(session, runtime.settings)
    with runtime.session_factory() as session:
        invoice = invoices.create_invoice(
            session,
            runtime.settings,
            runtime.rates,
            invoices.InvoiceRequest(shop.id, 500_000, PaymentMethod.KZTE),
        )
        invoice.expires_at = datetime.now(UTC) - timedelta(minutes=1)
        session.commit()
    counts = run_pass(runtime, core_duties(), WorkerState(), force=True)
    assert counts["expire-invoices"] == 1
    assert runtime.coordinator.get_live(invoice.id)["status"] == "expired"  # type: ignore[index]
    assert runtime.coordinator.cached_rate("BTC/KZT") is not None  # the refresher ran


def test_leader_only_duty_runs_in_one_worker_at_a_time(runtime: Runtime) -> None:
    from settlement.worker import Duty

    ran: list[str] = []
    duty = Duty("watch-chain", 0.0, lambda rt: ran.append("x") or 1, leader_only=True)
    first, second = WorkerState(holder="a"), WorkerState(holder="b")
    assert run_pass(runtime, [duty], first, force=True) == {"watch-chain": 1}
    assert run_pass(runtime, [duty], second, force=True) == {}
    assert ran == ["x"]
