"""CLI entry point (subprocess, SIGTERM shutdown), ``stop`` RPC and the benchmark script."""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from btcnode_helpers import AUTH

from sandbox.bitcoin import bench_block, cli
from sandbox.bitcoin.node import start_node


def _call(url: str, method: str) -> object:
    req = urllib.request.Request(
        url, data=json.dumps({"id": 1, "method": method}).encode(), headers={"Authorization": AUTH}
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())["result"]


def test_cli_subprocess_ready_line_and_sigterm(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sandbox.bitcoin.cli",
            "--rpcport",
            "0",
            "--datadir",
            str(tmp_path / "d"),
            "--mine-interval",
            "0.2",
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert "ready at http://cryptocity:cryptocity@127.0.0.1:" in line
        port = int(line.rsplit(":", 1)[1])
        url = f"http://127.0.0.1:{port}/"
        deadline = time.monotonic() + 10
        while _call(url, "getblockcount") == 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _call(url, "getblockcount") >= 1  # --mine-interval mines on its own
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout:
            proc.stdout.close()
    assert (tmp_path / "d" / "blocks.sqlite").exists()


def test_cli_arguments_use_bitcoind_names() -> None:
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    args = parser.parse_args(["--zmqpubsequence", "tcp://127.0.0.1:28332"])
    assert (args.rpcport, args.rpcuser, args.rpcpassword, args.mine_interval) == (
        18443,
        "cryptocity",
        "cryptocity",
        0.0,
    )
    assert args.zmqpubsequence == "tcp://127.0.0.1:28332" and args.zmqpubrawtx is None


def test_stop_rpc_shuts_down(tmp_path: Path) -> None:
    node = start_node(tmp_path / "s")
    assert _call(f"http://127.0.0.1:{node.port}/", "stop") == "Bitcoin Core stopping"
    assert node.stopped.wait(10)
    node.stop()


@pytest.mark.slow
def test_bench_4000_tx_block_getblock_verbosity2() -> None:
    result = bench_block.run(4000)
    assert result["tx_count"] == 4001
    assert result["getblock_v2_response_bytes"] > 4_000_000
