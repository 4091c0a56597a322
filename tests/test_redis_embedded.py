"""Demo mode's embedded Redis outlives one-shot commands and comes back when it dies.

Real processes throughout: the `cryptocity` console script in subprocesses, a real
redis-server, killed with SIGKILL the way a crash or the OOM killer would.
"""

from __future__ import annotations

import dataclasses
import os
import signal
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis
from redis.exceptions import RedisError
from sqlalchemy import Engine
from worker_helpers import cli_env, run_cli, wait_for, workers

from pos.coordination import HEARTBEAT_KEY
from pos.redis_server import EmbeddedRedis
from pos.settings import Settings


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    """A fresh demo data dir; its embedded Redis is stopped afterwards (we own this stack)."""
    directory = tmp_path / "data"
    yield directory
    EmbeddedRedis(directory / "redis").stop()


def _heartbeat(server: EmbeddedRedis, duty: str) -> datetime | None:
    """When the worker last ran `duty`, read straight from the embedded server."""
    client = redis.Redis(
        unix_socket_path=str(server.socket), socket_timeout=1, decode_responses=True
    )
    try:
        raw = client.hget(HEARTBEAT_KEY, duty)
    except RedisError:
        return None
    finally:
        client.close()
    return None if raw is None else datetime.fromisoformat(str(raw))


def _kill(server: EmbeddedRedis) -> int:
    pid = server.pid()
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: server.pid() is None, "the killed redis-server to be gone", timeout=10)
    return pid


def test_a_one_shot_command_leaves_the_embedded_redis_running(
    settings: Settings, engine: Engine, data_dir: Path
) -> None:
    env = cli_env(settings, data_dir, redis_url=None)
    server = EmbeddedRedis(data_dir / "redis")
    assert not server.alive()

    result = run_cli(env, "merchant", "list", "--json")
    assert result.returncode == 0, result.stderr
    assert server.alive(), "the command that started Redis stopped it on exit"
    pid = server.pid()
    assert pid is not None
    assert os.getsid(pid) == pid != os.getsid(0)  # detached in a session of its own

    result = run_cli(env, "merchant", "list", "--json")
    assert result.returncode == 0, result.stderr
    assert server.pid() == pid  # the next command joined the same server

    server.stop()  # what `cryptocity demo`, the owner of the stack, does on exit
    assert not server.alive() and server.pid() is None


@pytest.mark.parametrize("started_by", ["itself", "the demo"])
def test_the_worker_brings_back_a_killed_embedded_redis(
    settings: Settings, engine: Engine, data_dir: Path, tmp_path: Path, started_by: str
) -> None:
    server = EmbeddedRedis(data_dir / "redis")
    if started_by == "itself":
        env = cli_env(settings, data_dir, redis_url=None)
    else:  # `cryptocity demo` starts the server and hands its children its URL
        env = cli_env(settings, data_dir, redis_url=server.start())
    with workers(env, tmp_path) as start:
        worker = start("worker")
        wait_for(
            lambda: _heartbeat(server, "relay-events") is not None,
            "the worker's first heartbeat",
            log=worker.log,
        )
        old_pid = _kill(server)
        killed_at = datetime.now(UTC)

        def carries_on() -> bool:
            beat = _heartbeat(server, "relay-events")
            return beat is not None and beat > killed_at

        wait_for(carries_on, "a heartbeat written after the kill", log=worker.log)
        assert worker.process.poll() is None, worker.log()
        assert server.pid() not in (None, old_pid)  # a new server, started by the worker
        assert worker.terminate() == 0, worker.log()


def test_the_web_tier_keeps_the_embedded_redis_alive(settings: Settings, data_dir: Path) -> None:
    from merchant_portal import create_app

    app = create_app(dataclasses.replace(settings, data_dir=data_dir, redis_url=None))
    runtime = app.extensions["cryptocity"]
    server = EmbeddedRedis(data_dir / "redis")
    try:
        assert runtime.coordinator.ping()
        old_pid = _kill(server)
        wait_for(server.alive, "the web tier to restart the embedded Redis", timeout=30)
        assert server.pid() != old_pid
        assert runtime.coordinator.ping()  # the app's own client reconnects by itself
    finally:
        runtime.close()
