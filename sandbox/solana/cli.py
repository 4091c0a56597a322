"""``cryptocity sandbox solana``: run the offline validator until Ctrl-C / SIGTERM."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from pathlib import Path
from types import FrameType

from sandbox.solana.errors import SolanaSandboxError
from sandbox.solana.validator import start_validator

DEFAULT_DATA_DIR = Path("var")


class _Stop(Exception):
    """Raised from the SIGTERM handler to leave the wait loop."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``sandbox solana`` options to ``parser``."""
    parser.add_argument("--rpc-port", type=int, default=8899, help="JSON-RPC port (0 = any free)")
    parser.add_argument("--ws-port", type=int, default=8900, help="WebSocket port (0 = any free)")
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="keeps sandbox/solana/ keypairs and writes sandbox/solana.json (default: var)",
    )
    parser.add_argument(
        "--kzte-decimals", type=int, default=6, help="decimals of the sandbox KZTE mint"
    )
    parser.add_argument(
        "--fund",
        metavar="WALLET",
        action="append",
        default=[],
        help="give this wallet SOL at start (repeatable)",
    )


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    raise _Stop


def run(args: argparse.Namespace) -> int:
    """Start the validator, print its URLs and mint as JSON, wait for Ctrl-C or SIGTERM."""
    try:
        validator = start_validator(
            args.data_dir,
            rpc_port=args.rpc_port,
            ws_port=args.ws_port,
            kzte_decimals=args.kzte_decimals,
            fund_wallets=tuple(args.fund),
        )
    except SolanaSandboxError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    previous = signal.signal(signal.SIGTERM, _raise_stop)
    try:
        print(json.dumps(validator.state()), flush=True)
        print("solana sandbox running; Ctrl-C to stop", file=sys.stderr, flush=True)
        while validator.running:
            time.sleep(0.5)
        print("error: surfpool exited unexpectedly", file=sys.stderr)
        return 1
    except (KeyboardInterrupt, _Stop):
        return 0
    finally:
        # A supervisor's SIGTERM often follows the terminal's SIGINT: let neither interrupt
        # the orderly stop of the validator.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        validator.stop()
        signal.signal(signal.SIGTERM, previous)


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry: ``python -m sandbox.solana.cli``."""
    parser = argparse.ArgumentParser(prog="cryptocity sandbox solana", description=__doc__)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
