"""A throw-away regtest Bitcoin Core (bitcoind) on loopback ports, plus a small JSON-RPC client.

Used by the drills and by the Bitcoin watcher tests (tests/btc/core_node.py adds their policy:
skip without Core locally, fail in CI). The binary is `<repo>/../shared/bitcoin-core/bin/bitcoind`
unless env BITCOIND names another; it needs `libzmq5` and `libsqlite3-0`.
"""

from __future__ import annotations

import base64
import functools
import http.client
import json
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DEFAULT_BITCOIND = REPO.parent / "shared" / "bitcoin-core" / "bin" / "bitcoind"
RPC_USER, RPC_PASSWORD = "cc", "cc-test"
START_TIMEOUT = 60.0
STOP_TIMEOUT = 60.0
RPC_IN_WARMUP = -28


class RpcError(Exception):
    """A JSON-RPC error reply (`code` is the node's own code)."""

    def __init__(self, method: str, code: int, message: str) -> None:
        super().__init__(f"{method}: error {code}: {message}")
        self.code, self.message = code, message


class JsonRpc:
    """JSON-RPC 1.0 over one short HTTP connection per call (loopback only)."""

    def __init__(self, port: int, user: str, password: str, path: str = "/") -> None:
        self.port, self.path = port, path
        self.auth = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()

    def __call__(self, method: str, *params: Any) -> Any:
        body = json.dumps(
            {"jsonrpc": "1.0", "id": 1, "method": method, "params": list(params)}, default=str
        )
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        try:
            conn.request(
                "POST",
                self.path,
                body,
                {"Authorization": self.auth, "Content-Type": "application/json"},
            )
            response = conn.getresponse()
            data = response.read()
        finally:
            conn.close()
        try:
            reply = json.loads(data, parse_float=Decimal)
        except ValueError:
            raise RpcError(method, -1, f"HTTP {response.status} {data[:200]!r}") from None
        if reply.get("error"):
            raise RpcError(method, int(reply["error"]["code"]), str(reply["error"]["message"]))
        return reply["result"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def bitcoind_binary() -> Path:
    return Path(os.environ.get("BITCOIND") or DEFAULT_BITCOIND)


@functools.cache
def core_unavailable() -> str | None:
    """Why Bitcoin Core cannot run here, or None when it can."""
    binary = bitcoind_binary()
    if not (binary.is_file() and os.access(binary, os.X_OK)):
        return f"no bitcoind at {binary} (set BITCOIND)"
    try:
        done = subprocess.run(
            [str(binary), "-version"], capture_output=True, text=True, timeout=30, check=False
        )
    except OSError as exc:
        return f"{binary} does not start: {exc}"
    if done.returncode != 0:
        last = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        return f"{binary} does not run ({last[0]}); apt-get install libzmq5 libsqlite3-0"
    return None


class CoreUnavailableError(RuntimeError):
    """Bitcoin Core cannot run here (no binary, or its libraries are missing)."""


def core_binary() -> Path:
    """The bitcoind binary, or CoreUnavailableError saying why there is none."""
    reason = core_unavailable()
    if reason is not None:
        raise CoreUnavailableError(reason)
    return bitcoind_binary()


@dataclass
class Bitcoind:
    """One regtest bitcoind process on loopback ports with its own datadir."""

    binary: Path
    datadir: Path
    extra_args: list[str] = field(default_factory=list)
    rpcport: int = 0
    zmqport: int = 0
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{RPC_USER}:{RPC_PASSWORD}@127.0.0.1:{self.rpcport}"

    @property
    def zmq_url(self) -> str:
        return f"tcp://127.0.0.1:{self.zmqport}"

    def rpc(self, method: str, *params: Any, wallet: str | None = None) -> Any:
        path = f"/wallet/{wallet}" if wallet else "/"
        return JsonRpc(self.rpcport, RPC_USER, RPC_PASSWORD, path)(method, *params)

    def args(self, persist_mempool: bool) -> list[str]:
        return [
            str(self.binary),
            "-regtest",
            "-server",
            "-listen=0",
            f"-datadir={self.datadir}",
            "-rpcbind=127.0.0.1",
            "-rpcallowip=127.0.0.1",
            f"-rpcport={self.rpcport}",
            f"-rpcuser={RPC_USER}",
            f"-rpcpassword={RPC_PASSWORD}",
            "-fallbackfee=0.0002",
            f"-zmqpubsequence={self.zmq_url}",
            "-printtoconsole=0",
            *([] if persist_mempool else ["-persistmempool=0"]),
            *self.extra_args,
        ]

    def start(self, persist_mempool: bool = True) -> None:
        """Start on the ports chosen at the first start (fresh ones then, retried on a clash)."""
        first = self.rpcport == 0
        for attempt in range(3):
            if first:
                self.rpcport, self.zmqport = free_port(), free_port()
            self.datadir.mkdir(parents=True, exist_ok=True)
            if not persist_mempool:
                # -persistmempool=0 neither loads nor rewrites mempool.dat; drop it so an
                # older copy cannot come back at a later restart: the mempool is gone for good.
                (self.datadir / "regtest" / "mempool.dat").unlink(missing_ok=True)
            log = (self.datadir / "stdout.log").open("ab")
            try:
                self.process = subprocess.Popen(
                    self.args(persist_mempool), stdout=log, stderr=subprocess.STDOUT
                )
            finally:
                log.close()
            if self._wait_ready():
                return
            if not first or attempt == 2:
                break
        raise RuntimeError(f"bitcoind did not start: {self.log_tail()}")

    def _wait_ready(self) -> bool:
        deadline = time.monotonic() + START_TIMEOUT
        assert self.process is not None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.process = None
                return False  # e.g. a port taken between free_port() and the bind
            try:
                self.rpc("getblockcount")
                return True
            except RpcError as exc:
                if exc.code != RPC_IN_WARMUP:
                    raise
            except OSError:
                pass  # not listening yet
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"bitcoind not ready after {START_TIMEOUT}s: {self.log_tail()}")

    def stop(self) -> None:
        """Stop cleanly (bitcoind writes mempool.dat unless -persistmempool=0)."""
        if self.process is None:
            return
        try:
            self.rpc("stop")
        except (OSError, RpcError):
            self.process.terminate()
        try:
            self.process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.kill()
        self.process = None

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(10)
            self.process = None

    def send_signal(self, signum: int) -> None:
        """SIGSTOP / SIGCONT (a hung node), or any other signal, to the running bitcoind."""
        if self.process is not None:
            self.process.send_signal(signum)

    def terminate(self) -> None:
        """SIGTERM, as an init system stops it (a clean shutdown: mempool.dat is written)."""
        if self.process is None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.kill()
        self.process = None

    def log_tail(self, lines: int = 15) -> str:
        texts = []
        for path in (self.datadir / "stdout.log", self.datadir / "regtest" / "debug.log"):
            if path.exists():
                texts += path.read_text(errors="replace").splitlines()[-lines:]
        return "\n".join(texts) or "(no log)"
