"""`cryptocity web`: gunicorn serving the portal (each worker builds its own app and pools).

Workers are gevent workers: every request, and so every open live page (an SSE stream that
mostly waits), is a greenlet, not an OS thread. An idle stream costs a socket and a few
kilobytes, so ten thousand open checkout pages leave the sign-in and the terminals answering.
gunicorn monkey-patches the standard library in each worker before it loads the app: redis-py's
sockets, SQLAlchemy's pool locks and the live event hub's `threading` primitives all become
cooperative; psycopg 3 sees the patched `select` when it is first imported (inside the worker,
never before: `pos.cli` does not import it) and waits on PostgreSQL through the gevent hub.
SQLite calls run in C without yielding (short); scrypt password hashing runs on gevent's pool
of real threads (pos.passwords). Both are measured by the SSE benchmark (`/login` while 10,000
streams are open).
"""

from __future__ import annotations

import logging
import resource
from typing import Any

from flask import Flask
from gunicorn.app.base import BaseApplication

from pos.settings import Settings

log = logging.getLogger(__name__)

# Per worker: connections are not spread evenly over the workers, so each may get nearly all.
DEFAULT_CONNECTIONS = 20_000
CONTROL_SOCKET_NAME = "gunicorn.ctl"
MAX_UNIX_SOCKET_PATH = 107  # sun_path is 108 bytes with its terminating NUL on Linux


class PortalServer(BaseApplication):  # type: ignore[misc]
    def __init__(self, settings: Settings, options: dict[str, Any]) -> None:
        self.settings = settings
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Flask:
        from merchant_portal import create_app

        return create_app(self.settings)


def raise_open_files_limit(wanted: int) -> int:
    """Raise this process's soft RLIMIT_NOFILE towards `wanted` (at most the hard limit, which
    root may raise too); the workers inherit it. Returns the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, wanted))
            hard = wanted
        except (ValueError, OSError):
            pass  # not root: the hard limit stays where it is
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft


def control_socket_options(settings: Settings) -> dict[str, Any]:
    """gunicorn's control socket (25.1+) in the data dir: its default, one path per user
    ($XDG_RUNTIME_DIR or ~/.gunicorn/gunicorn.ctl), is shared by every instance on the host,
    so a second portal would take over the first one's socket (and `gunicornc` would steer the
    wrong server). A data dir too deep for a unix socket path gets none at all."""
    path = settings.data_dir / CONTROL_SOCKET_NAME
    if len(str(path).encode()) > MAX_UNIX_SOCKET_PATH:
        log.warning("data dir path too long for gunicorn's control socket: none is opened")
        return {"control_socket_disable": True}
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return {"control_socket": str(path), "control_socket_mode": 0o600}


def serve(
    settings: Settings, bind: str, workers: int = 2, connections: int = DEFAULT_CONNECTIONS
) -> int:
    # Every open stream is a socket: a worker may hold `connections` of them, plus its pools.
    raise_open_files_limit(workers * connections + 1_024)
    PortalServer(
        settings,
        {
            "bind": bind,
            "workers": workers,
            "worker_class": "gevent",
            "worker_connections": connections,
            "timeout": 60,
            "graceful_timeout": 10,
            "accesslog": "-",
            "errorlog": "-",
            "proc_name": "cryptocity-web",
            **control_socket_options(settings),
        },
    ).run()
    return 0
