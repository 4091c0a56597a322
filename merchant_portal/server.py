"""`cryptocity web`: gunicorn serving the portal (each worker builds its own app and pools)."""

from __future__ import annotations

from typing import Any

from flask import Flask
from gunicorn.app.base import BaseApplication

from pos.settings import Settings


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


def serve(settings: Settings, bind: str, workers: int = 2, threads: int = 512) -> int:
    # gthread: each open live page (SSE) holds a thread while it waits on the process's event
    # hub (a Condition, no CPU, no Redis call), so workers get many cheap threads: 2 x 512
    # serve a thousand open checkout pages and still answer the terminals.
    PortalServer(
        settings,
        {
            "bind": bind,
            "workers": workers,
            "threads": threads,
            "timeout": 60,
            "graceful_timeout": 10,
            "accesslog": "-",
            "errorlog": "-",
            "proc_name": "cryptocity-web",
        },
    ).run()
    return 0
