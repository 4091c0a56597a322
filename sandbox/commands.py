"""CLI commands of the sandbox chains: `cryptocity sandbox …` and `cryptocity wallet pay …`.

They live here, not in `pos`, because they drive local stand-ins and a shopper wallet that a
production deployment never runs. The wallet pays through standard JSON-RPC only, so it also
works against a real regtest bitcoind or Solana devnet.
"""

from __future__ import annotations

import argparse
import json
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pos.settings import Settings
from sandbox.bitcoin import cli as bitcoin_cli
from sandbox.bitcoin.errors import SandboxBitcoinError
from sandbox.solana import cli as solana_cli
from sandbox.solana.errors import SolanaSandboxError


def _sandbox_bitcoin(args: argparse.Namespace, settings: Settings) -> int:
    args.datadir = args.datadir or settings.sandbox_dir / "bitcoin"
    return bitcoin_cli.run(args)


def _sandbox_solana(args: argparse.Namespace, settings: Settings) -> int:
    args.data_dir = args.data_dir or settings.data_dir
    return solana_cli.run(args)


def _demo_day(args: argparse.Namespace, settings: Settings) -> int:
    from sandbox.demo_day import run

    return run(args, settings)


def _factor(args: argparse.Namespace) -> Decimal:
    if args.less is not None and args.more is not None:
        raise SystemExit("error: use --less or --more, not both")
    if args.less is not None:
        return 1 - Decimal(args.less) / 100
    if args.more is not None:
        return 1 + Decimal(args.more) / 100
    return Decimal(1)


def _wallet_pay(args: argparse.Namespace, settings: Settings) -> int:
    scheme = urlsplit(args.uri).scheme.lower()
    wallet_dir: Path = args.wallet_dir or settings.sandbox_dir / "shopper"
    times = 2 if args.twice else 1
    try:
        if scheme == "bitcoin":
            from sandbox.bitcoin.wallet import pay_uri as pay_bitcoin

            if args.wrong_mint:
                raise SystemExit("error: --wrong-mint is for Solana Pay URIs")
            txids = pay_bitcoin(
                args.uri,
                rpc_url=settings.bitcoin_rpc_url,
                wallet_dir=wallet_dir / "bitcoin",
                amount_factor=_factor(args),
                times=times,
                double_spend_to=args.double_spend_to,
            )
        elif scheme == "solana":
            from sandbox.solana.wallet import pay_uri as pay_solana

            if args.double_spend_to:
                raise SystemExit("error: --double-spend-to is for bitcoin: URIs")
            txids = pay_solana(
                args.uri,
                rpc_url=settings.solana_rpc_url,
                wallet_dir=wallet_dir / "solana",
                amount_factor=_factor(args),
                times=times,
                wrong_mint=args.wrong_mint,
                faucet_data_dir=settings.data_dir,
            )
        else:
            print("error: the URI must start with bitcoin: or solana:", file=sys.stderr)
            return 2
    except (SandboxBitcoinError, SolanaSandboxError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({"txids": txids}))
    else:
        print("\n".join(txids))
    return 0


def register(sub: Any) -> None:
    """Add `sandbox bitcoin`, `sandbox solana` and `wallet pay` to the `cryptocity` parser."""
    sandbox = sub.add_parser("sandbox", help="local sandbox chains").add_subparsers(
        dest="chain", required=True
    )
    p = sandbox.add_parser("bitcoin", help="Bitcoin Core regtest stand-in (JSON-RPC)")
    bitcoin_cli.add_arguments(p)
    p.set_defaults(handler=_sandbox_bitcoin)
    p = sandbox.add_parser("solana", help="offline Solana validator (surfpool) with KZTE")
    solana_cli.add_arguments(p)
    p.set_defaults(handler=_sandbox_solana)
    p = sandbox.add_parser("demo-day", help="a day of paid sales in the running demo")
    p.set_defaults(handler=_demo_day)

    wallet = sub.add_parser("wallet", help="the sandbox shopper wallet").add_subparsers(
        dest="w", required=True
    )
    p = wallet.add_parser("pay", help="pay a bitcoin: or solana: payment URI")
    p.set_defaults(handler=_wallet_pay)
    p.add_argument("uri")
    p.add_argument("--less", type=Decimal, metavar="PCT", help="pay PCT percent less")
    p.add_argument("--more", type=Decimal, metavar="PCT", help="pay PCT percent more")
    p.add_argument("--twice", action="store_true", help="pay the same request twice")
    p.add_argument(
        "--double-spend-to",
        metavar="ADDR",
        help="then replace the payment by a fee-bumped one to ADDR (BTC)",
    )
    p.add_argument("--wrong-mint", action="store_true", help="pay with another token (KZTE)")
    p.add_argument("--wallet-dir", type=Path, help="default <data dir>/sandbox/shopper")
    p.add_argument("--json", action="store_true")
