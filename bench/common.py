"""Shared pieces of the benchmarks: machine facts, a scratch environment, servers, statistics.

A scratch environment is a temp data dir with a fresh database (SQLite in the dir, or a new
PostgreSQL database next to the one `DATABASE_URL` names), an embedded Redis on a unix socket,
migrations applied and one active merchant with BTC and KZTE set up. Nothing here touches the
developer's own `var/`.
"""

from __future__ import annotations

import cProfile
import io
import os
import platform
import pstats
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from solders.keypair import Keypair
from sqlalchemy.engine import make_url

from pos import accounts, invoices
from pos.demo_wallets import demo_account_xpub, demo_solana_wallet
from pos.migrate import upgrade
from pos.models import Invoice
from pos.redis_server import EmbeddedRedis
from pos.runtime import Runtime, open_runtime
from pos.settings import BitcoinNetwork, Mode, Settings
from pos.states import PaymentMethod

SECRET = "bench-secret-key-that-is-long-enough-for-anything"
VENV_BIN = Path(sys.executable).parent


def say(tag: str, message: str) -> None:
    """Progress on stderr-free stdout, flushed at once (long steps must show life)."""
    print(f"[{tag}] {message}", flush=True)


def machine() -> dict[str, Any]:
    """Cores, memory and software versions of the machine the numbers come from."""
    mem_kib = 0
    cpu_model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass  # not Linux: the fields stay at their defaults
    return {
        "cores": os.cpu_count() or 0,
        "affinity_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 0,
        "memory_gib": round(mem_kib / 1024 / 1024, 1),
        "cpu": cpu_model,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "database": database_backend(),
    }


def database_backend() -> str:
    raw = os.environ.get("DATABASE_URL", "")
    return "postgresql" if raw.startswith("postgres") else "sqlite"


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile (no interpolation: every number reported was observed)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-pct * len(ordered) // 100))))
    return ordered[rank - 1]


def summary_ms(values_s: Sequence[float]) -> dict[str, float | int]:
    """n, p50, p90, p99, max of durations given in seconds, reported in milliseconds."""
    if not values_s:
        return {"n": 0}
    return {
        "n": len(values_s),
        "p50_ms": round(percentile(values_s, 50) * 1000, 2),
        "p90_ms": round(percentile(values_s, 90) * 1000, 2),
        "p99_ms": round(percentile(values_s, 99) * 1000, 2),
        "max_ms": round(max(values_s) * 1000, 2),
    }


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def profile_top(fn: Callable[[], object], limit: int = 15) -> list[str]:
    """Run `fn` under cProfile; the top entries by cumulative time, as text lines."""
    profiler = cProfile.Profile()
    profiler.enable()
    try:
        fn()
    finally:
        profiler.disable()
    return _stats_lines(profiler, limit)


def profile_file_top(path: Path, limit: int = 15, pattern: str = "") -> list[str]:
    """The top entries (by cumulative time) of a profile written by `python -m cProfile -o`,
    only functions whose `file:line(name)` matches the regex `pattern` when one is given."""
    return _stats_lines(str(path), limit, pattern)


def _stats_lines(source: Any, limit: int, pattern: str = "") -> list[str]:
    out = io.StringIO()
    stats = pstats.Stats(source, stream=out)
    restrictions: list[Any] = [pattern, limit] if pattern else [limit]
    stats.strip_dirs().sort_stats("cumulative").print_stats(*restrictions)
    lines = [line.rstrip() for line in out.getvalue().splitlines() if line.strip()]
    # Keep the column header and the rows; drop pstats' preamble.
    start = next((i for i, line in enumerate(lines) if line.lstrip().startswith("ncalls")), 0)
    return lines[start:]


# --- databases --------------------------------------------------------------------------------


def fresh_database_url(name: str, directory: Path) -> str:
    """An empty database for one benchmark: SQLite in `directory`, or a new PostgreSQL one."""
    raw = os.environ.get("DATABASE_URL")
    if not raw or not raw.startswith("postgres"):
        return f"sqlite:///{directory / f'{name}.db'}"
    import psycopg

    url = make_url(raw).set(drivername="postgresql+psycopg")
    database = f"{url.database or 'bench'}_{name}"
    admin = url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{database}"')
    return url.set(database=database).render_as_string(hide_password=False)


# --- a scratch environment --------------------------------------------------------------------


@dataclass
class Scratch:
    """A data dir, database, Redis and seeded merchant for one benchmark."""

    name: str
    directory: Path
    database_url: str
    redis: EmbeddedRedis
    redis_url: str
    settings: Settings
    rt: Runtime
    merchant_id: int = 0
    extra_env: dict[str, str] = field(default_factory=dict)

    def env(self) -> dict[str, str]:
        """The environment a `cryptocity` subprocess needs to join this scratch setup."""
        env = dict(os.environ)
        env.update(
            {
                "CRYPTOCITY_MODE": "demo",
                "CRYPTOCITY_DATA_DIR": str(self.directory),
                "DATABASE_URL": self.database_url,
                "REDIS_URL": self.redis_url,
                "SECRET_KEY": SECRET,
                "BITCOIN_NETWORK": "regtest",
                "BITCOIN_RPC_URL": self.settings.bitcoin_rpc_url,
                "BITCOIN_ZMQ_URL": self.settings.bitcoin_zmq_url or "",
                "KZTE_MINT": self.settings.kzte_mint or "",
                "BTC_KZT_RATE_SOURCES": "sandbox",
                # Dead ports: a Solana watcher (if registered) just reports "unknown".
                "SOLANA_RPC_URL": "http://127.0.0.1:9",
                "SOLANA_WS_URL": "ws://127.0.0.1:9",
            }
        )
        env.update(self.extra_env)
        return env


@contextmanager
def scratch(
    name: str,
    bitcoin_rpc_url: str = "http://cryptocity:cryptocity@127.0.0.1:9",
    bitcoin_zmq_url: str | None = None,
) -> Iterator[Scratch]:
    """Build a scratch environment; everything is removed afterwards."""
    directory = Path(tempfile.mkdtemp(prefix=f"cc-bench-{name}-"))
    redis = EmbeddedRedis(directory / "redis")
    try:
        database_url = fresh_database_url(name, directory)
        upgrade(database_url)
        redis_url = redis.start()
        settings = Settings(
            mode=Mode.DEMO,
            data_dir=directory,
            database_url=database_url,
            secret_key=SECRET,
            redis_url=redis_url,
            bitcoin_rpc_url=bitcoin_rpc_url,
            bitcoin_network=BitcoinNetwork.REGTEST,
            solana_rpc_url="http://127.0.0.1:9",
            solana_ws_url="ws://127.0.0.1:9",
            kzte_mint=str(Keypair().pubkey()),
            bitcoin_zmq_url=bitcoin_zmq_url,
            btc_rate_sources=("sandbox",),
            zone_btc_xpub=demo_account_xpub("bench zone", BitcoinNetwork.REGTEST),
            zone_kzte_wallet=demo_solana_wallet("bench zone"),
        )
        rt = open_runtime(settings)
        env = Scratch(name, directory, database_url, redis, redis_url, settings, rt)
        try:
            with rt.session_factory() as session:
                merchant = accounts.create_merchant(
                    session,
                    settings,
                    "Bench Shop",
                    btc_xpub=demo_account_xpub("bench", BitcoinNetwork.REGTEST),
                    solana_wallet=demo_solana_wallet("bench"),
                )
                session.commit()
                env.merchant_id = merchant.id
            yield env
        finally:
            rt.close()
    finally:
        redis.stop()
        shutil.rmtree(directory, ignore_errors=True)


# --- the web server ---------------------------------------------------------------------------


@dataclass
class WebServer:
    process: subprocess.Popen[bytes]
    base_url: str
    log_path: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()  # gunicorn: graceful stop on SIGTERM
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@contextmanager
def web_server(
    env: Scratch, workers: int = 2, argv: list[str] | None = None
) -> Iterator[WebServer]:
    """`cryptocity web` (gunicorn) on a free loopback port, its access log sent to a file."""
    port = free_port()
    log_path = env.directory / "web.log"
    command = argv or [str(VENV_BIN / "cryptocity"), "web", "--workers", str(workers)]
    command = [*command, "--bind", f"127.0.0.1:{port}"]
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            command, env=env.env(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
    server = WebServer(process, f"http://127.0.0.1:{port}", log_path)
    try:
        _wait_http(server, f"{server.base_url}/healthz", 60.0)
        yield server
    finally:
        server.stop()


def _wait_http(server: WebServer, url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"the web server exited; see {server.log_path}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            time.sleep(0.2)
    raise RuntimeError(f"the web server did not answer {url} within {timeout:.0f}s")


def open_invoices(
    env: Scratch, count: int, method: PaymentMethod, price_tiyn: int
) -> list[Invoice]:
    """`count` open invoices of the scratch merchant, committed and published to Redis."""
    with env.rt.session_factory() as session:
        created = [
            invoices.create_invoice(
                session,
                env.settings,
                env.rt.rates,
                invoices.InvoiceRequest(env.merchant_id, price_tiyn, method),
            )
            for _ in range(count)
        ]
        session.commit()
        invoices.publish_after_commit(env.rt.session_factory, env.rt.coordinator, session)
        return created
