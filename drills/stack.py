"""The stack under drill: every part a real process on loopback, in one temp dir.

A PostgreSQL server of its own (scripts/test-postgres.sh with this stack's CC_PG_DIR and
CC_PG_PORT, so no other server is touched) or a SQLite file; a redis-server (pos.redis_server,
outside the data dir: the processes treat it as the operator's Redis and never restart it
themselves); a Bitcoin node (a real bitcoind, or the sandbox node in a process of its own) with
its shopper wallet; the sandbox Solana validator (surfpool) with the KZTE mint; the webhook
receiver; `cryptocity web` (gunicorn) and any number of `cryptocity worker` processes.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

from drills.chains import Chain, make_chain
from drills.core_node import REPO, free_port
from pos import accounts
from pos.demo_wallets import demo_account_xpub, demo_solana_wallet
from pos.integrations import (
    MAX_RATE_LIMIT_PER_MINUTE,
    WEBHOOK_EVENT_TYPES,
    create_api_key,
    create_webhook,
)
from pos.migrate import upgrade
from pos.redis_server import EmbeddedRedis
from pos.runtime import Runtime, open_runtime
from pos.settings import BitcoinNetwork, Mode, Settings
from sandbox.solana.validator import RunningValidator, start_validator

SECRET = "drills-secret-key-that-is-long-enough-for-anything"
READY_TIMEOUT = 90.0


def say(stack: str, message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')} {stack}] {message}", flush=True)


@dataclass
class Proc:
    """One process the stack started, with its log file."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def signal(self, signum: int) -> None:
        if self.alive:
            self.process.send_signal(signum)

    def kill(self) -> None:
        """SIGKILL: no shutdown, no lease released, whatever was in flight is cut."""
        if self.alive:
            self.process.kill()
        self.process.wait(30)

    def terminate(self, timeout: float = 30.0) -> int | None:
        """SIGTERM and wait (an init system's stop); SIGKILL if it ignores it."""
        if self.alive:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return None

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""


@dataclass
class Stack:
    """Everything one run of the drills needs; `close()` stops every process it started."""

    name: str
    db: str  # "sqlite" | "postgres"
    btc_kind: str  # "core" | "sandbox"
    root: Path
    database_url: str = ""
    redis: EmbeddedRedis | None = None
    chain: Chain | None = None
    validator: RunningValidator | None = None
    settings: Settings | None = None
    rt: Runtime | None = None
    merchant_id: int = 0
    api_token: str = ""
    webhook_secret: str = ""
    receiver_log: Path | None = None
    web_url: str = ""
    workers: list[Proc] = field(default_factory=list)
    others: list[Proc] = field(default_factory=list)
    # The shopper's wallets are files and RPC sessions: one payment (or block) at a time.
    btc_lock: threading.Lock = field(default_factory=threading.Lock)
    kzte_lock: threading.Lock = field(default_factory=threading.Lock)
    _exit: ExitStack = field(default_factory=ExitStack)
    _started: int = 0

    # --- accessors (set by start) ------------------------------------------------------------
    @property
    def runtime(self) -> Runtime:
        assert self.rt is not None, "the stack is not started"
        return self.rt

    @property
    def btc(self) -> Chain:
        assert self.chain is not None, "the stack is not started"
        return self.chain

    @property
    def solana(self) -> RunningValidator:
        assert self.validator is not None, "the stack is not started"
        return self.validator

    @property
    def redis_server(self) -> EmbeddedRedis:
        assert self.redis is not None, "the stack is not started"
        return self.redis

    # --- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        (self.root / "logs").mkdir(parents=True, exist_ok=True)
        say(self.name, f"starting in {self.root}")
        self.database_url = self._database()
        upgrade(self.database_url)
        self.redis = EmbeddedRedis(self.root / "redis")
        redis_url = self.redis.start()
        self._exit.callback(self.redis.stop)
        self.chain = make_chain(self.btc_kind, self.root / "btc", process=True)
        self._exit.callback(self.chain.close)
        self.validator = start_validator(self.root / "solana")
        self._exit.callback(self.validator.stop)
        self.settings = Settings(
            mode=Mode.DEMO,
            data_dir=self.root / "data",
            database_url=self.database_url,
            secret_key=SECRET,
            redis_url=redis_url,
            bitcoin_rpc_url=self.chain.url,
            bitcoin_zmq_url=self.chain.zmq_url,
            bitcoin_network=BitcoinNetwork.REGTEST,
            solana_rpc_url=self.validator.rpc_url,
            solana_ws_url=self.validator.ws_url,
            kzte_mint=self.validator.kzte_mint,
            kzte_decimals=self.validator.kzte_decimals,
            btc_rate_sources=("sandbox",),
            webhook_allow_private_networks=True,  # the drills' receiver is on loopback
        )
        self.rt = open_runtime(self.settings)
        self._exit.callback(self.rt.close)
        receiver_port = self._receiver()
        self._merchant(f"http://127.0.0.1:{receiver_port}/hook")
        self.start_worker()
        self._web()
        say(
            self.name,
            f"ready: bitcoin {self.btc_kind} at {self.chain.url.split('@')[-1]}, "
            f"surfpool {self.validator.rpc_url}, web {self.web_url}",
        )

    def close(self) -> None:
        for proc in [*self.workers, *self.others]:
            with contextlib.suppress(Exception):
                proc.terminate(timeout=15)
        self._exit.close()

    def env(self) -> dict[str, str]:
        """What a `cryptocity` process needs to join this stack."""
        settings = self.settings
        assert settings is not None
        env = dict(os.environ)
        env.update(
            CRYPTOCITY_MODE="demo",
            CRYPTOCITY_DATA_DIR=str(settings.data_dir),
            DATABASE_URL=self.database_url,
            REDIS_URL=settings.redis_url or "",
            SECRET_KEY=SECRET,
            BITCOIN_NETWORK="regtest",
            BITCOIN_RPC_URL=settings.bitcoin_rpc_url,
            BITCOIN_ZMQ_URL=settings.bitcoin_zmq_url or "",
            SOLANA_RPC_URL=settings.solana_rpc_url,
            SOLANA_WS_URL=settings.solana_ws_url,
            KZTE_MINT=settings.kzte_mint or "",
            KZTE_DECIMALS=str(settings.kzte_decimals),
            BTC_KZT_RATE_SOURCES="sandbox",
            WEBHOOK_ALLOW_PRIVATE_NETWORKS="1",  # the drills' webhook receiver is on loopback
        )
        return env

    def spawn(self, name: str, command: list[str]) -> Proc:
        self._started += 1
        log_path = self.root / "logs" / f"{self._started:03d}-{name}.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                command,
                env=self.env(),
                cwd=REPO,  # `python -m drills.…` finds the package before any install
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # our signals only, never a terminal's Ctrl-C
            )
        return Proc(name, process, log_path)

    def start_worker(self) -> Proc:
        worker = self.spawn("worker", [sys.executable, "-m", "pos.cli", "worker"])
        self.workers.append(worker)
        return worker

    def live_workers(self) -> list[Proc]:
        return [w for w in self.workers if w.alive]

    # --- parts -------------------------------------------------------------------------------
    def _database(self) -> str:
        if self.db == "sqlite":
            return f"sqlite:///{self.root / 'drills.db'}"
        script = REPO / "scripts" / "test-postgres.sh"
        env = dict(os.environ, CC_PG_DIR=str(self.root / "pg"), CC_PG_PORT=str(free_port()))
        done = subprocess.run(
            [str(script), "start"], env=env, capture_output=True, text=True, timeout=120
        )
        if done.returncode != 0:
            raise RuntimeError(f"PostgreSQL did not start: {done.stderr.strip()}")
        self._exit.callback(
            subprocess.run, [str(script), "stop"], env=env, capture_output=True, timeout=60
        )
        return done.stdout.strip().splitlines()[-1]

    def _receiver(self) -> int:
        self.receiver_log = self.root / "webhooks.jsonl"
        port = free_port()
        command = [sys.executable, "-m", "drills.receiver", "--port", str(port)]
        proc = self.spawn("receiver", [*command, "--log", str(self.receiver_log)])
        self.others.append(proc)
        _wait_http(proc, f"http://127.0.0.1:{port}/ready")
        return port

    def _merchant(self, hook_url: str) -> None:
        rt = self.runtime
        with rt.session_factory.begin() as session:
            merchant = accounts.create_merchant(
                session,
                rt.settings,
                "Drill Shop",
                btc_xpub=demo_account_xpub("drills", BitcoinNetwork.REGTEST),
                solana_wallet=demo_solana_wallet("drills"),
            )
            self.merchant_id = merchant.id
            _key, self.api_token = create_api_key(
                session,
                merchant.id,
                "drills",
                ["invoices:write", "invoices:read"],
                rate_limit_per_minute=MAX_RATE_LIMIT_PER_MINUTE,
            )
            hook = create_webhook(
                session, rt.settings, merchant.id, hook_url, list(WEBHOOK_EVENT_TYPES)
            )
            self.webhook_secret = hook.secret

    def _web(self) -> None:
        port = free_port()
        command = [
            sys.executable,
            "-m",
            "pos.cli",
            "web",
            "--workers",
            "2",
            "--connections",
            "1000",
        ]
        proc = self.spawn("web", [*command, "--bind", f"127.0.0.1:{port}"])
        self.others.append(proc)
        self.web_url = f"http://127.0.0.1:{port}"
        _wait_http(proc, f"{self.web_url}/healthz")


def _wait_http(proc: Proc, url: str) -> None:
    """Until `url` answers at all (any status: /healthz may be 503 until the first heartbeat)."""
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if not proc.alive:
            raise RuntimeError(f"{proc.name} exited:\n{proc.log()[-2000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except urllib.error.HTTPError as exc:
            exc.close()
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{proc.name} did not answer {url} within {READY_TIMEOUT:.0f} s")


def make_root(name: str, keep: Path | None) -> Path:
    """The stack's temp dir; readable by the postgres account (the server runs as it)."""
    root = Path(tempfile.mkdtemp(prefix=f"cc-drills-{name}-", dir=keep))
    root.chmod(0o755)
    return root


def remove_root(root: Path) -> None:
    shutil.rmtree(root, ignore_errors=True)
