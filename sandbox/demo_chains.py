"""Start the sandbox chains for `cryptocity demo` and wait until each answers."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

from pos.errors import ConfigError
from pos.settings import Settings

READY_TIMEOUT_S = 60.0
DEMO_MINE_INTERVAL_S = 30


def _bitcoin_ready(rpc_url: str) -> bool:
    parts = urlsplit(rpc_url)
    request = urllib.request.Request(
        f"{parts.scheme}://{parts.hostname}:{parts.port}/",
        data=json.dumps({"jsonrpc": "1.0", "id": 0, "method": "getblockcount"}).encode(),
        headers={
            "Content-Type": "application/json",
            "Authorization": "Basic "
            + base64.b64encode(f"{parts.username}:{parts.password}".encode()).decode(),
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _wait(what: str, ready: object, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ConfigError(f"the {what} exited during start-up; see the log above")
        if callable(ready) and ready():
            return
        time.sleep(0.25)
    raise ConfigError(f"the {what} did not become ready within {READY_TIMEOUT_S:.0f} s")


def start_demo_chains(settings: Settings, env: dict[str, str]) -> list[subprocess.Popen[bytes]]:
    """Start the Bitcoin stand-in and the Solana validator; return their processes.

    The Solana sandbox writes `<data dir>/sandbox/solana.json` (URLs and the KZTE mint); web and
    worker started after this read it through their settings.
    """
    from pos.demo import DEMO_MERCHANTS
    from pos.demo_wallets import demo_solana_wallet

    command = [sys.executable, "-m", "pos.cli", "sandbox"]
    rpc = urlsplit(settings.bitcoin_rpc_url)
    bitcoin = subprocess.Popen(
        [
            *command,
            "bitcoin",
            "--rpcport",
            str(rpc.port or 18443),
            "--rpcuser",
            rpc.username or "cryptocity",
            "--rpcpassword",
            rpc.password or "cryptocity",
            "--datadir",
            str(settings.sandbox_dir / "bitcoin"),
            "--mine-interval",
            str(DEMO_MINE_INTERVAL_S),
            *(["--zmqpubsequence", settings.bitcoin_zmq_url] if settings.bitcoin_zmq_url else []),
        ],
        env=env,
        start_new_session=True,
    )
    state_file: Path = settings.sandbox_dir / "solana.json"
    state_file.unlink(missing_ok=True)
    fund: list[str] = []
    for merchant in DEMO_MERCHANTS:
        fund += ["--fund", demo_solana_wallet(merchant.slug)]
    if settings.zone_kzte_wallet:
        fund += ["--fund", settings.zone_kzte_wallet]  # SOL for the zone's refunds
    solana = subprocess.Popen(
        [
            *command,
            "solana",
            "--data-dir",
            str(settings.data_dir),
            "--rpc-port",
            str(urlsplit(settings.solana_rpc_url).port or 8899),
            "--ws-port",
            str(urlsplit(settings.solana_ws_url).port or 8900),
            *fund,
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        _wait("Bitcoin sandbox", lambda: _bitcoin_ready(settings.bitcoin_rpc_url), bitcoin)
        print(f"bitcoin: regtest stand-in at {rpc.hostname}:{rpc.port}", flush=True)
        _wait("Solana sandbox", state_file.exists, solana)
        print(f"solana: surfpool at {json.loads(state_file.read_text())['rpc_url']}", flush=True)
    except ConfigError:
        for process in (bitcoin, solana):
            process.terminate()
        raise
    return [bitcoin, solana]
