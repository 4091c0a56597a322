"""The sandbox Bitcoin node in a process of its own, run like bitcoind without -txindex.

`python -m drills.sandbox_node --datadir D [--rpcport P] [--zmqpubsequence Z] [--prune]` prints
`ready <port>` once it serves, then runs until SIGTERM / SIGINT (a clean stop: the mempool is
saved). Being a process, the drills can SIGKILL it (the mempool is lost) or SIGSTOP it;
`NodeProcess` is the parent's side.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import FrameType

from sandbox.bitcoin.node import start_node


class NodeProcess:
    """The sandbox node in a process of its own (drills.sandbox_node), so it can be signalled."""

    READY_TIMEOUT = 60.0

    def __init__(self, process: subprocess.Popen[bytes], port: int) -> None:
        self.process = process
        self.port = port

    @classmethod
    def start(cls, datadir: Path, port: int, zmq_url: str, prune: bool) -> NodeProcess:
        datadir.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "drills.sandbox_node", "--datadir", str(datadir)]
        command += ["--rpcport", str(port), "--zmqpubsequence", zmq_url]
        if prune:
            command.append("--prune")
        deadline = time.monotonic() + cls.READY_TIMEOUT
        while True:  # a restart may find its fixed port briefly taken: retry until the deadline
            with (datadir / "node.log").open("ab") as log:
                process = subprocess.Popen(
                    command,
                    cwd=Path(__file__).resolve().parents[1],  # the repository: finds `drills`
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=log,
                )
            assert process.stdout is not None
            line = process.stdout.readline().decode()  # "ready <port>", or EOF if it failed
            process.stdout.close()
            if line.startswith("ready "):
                return cls(process, int(line.split()[1]))
            process.wait(10)
            if time.monotonic() > deadline:
                raise RuntimeError(f"the sandbox node did not start; see {datadir / 'node.log'}")
            time.sleep(0.5)

    def stop(self) -> None:
        """SIGTERM and wait: the node saves its mempool and closes its chain."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m drills.sandbox_node")
    parser.add_argument("--datadir", type=Path, required=True)
    parser.add_argument("--rpcport", type=int, default=0)
    parser.add_argument("--zmqpubsequence", default=None)
    parser.add_argument("--prune", action="store_true")
    args = parser.parse_args(argv)
    node = start_node(
        args.datadir,
        rpcport=args.rpcport,
        zmqpubsequence=args.zmqpubsequence,
        txindex=False,
        prune=args.prune,
    )
    done = threading.Event()

    def _stop(_signum: int, _frame: FrameType | None) -> None:
        done.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _stop)
    print(f"ready {node.port}", flush=True)
    try:
        while not done.wait(0.2) and not node.stopped.is_set():
            pass
    finally:
        node.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
