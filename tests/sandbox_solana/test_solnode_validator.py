"""The surfpool launcher, sandbox set-up (KZTE mint, funded wallets), faucet and restarts."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from solders.keypair import Keypair
from solders.pubkey import Pubkey
from websockets.asyncio.client import connect

from sandbox.solana import rpc, spl
from sandbox.solana.install import LAUNCHER, ensure_installed, is_installed
from sandbox.solana.keys import faucet_keypair_path, load_keypair, mint_keypair_path, state_file
from sandbox.solana.mint import MERCHANT_SOL_LAMPORTS, faucet
from sandbox.solana.validator import RunningValidator, start_validator

MERCHANT = str(Keypair().pubkey())


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("solnode-validator")


@pytest.fixture(scope="module")
def validator(data_dir: Path) -> Iterator[RunningValidator]:
    ensure_installed()
    started = time.monotonic()
    running = start_validator(data_dir, kzte_decimals=6, fund_wallets=[MERCHANT])
    running.startup_seconds = time.monotonic() - started  # type: ignore[attr-defined]
    yield running
    running.stop()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_install_is_idempotent() -> None:
    node_dir = ensure_installed()
    assert is_installed()
    assert (node_dir / "surfnet.js").is_file()
    assert (node_dir / "package-lock.json").is_file()


def test_ready_quickly_and_state_file_written(validator: RunningValidator, data_dir: Path) -> None:
    assert validator.startup_seconds < 20  # type: ignore[attr-defined]
    state = json.loads(state_file(data_dir).read_text())
    assert state == {
        "rpc_url": validator.rpc_url,
        "ws_url": validator.ws_url,
        "kzte_mint": validator.kzte_mint,
        "kzte_decimals": 6,
    }
    assert validator.rpc_url.startswith("http://127.0.0.1:")
    assert validator.ws_url.startswith("ws://127.0.0.1:")


def test_keypairs_stored_like_solana_keygen(validator: RunningValidator, data_dir: Path) -> None:
    for path in (mint_keypair_path(data_dir), faucet_keypair_path(data_dir)):
        raw = json.loads(path.read_text())
        assert isinstance(raw, list) and len(raw) == 64
        assert all(isinstance(b, int) and 0 <= b <= 255 for b in raw)
        assert path.stat().st_mode & 0o077 == 0
    assert str(load_keypair(mint_keypair_path(data_dir)).pubkey()) == validator.kzte_mint


def test_mint_on_chain_and_merchant_funded(validator: RunningValidator, data_dir: Path) -> None:
    async def check() -> None:
        async with rpc.client(validator.rpc_url) as conn:
            mint = await rpc.get_mint(conn, Pubkey.from_string(validator.kzte_mint))
            assert mint is not None
            assert mint.decimals == 6
            assert mint.token_program == spl.TOKEN_PROGRAM_ID
            assert mint.mint_authority == load_keypair(faucet_keypair_path(data_dir)).pubkey()
            sol = await rpc.sol_balance(conn, Pubkey.from_string(MERCHANT))
            assert sol == MERCHANT_SOL_LAMPORTS

    asyncio.run(check())


def test_faucet_mints_kzte_and_gives_sol(validator: RunningValidator, data_dir: Path) -> None:
    shopper = Keypair().pubkey()
    sig = faucet(validator.rpc_url, data_dir, str(shopper), 2_500_000, 50_000_000)
    assert len(sig) > 60
    faucet(validator.rpc_url, data_dir, str(shopper), 500_000, 0)  # ATA exists now

    async def check() -> None:
        async with rpc.client(validator.rpc_url) as conn:
            ata = spl.associated_token_address(shopper, Pubkey.from_string(validator.kzte_mint))
            assert await rpc.token_balance(conn, ata) == 3_000_000
            assert await rpc.sol_balance(conn, shopper) == 50_000_000

    asyncio.run(check())


def test_restart_keeps_the_mint_address(tmp_path: Path) -> None:
    rpc_port, ws_port = _free_port(), _free_port()
    with start_validator(tmp_path) as first:
        first_mint = first.kzte_mint
    assert not first.running
    assert not state_file(tmp_path).exists()
    # Fixed ports go through the launcher's TCP relay.
    with start_validator(tmp_path, rpc_port=rpc_port, ws_port=ws_port) as second:
        assert second.rpc_url == f"http://127.0.0.1:{rpc_port}"
        assert second.ws_url == f"ws://127.0.0.1:{ws_port}"
        assert second.kzte_mint == first_mint

        async def check() -> None:
            async with rpc.client(second.rpc_url) as conn:
                mint = await rpc.get_mint(conn, Pubkey.from_string(first_mint))
                assert mint is not None and mint.decimals == 6
            # The WebSocket endpoint answers through the relay too.
            async with connect(second.ws_url) as ws:
                await ws.send(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "slotSubscribe"}))
                reply = json.loads(await asyncio.wait_for(ws.recv(), 10))
                assert isinstance(reply["result"], int)

        asyncio.run(check())
    assert not state_file(tmp_path).exists()


def test_launcher_exits_when_stdin_closes() -> None:
    ensure_installed()
    proc = subprocess.Popen(
        ["node", str(LAUNCHER)],
        cwd=LAUNCHER.parent,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert proc.stdin is not None and proc.stdout is not None
    try:
        ready = json.loads(proc.stdout.readline())
        assert ready["event"] == "ready" and ready["rpcUrl"].startswith("http://127.0.0.1:")
        proc.stdin.close()  # what happens when the parent dies
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()


def test_launcher_reports_busy_port() -> None:
    ensure_installed()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            ["node", str(LAUNCHER), "--rpc-port", str(port)],
            cwd=LAUNCHER.parent,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    assert result.returncode == 1
    message = json.loads(result.stdout.splitlines()[0])
    assert message["event"] == "error" and "EADDRINUSE" in message["error"]
