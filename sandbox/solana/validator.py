"""Start and stop the local surfpool validator and publish its URLs for the settings loader."""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from sandbox.solana import rpc
from sandbox.solana.errors import SolanaSandboxError, ValidatorError
from sandbox.solana.install import LAUNCHER, ensure_installed
from sandbox.solana.keys import sandbox_dir, state_file
from sandbox.solana.mint import setup_sandbox

READY_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 10.0
PORT_BUSY_WAIT_S = 15.0
SLOT_TIME_MS = 400


class RunningValidator:
    """A surfpool process started by :func:`start_validator`; stop it with :meth:`stop`."""

    def __init__(
        self,
        process: subprocess.Popen[bytes],
        data_dir: Path,
        rpc_url: str,
        ws_url: str,
        kzte_mint: str,
        kzte_decimals: int,
    ) -> None:
        self.process = process
        self.data_dir = data_dir
        self.rpc_url = rpc_url
        self.ws_url = ws_url
        self.kzte_mint = kzte_mint
        self.kzte_decimals = kzte_decimals

    @property
    def running(self) -> bool:
        """True while the launcher process is alive."""
        return self.process.poll() is None

    def state(self) -> dict[str, Any]:
        """The content written to ``<data_dir>/sandbox/solana.json``."""
        return {
            "rpc_url": self.rpc_url,
            "ws_url": self.ws_url,
            "kzte_mint": self.kzte_mint,
            "kzte_decimals": self.kzte_decimals,
        }

    def stop(self) -> None:
        """Stop the validator (idempotent) and remove the state file if it is ours."""
        _terminate(self.process)
        path = state_file(self.data_dir)
        with contextlib.suppress(OSError, ValueError):
            # Another validator may have taken over the data dir: leave its file alone.
            if json.loads(path.read_text()).get("rpc_url") == self.rpc_url:
                path.unlink()

    def __enter__(self) -> RunningValidator:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"RunningValidator(rpc_url={self.rpc_url!r}, kzte_mint={self.kzte_mint!r})"


def _terminate(process: subprocess.Popen[bytes]) -> None:
    if process.stdin is not None and not process.stdin.closed:
        # EOF on stdin is the launcher's "parent is gone" signal.
        with contextlib.suppress(OSError):
            process.stdin.close()
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    if process.stdout is not None:
        process.stdout.close()


def _read_ready_line(process: subprocess.Popen[bytes], stdout: IO[bytes]) -> dict[str, Any]:
    deadline = time.monotonic() + READY_TIMEOUT_S
    buffer = b""
    with selectors.DefaultSelector() as sel:
        sel.register(stdout, selectors.EVENT_READ)
        while b"\n" not in buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ValidatorError(f"surfpool not ready within {READY_TIMEOUT_S:.0f}s")
            if not sel.select(remaining):
                continue
            chunk = os.read(stdout.fileno(), 4096)
            if not chunk:
                raise ValidatorError(f"surfpool exited early (code {process.wait()})")
            buffer += chunk
    try:
        message: dict[str, Any] = json.loads(buffer.split(b"\n", 1)[0])
    except ValueError as exc:
        raise ValidatorError(f"unexpected launcher output: {buffer[:200]!r}") from exc
    if message.get("event") != "ready":
        raise ValidatorError(f"surfpool failed: {message.get('error', message)}")
    return message


def launch(rpc_port: int, ws_port: int, log_path: Path) -> tuple[subprocess.Popen[bytes], str, str]:
    """Spawn the Node launcher and wait for its ready line; returns (process, rpc_url, ws_url)."""
    node_dir = ensure_installed()
    node = shutil.which("node")
    if node is None:
        raise ValidatorError("'node' not found on PATH")
    cmd = [node, str(LAUNCHER), "--slot-time-ms", str(SLOT_TIME_MS)]
    if rpc_port:
        cmd += ["--rpc-port", str(rpc_port)]
    if ws_port:
        cmd += ["--ws-port", str(ws_port)]
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            cmd, cwd=node_dir, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log
        )
    assert process.stdout is not None
    try:
        ready = _read_ready_line(process, process.stdout)
    except BaseException:
        _terminate(process)
        raise
    return process, str(ready["rpcUrl"]), str(ready["wsUrl"])


def _launch_retrying(
    rpc_port: int, ws_port: int, directory: Path
) -> tuple[subprocess.Popen[bytes], str, str]:
    """`launch`, waiting a few seconds for a fixed port that is still taken.

    A restart on the same port can find it briefly busy: the old listener's port may have been
    picked as another connection's ephemeral local port in the meantime.
    """
    deadline = time.monotonic() + PORT_BUSY_WAIT_S
    while True:
        try:
            return launch(rpc_port, ws_port, directory / "surfnet.log")
        except ValidatorError as exc:
            fixed = bool(rpc_port or ws_port)
            if not fixed or "EADDRINUSE" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def start_validator(
    data_dir: Path,
    rpc_port: int = 0,
    ws_port: int = 0,
    kzte_decimals: int = 6,
    fund_wallets: Sequence[str] = (),
) -> RunningValidator:
    """Start an offline surfpool validator with the sandbox KZTE mint and funded wallets.

    Ports 0 let surfpool pick free ones. On return the KZTE mint exists (same
    address on every start, from the keypair in ``<data_dir>/sandbox/solana``),
    ``fund_wallets`` hold SOL and ``<data_dir>/sandbox/solana.json`` names the
    URLs and mint. Raises ValidatorError (or another SolanaSandboxError) on failure.
    """
    if not 0 <= kzte_decimals <= 9:
        raise ValidatorError(f"kzte_decimals must be 0..9, got {kzte_decimals}")
    data_dir = Path(data_dir).resolve()
    process, rpc_url, ws_url = _launch_retrying(rpc_port, ws_port, sandbox_dir(data_dir))
    validator = RunningValidator(process, data_dir, rpc_url, ws_url, "", kzte_decimals)
    try:

        async def setup() -> str:
            async with rpc.client(rpc_url) as conn:
                mint = await setup_sandbox(conn, data_dir, kzte_decimals, fund_wallets)
                return str(mint)

        validator.kzte_mint = rpc.run_sync(setup())
        _write_state(state_file(data_dir), validator.state())
    except SolanaSandboxError:
        validator.stop()
        raise
    except Exception as exc:
        validator.stop()
        raise ValidatorError(f"sandbox setup failed: {exc}") from exc
    except BaseException:  # Ctrl-C during setup: still no orphan
        validator.stop()
        raise
    return validator


def _write_state(path: Path, state: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(state, indent=2) + "\n")
    os.replace(tmp, path)  # readers never see a half-written file
