"""Real `cryptocity` processes for the worker and embedded-Redis tests: env, start, stop, wait."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from pos.settings import Settings

NOWHERE = "127.0.0.1:9"  # nothing listens: the chain watchers see an unavailable node


def cli_env(settings: Settings, data_dir: Path, redis_url: str | None) -> dict[str, str]:
    """Demo mode on `data_dir` and the test database; `redis_url=None`: the embedded Redis."""
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    env.update(
        CRYPTOCITY_MODE="demo",
        CRYPTOCITY_DATA_DIR=str(data_dir),
        DATABASE_URL=settings.database_url,
        KZTE_MINT=settings.kzte_mint or "",
        BITCOIN_RPC_URL=f"http://cryptocity:cryptocity@{NOWHERE}",
        BITCOIN_ZMQ_URL="",
        SOLANA_RPC_URL=f"http://{NOWHERE}",
        SOLANA_WS_URL=f"ws://{NOWHERE}",
        BTC_KZT_RATE_SOURCES="sandbox",
    )
    if redis_url is not None:
        env["REDIS_URL"] = redis_url
    return env


def run_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pos.cli", *args],
        env=env,
        text=True,
        capture_output=True,
        timeout=60,
    )


class WorkerProcess:
    """`cryptocity worker` in a subprocess, its log in a file."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        with log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "pos.cli", "worker"],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def pid(self) -> int:
        return self.process.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def terminate(self, timeout: float = 30) -> int:
        """SIGTERM, as an init system or `cryptocity demo` stops it; its exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"the worker ignored SIGTERM:\n{self.log()[-3000:]}") from None


@contextmanager
def workers(env: dict[str, str], directory: Path) -> Iterator[Callable[[str], WorkerProcess]]:
    """Start workers with `start(name)`; every one still running is stopped afterwards."""
    started: list[WorkerProcess] = []

    def start(name: str) -> WorkerProcess:
        worker = WorkerProcess(env, directory / f"{name}.log")
        started.append(worker)
        return worker

    try:
        yield start
    finally:
        for worker in started:
            if worker.process.poll() is None:
                worker.process.kill()
                worker.process.wait()


def wait_for(
    condition: Callable[[], bool],
    what: str,
    timeout: float = 60,
    log: Callable[[], str] | None = None,
) -> None:
    """Poll `condition` (bounded); fail with `what` and the process log if it never holds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    detail = f"\n--- log ---\n{log()[-4000:]}" if log is not None else ""
    raise AssertionError(f"timed out waiting for {what}{detail}")
