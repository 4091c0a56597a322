"""The worker never dies of one duty, never hands out a fence below the database's, and gives
its leases back when it is stopped."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from sqlalchemy import Engine, update
from worker_helpers import cli_env, wait_for, workers

from pos.coordination import Coordinator
from pos.errors import ConcurrentUpdateError
from pos.runtime import Runtime
from pos.settings import Settings
from settlement.chain_state import ChainCursor
from settlement.worker import Duty, WorkerState, recorded_fence, run_pass

BTC_LEASE = "cc:lease:watch:bitcoin"


def test_a_failing_duty_is_logged_once_per_streak_backed_off_and_the_others_run(
    runtime: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    errors: list[Exception] = [ConcurrentUpdateError("a person marked the invoice first")] * 2

    def flaky(rt: Runtime) -> int:
        if errors:
            raise errors.pop(0)
        # Then a real database error inside the duty's own transaction: two cursors, one key.
        with rt.session_factory.begin() as session:
            for _ in range(2):
                session.add(ChainCursor(chain="flaky", height=1, block_hash="00"))
            session.flush()
        return 1

    ran: list[int] = []

    def steady(rt: Runtime) -> int:
        ran.append(1)
        return 1

    failing, other = Duty("flaky", 1.0, flaky), Duty("steady", 0.0, steady)
    duties, state = [failing, other], WorkerState()
    with caplog.at_level(logging.WARNING, logger="settlement.worker"):
        for _ in range(3):  # forced: every duty runs, back-off or not
            assert run_pass(runtime, duties, state, force=True) == {"steady": 1}
    assert len(ran) == 3 and failing.failures == 3
    tracebacks = [r for r in caplog.records if r.exc_info and "flaky" in r.getMessage()]
    # One traceback for the ConcurrentUpdateError streak, one for the new IntegrityError.
    assert [r.exc_info[1].__class__.__name__ for r in tracebacks if r.exc_info] == [
        "ConcurrentUpdateError",
        "IntegrityError",
    ]
    assert failing.next_due - other.next_due >= 4.0  # third failure in a row: 4 s, not 1 s
    with runtime.session_factory() as session:  # the duty's transaction was rolled back
        assert session.get(ChainCursor, "flaky") is None
    # Not due while backed off; the steady duty (interval 0) runs on.
    assert run_pass(runtime, duties, state) == {"steady": 1}
    beats = runtime.coordinator.heartbeats()
    assert "steady" in beats and "flaky" not in beats

    failing.run = lambda rt: 0  # fixed
    assert run_pass(runtime, duties, state, force=True) == {"flaky": 0, "steady": 1}
    assert failing.failures == 0
    assert runtime.coordinator.heartbeats()["flaky"] >= beats["steady"]


def test_a_flushed_redis_never_hands_out_a_fence_below_the_database(runtime: Runtime) -> None:
    coordinator = runtime.coordinator
    first = coordinator.acquire_lease(
        "watch:bitcoin", "w1", 30_000, floor=recorded_fence(runtime, "bitcoin")
    )
    assert first is not None
    with runtime.session_factory.begin() as session:  # the watcher checkpointed, long ago
        session.add(ChainCursor(chain="bitcoin", height=100, block_hash="00", fence=first + 41))

    coordinator.client.flushall()  # counter and lease gone; the database remembers 42

    floor = recorded_fence(runtime, "bitcoin")
    assert floor == first + 41
    second = coordinator.acquire_lease("watch:bitcoin", "w2", 30_000, floor=floor)
    assert second is not None and second > floor
    with runtime.session_factory.begin() as session:  # the watcher's fenced checkpoint write
        moved = session.execute(
            update(ChainCursor)
            .where(ChainCursor.chain == "bitcoin", ChainCursor.fence <= second)
            .values(fence=second)
        ).rowcount  # type: ignore[attr-defined]
    assert moved == 1
    # A renewal by a holder whose token the database already passed is bumped above it too.
    assert coordinator.acquire_lease("watch:bitcoin", "w2", 30_000, floor=second + 5) == second + 6
    coordinator.release_lease("watch:bitcoin", "w2")
    third = coordinator.acquire_lease("watch:bitcoin", "w3", 30_000)
    assert third is not None and third > second + 6  # the counter goes on from there


def test_releasing_held_leases_deletes_only_those_still_ours(coordinator: Coordinator) -> None:
    other_worker = Coordinator(coordinator.client)
    assert coordinator.acquire_lease("a", "me", 30_000) is not None
    assert coordinator.acquire_lease("b", "me", 30_000) is not None
    coordinator.client.delete("cc:lease:b")  # as if it had expired while we were paused …
    assert other_worker.acquire_lease("b", "other", 30_000) is not None  # … and was taken
    assert coordinator.release_leases() == 1
    assert coordinator.client.get("cc:lease:a") is None
    assert coordinator.client.get("cc:lease:b") == "other"
    assert coordinator.held_leases() == [] and other_worker.held_leases() == [("b", "other")]


def _holder_pid(holder: object) -> int | None:
    """Worker holders are `host:pid` or `host:pid:btc`."""
    return None if holder is None else int(str(holder).split(":")[1])


def test_sigterm_releases_every_lease_and_a_new_worker_takes_over(
    settings: Settings, engine: Engine, coordinator: Coordinator, tmp_path: Path
) -> None:
    env = cli_env(settings, tmp_path / "data", redis_url=settings.redis_url)
    client = coordinator.client

    def leases() -> dict[str, object]:
        return {key: client.get(key) for key in client.scan_iter("cc:lease:*")}

    with workers(env, tmp_path) as start:
        first = start("first")
        wait_for(
            lambda: (
                _holder_pid(client.get(BTC_LEASE)) == first.pid
                and _holder_pid(client.get("cc:lease:kzte-watcher")) == first.pid
            ),
            "the first worker to lead the watchers",
            log=first.log,
        )
        second = start("second")
        wait_for(lambda: " started: " in second.log(), "the second worker", log=second.log)

        assert first.terminate() == 0, first.log()
        left = {key: h for key, h in leases().items() if _holder_pid(h) == first.pid}
        assert left == {}, first.log()  # without the release they would stay for the TTL

        wait_for(
            lambda: _holder_pid(client.get(BTC_LEASE)) == second.pid,
            "the second worker to take the bitcoin watcher over",
            timeout=20,  # below the 30 s lease TTL: a takeover by release, not by expiry
            log=second.log,
        )
        assert second.terminate() == 0, second.log()
        assert leases() == {}
