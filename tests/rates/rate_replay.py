"""A loopback HTTP server replaying recorded rate-feed answers (tests/fixtures/rates).

`replay.answer("/v1.1/ticker", "exmo_good.json")` makes GETs of that path (query ignored)
answer the fixture, rendered with the replay's clock; `status`, `headers` and `hold_seconds`
(answer only after that long: a timeout for a client that waits less) shape the answer.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

FIXTURES = Path(__file__).parent.parent / "fixtures" / "rates"
ALMATY = timezone(timedelta(hours=5))


def render(name: str, now: datetime) -> bytes:
    """A fixture with its time placeholders filled in for `now`."""
    text = (FIXTURES / name).read_text(encoding="utf-8")
    now_s = int(now.timestamp())
    for token, value in {
        "{{now_s}}": str(now_s),
        "{{now_ms}}": str(now_s * 1000),
        "{{day_ago_ms}}": str((now_s - 86_400) * 1000),
        "{{today}}": now.astimezone(ALMATY).strftime("%d.%m.%Y"),
    }.items():
        text = text.replace(token, value)
    return text.encode("utf-8")


@dataclass
class Answer:
    fixture: str
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    hold_seconds: float = 0.0


class Replay:
    """The server; `url` is its base URL. Start with `start()`, stop with `stop()`."""

    def __init__(self, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.clock = clock
        self.answers: dict[str, Answer] = {}
        self.requests: list[str] = []  # every path+query asked, in order
        self._released = threading.Event()
        replay = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                replay.requests.append(self.path)
                answer = replay.answers.get(urlsplit(self.path).path)
                if answer is None:
                    self.send_error(404)
                    return
                if answer.hold_seconds:
                    replay._released.wait(answer.hold_seconds)
                body = render(answer.fixture, replay.clock())
                self.send_response(answer.status)
                kind = "text/xml" if answer.fixture.endswith(".xml") else "application/json"
                if answer.fixture.endswith(".html"):
                    kind = "text/html"
                self.send_header("Content-Type", f"{kind}; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                for key, value in answer.headers.items():
                    self.send_header(key, value)
                self.end_headers()
                # The client may have given up waiting (the timeout case).
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    def answer(
        self,
        path: str,
        fixture: str,
        status: int = 200,
        headers: dict[str, str] | None = None,
        hold_seconds: float = 0.0,
    ) -> None:
        self.answers[path] = Answer(fixture, status, dict(headers or {}), hold_seconds)

    def start(self) -> Replay:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._released.set()  # let held answers go, so no handler outlives the test
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=5)


class Clock:
    """A monotonic clock the test moves by hand (the refresher's schedules follow it)."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def write_rate(path: Path, rate: str, as_of: datetime | None = None) -> None:
    """A `file:` feed's JSON, as an operator's cron job would write it."""
    stamp = (as_of or datetime.now(UTC)).isoformat()
    path.write_text(json.dumps({"rate": rate, "as_of": stamp}))
