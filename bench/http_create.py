"""Benchmark: invoice creation over HTTP under gunicorn, at several client concurrencies.

`cryptocity web` (gunicorn, the shipped settings: 2 gevent workers) runs as a
subprocess on a free loopback port against a scratch database and Redis. The load generator is
Debian's `wrk` (a separate C process, closed loop: each connection sends its next request when
the previous answer arrives) driven by a generated Lua script. The request is the REST API's
`POST /api/v1/invoices` with a bearer key when the API is mounted, else the cashier terminal's
form post (logged-in session cookie + CSRF token) — the result says which.

BTC invoices are created: the heavier path (rate lock, atomic derivation-index update,
BIP84 address derivation). Target: 1,000 invoices/s with p99 under 50 ms on 2 cores.
"""

from __future__ import annotations

import http.cookiejar
import importlib.util
import json
import re
import shutil
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from bench.common import Scratch, WebServer, profile_top, say, scratch, web_server
from pos import accounts
from pos.models import Invoice, Role

TAG = "http"
TARGET_RPS = 1000.0
TARGET_P99_MS = 50.0
PRICE_TIYN = 2_500_00
PASSWORD = "bench-cashier-password"
USER_AGENT = "cryptocity-bench"
API_KEYS = 16  # each key is limited to 10,000 requests a minute; spread the load
_CSRF = re.compile(r'name="csrf_token"\s+value="([^"]+)"')


@dataclass(frozen=True)
class Target:
    kind: str  # "rest-api" or "terminal-form"
    path: str
    headers: dict[str, str]
    # The REST API: the bearer tokens rotated per request; the form: the one urlencoded body.
    bodies: list[str]


def _api_present() -> bool:
    return importlib.util.find_spec("pos.integrations") is not None


def _seed_keys(env: Scratch) -> list[str]:
    from pos.integrations import MAX_RATE_LIMIT_PER_MINUTE, create_api_key

    tokens = []
    with env.rt.session_factory() as session:
        for number in range(API_KEYS):
            _key, token = create_api_key(
                session,
                env.merchant_id,
                f"bench {number}",
                ["invoices:write", "invoices:read"],
                rate_limit_per_minute=MAX_RATE_LIMIT_PER_MINUTE,
            )
            tokens.append(token)
        session.commit()
    return tokens


def _api_target(server: WebServer, env: Scratch) -> Target | None:
    """The REST API target when `/api/v1/invoices` is served (401 without a key), else None."""
    if not _api_present():
        return None
    request = urllib.request.Request(f"{server.base_url}/api/v1/invoices", data=b"{}")
    try:
        with urllib.request.urlopen(request, timeout=10):
            return None  # accepted without a key: not the API we know
    except urllib.error.HTTPError as exc:
        exc.close()
        if exc.code != 401:
            return None
    tokens = _seed_keys(env)
    return Target("rest-api", "/api/v1/invoices", {"Content-Type": "application/json"}, tokens)


def _form_target(server: WebServer, env: Scratch) -> Target:
    """Log a cashier in and prepare the terminal's form post (session cookie + CSRF token)."""
    email = "cashier@bench.example"
    with env.rt.session_factory() as session:
        accounts.create_user(session, email, PASSWORD, Role.CASHIER, env.merchant_id)
        session.commit()
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    # Flask-Login's session protection ties the session to the User-Agent: wrk sends the same.
    opener.addheaders = [("User-Agent", USER_AGENT)]
    page = opener.open(f"{server.base_url}/login", timeout=10).read().decode()
    token = _CSRF.search(page)
    if token is None:
        raise RuntimeError("no CSRF token on the login page")
    form = {"csrf_token": token.group(1), "email": email, "password": PASSWORD}
    opener.open(
        f"{server.base_url}/login", urllib.parse.urlencode(form).encode(), timeout=10
    ).read()
    page = opener.open(f"{server.base_url}/terminal/", timeout=10).read().decode()
    token = _CSRF.search(page)
    if token is None:
        raise RuntimeError("the cashier login did not reach the terminal page")
    cookie = "; ".join(f"{c.name}={c.value}" for c in jar)
    body = urllib.parse.urlencode(
        {
            "csrf_token": token.group(1),
            "amount": str(PRICE_TIYN // 100),
            "tip": "0",
            "method": "btc",
            "mode": "keypad",
            "description": "bench",
        }
    )
    return Target(
        "terminal-form",
        "/terminal/invoices",
        {
            "Content-Type": "application/x-www-form-urlencoded",
            "Cookie": cookie,
            "User-Agent": USER_AGENT,
        },
        [body],
    )


def _lua_string(text: str) -> str:
    return json.dumps(text)  # a JSON string literal is a valid Lua string literal here


def _lua_script(target: Target) -> str:
    """wrk script: rotate keys/bodies per request, print the summary as one JSON line."""
    if target.kind == "rest-api":
        tokens = ", ".join(_lua_string(t) for t in target.bodies)
        body = _lua_string(json.dumps({"price_tiyn": PRICE_TIYN, "method": "btc"}))
        make = (
            f"local tokens = {{{tokens}}}\n"
            f"local body = {body}\n"
            "local n = 0\n"
            "request = function()\n"
            "  n = n + 1\n"
            "  local headers = {['Content-Type'] = 'application/json',\n"
            "    ['Authorization'] = 'Bearer ' .. tokens[(n % #tokens) + 1]}\n"
            f"  return wrk.format('POST', {_lua_string(target.path)}, headers, body)\n"
            "end\n"
        )
    else:
        headers = ", ".join(
            f"[{_lua_string(k)}] = {_lua_string(v)}" for k, v in target.headers.items()
        )
        make = (
            f"local headers = {{{headers}}}\n"
            f"local body = {_lua_string(target.bodies[0])}\n"
            "request = function()\n"
            f"  return wrk.format('POST', {_lua_string(target.path)}, headers, body)\n"
            "end\n"
        )
    report = (
        "done = function(summary, latency, requests)\n"
        "  local e = summary.errors\n"
        '  io.write(string.format(\'BENCHJSON {"requests": %d, "duration_us": %d, '
        '"p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d, "mean_us": %.1f, '
        '"non_2xx_3xx": %d, "connect_errors": %d, "read_errors": %d, "write_errors": %d, '
        '"timeouts": %d}\\n\',\n'
        "    summary.requests, summary.duration, latency:percentile(50),"
        " latency:percentile(90), latency:percentile(99), latency.max, latency.mean,\n"
        "    e.status, e.connect, e.read, e.write, e.timeout))\n"
        "end\n"
    )
    return make + report


def _invoice_count(env: Scratch) -> int:
    with env.rt.session_factory() as session:
        return int(session.scalar(select(func.count()).select_from(Invoice)) or 0)


def _wrk(base_url: str, script: Path, connections: int, seconds: int) -> dict[str, Any]:
    command = [
        "wrk",
        "-t2",
        f"-c{connections}",
        f"-d{seconds}s",
        "--timeout",
        "10s",
        "-s",
        str(script),
        base_url,
    ]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=seconds + 60, check=False
    )
    for line in done.stdout.splitlines():
        if line.startswith("BENCHJSON "):
            parsed: dict[str, Any] = json.loads(line.removeprefix("BENCHJSON "))
            return parsed
    raise RuntimeError(f"wrk printed no summary (exit {done.returncode}): {done.stderr[-500:]}")


def _level(
    env: Scratch, server: WebServer, script: Path, connections: int, seconds: int
) -> dict[str, Any]:
    before = _invoice_count(env)
    raw = _wrk(server.base_url, script, connections, seconds)
    created = _invoice_count(env) - before
    duration_s = raw["duration_us"] / 1e6
    errors = sum(raw[k] for k in ("non_2xx_3xx", "connect_errors", "read_errors", "timeouts"))
    return {
        "clients": connections,
        "seconds": round(duration_s, 2),
        "requests": raw["requests"],
        "errors": errors,
        "non_2xx_3xx": raw["non_2xx_3xx"],
        "invoices_in_db": created,
        "invoices_per_s": round(created / duration_s, 1),
        "p50_ms": round(raw["p50_us"] / 1000, 2),
        "p90_ms": round(raw["p90_us"] / 1000, 2),
        "p99_ms": round(raw["p99_us"] / 1000, 2),
        "max_ms": round(raw["max_us"] / 1000, 2),
    }


def _profile(env: Scratch, target: Target, requests: int) -> list[str]:
    """cProfile of the same request handled in-process (Flask test client, no HTTP server)."""
    from merchant_portal import create_app

    app = create_app(runtime=env.rt, test_config={"WTF_CSRF_ENABLED": False})
    client = app.test_client()
    if target.kind == "rest-api":
        headers = {"Authorization": f"Bearer {target.bodies[0]}"}

        def work() -> None:
            for _ in range(requests):
                client.post(
                    target.path,
                    json={"price_tiyn": PRICE_TIYN, "method": "btc"},
                    headers=headers,
                )
    else:
        client.post("/login", data={"email": "cashier@bench.example", "password": PASSWORD})
        form = dict(urllib.parse.parse_qsl(target.bodies[0]))

        def work() -> None:
            for _ in range(requests):
                client.post(target.path, data=form)

    return profile_top(work, 20)


def run(levels: tuple[int, ...] = (16, 64, 256), seconds: int = 10) -> dict[str, Any]:
    """Measure invoice creation through gunicorn at each concurrency in `levels`."""
    if shutil.which("wrk") is None:
        return {"available": False, "reason": "wrk is not installed (apt-get install wrk)"}
    with scratch(TAG) as env:
        say(TAG, "starting `cryptocity web` (gunicorn, 2 gevent workers)")
        with web_server(env) as server:
            target = _api_target(server, env) or _form_target(server, env)
            say(TAG, f"request: POST {target.path} ({target.kind}), BTC invoices")
            script = env.directory / "create.lua"
            script.write_text(_lua_script(target))
            say(TAG, "warm-up: 2 s at 16 clients")
            _wrk(server.base_url, script, 16, 2)
            results = []
            for connections in levels:
                say(TAG, f"{connections} clients for {seconds} s (wrk, separate process)")
                level = _level(env, server, script, connections, seconds)
                say(TAG, f"  {level}")
                results.append(level)
        best = max(r["invoices_per_s"] for r in results)
        worst_p99 = max(r["p99_ms"] for r in results)
        outcome: dict[str, Any] = {
            "available": True,
            "request": f"POST {target.path}",
            "interface": target.kind,
            "load_generator": "wrk 4 (C, epoll; separate process, 2 threads, closed loop)",
            "server": "cryptocity web: gunicorn, 2 gevent workers",
            "levels": results,
            "target": f">= {TARGET_RPS:.0f}/s with p99 < {TARGET_P99_MS:.0f} ms",
            "met": best >= TARGET_RPS and worst_p99 < TARGET_P99_MS,
        }
        if not outcome["met"]:
            say(TAG, "target missed: profiling 200 requests in-process")
            outcome["profile"] = _profile(env, target, 200)
    return outcome
