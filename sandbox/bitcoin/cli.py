"""``cryptocity sandbox bitcoin`` command: bitcoind-style options, runs until a signal."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from .node import DEFAULT_PASSWORD, DEFAULT_RPCPORT, DEFAULT_USER, start_node


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register bitcoind's option names on ``parser``."""
    parser.add_argument(
        "--rpcport",
        type=int,
        default=DEFAULT_RPCPORT,
        help="JSON-RPC port on 127.0.0.1 (default 18443, 0 = any free port)",
    )
    parser.add_argument("--rpcuser", default=DEFAULT_USER)
    parser.add_argument("--rpcpassword", default=DEFAULT_PASSWORD)
    parser.add_argument(
        "--datadir",
        type=Path,
        default=None,
        help="where blocks are stored (survives restarts; default <data dir>/sandbox/bitcoin)",
    )
    parser.add_argument(
        "--mine-interval",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="mine a block every SECONDS to a sandbox address (0 = off)",
    )
    parser.add_argument("--zmqpubsequence", metavar="ADDRESS", default=None)
    parser.add_argument("--zmqpubhashblock", metavar="ADDRESS", default=None)
    parser.add_argument("--zmqpubrawtx", metavar="ADDRESS", default=None)


def run(args: argparse.Namespace) -> int:
    """Start the node, print its URL, block until SIGINT/SIGTERM or the ``stop`` RPC."""
    node = start_node(
        args.datadir,
        rpcport=args.rpcport,
        rpcuser=args.rpcuser,
        rpcpassword=args.rpcpassword,
        mine_interval=args.mine_interval,
        zmqpubsequence=args.zmqpubsequence,
        zmqpubhashblock=args.zmqpubhashblock,
        zmqpubrawtx=args.zmqpubrawtx,
    )
    done = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        done.set()

    previous = {}
    if threading.current_thread() is threading.main_thread():  # signals need the main thread
        previous = {s: signal.signal(s, _on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    print(f"bitcoin regtest sandbox ready at {node.url}", flush=True)
    try:
        while not done.wait(0.2) and not node.stopped.is_set():
            pass
    finally:
        node.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry point: ``python -m sandbox.bitcoin.cli``."""
    parser = argparse.ArgumentParser(prog="cryptocity sandbox bitcoin")
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
