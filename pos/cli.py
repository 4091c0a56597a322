"""`cryptocity`: one console script for operators, scripts and tests.

Every command that reports something takes `--json`. Errors a person can cause (bad config,
bad input, an unreachable service) print one line `error: …` and exit 2 — never a traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import secrets
import sys
from collections.abc import Callable, Sequence
from typing import Any

from pos import accounts, invoices, money
from pos.cli_files import write_output
from pos.errors import PosError
from pos.invoice_view import invoice_as_dict
from pos.models import Merchant, MerchantStatus, Role, SettlementMode
from pos.qr import qr_png, qr_svg
from pos.runtime import Runtime, open_runtime
from pos.settings import Settings
from pos.states import PaymentMethod

Handler = Callable[[argparse.Namespace, Settings], int]
LONG_RUNNING = frozenset({"worker", "web", "demo", "sandbox", "db", "wallet"})


def _emit(args: argparse.Namespace, data: dict[str, Any], text: str) -> None:
    print(json.dumps(data, indent=2, sort_keys=True) if args.json else text)


def _with_runtime(fn: Callable[[argparse.Namespace, Runtime], int]) -> Handler:
    def handler(args: argparse.Namespace, settings: Settings) -> int:
        runtime = open_runtime(settings)
        try:
            return fn(args, runtime)
        finally:
            runtime.close()

    return handler


# --- db ---------------------------------------------------------------------------------------


def cmd_db_upgrade(args: argparse.Namespace, settings: Settings) -> int:
    from pos.migrate import upgrade

    upgrade(settings.database_url)
    print("database is up to date")
    return 0


# --- merchants and users ----------------------------------------------------------------------


@_with_runtime
def cmd_merchant_create(args: argparse.Namespace, rt: Runtime) -> int:
    from sqlalchemy.exc import IntegrityError

    from settlement.wallet_check import check_wallet_on_chain

    try:
        with rt.session_factory.begin() as session:
            merchant = accounts.create_merchant(
                session,
                rt.settings,
                args.name,
                btc_xpub=args.btc_xpub,
                solana_wallet=args.solana_wallet,
                status=MerchantStatus.PENDING if args.pending else MerchantStatus.ACTIVE,
                settlement_mode=SettlementMode(args.settlement),
            )
            if merchant.solana_wallet:
                check_wallet_on_chain(rt.settings.solana_rpc_url, merchant.solana_wallet)
            if args.payout_hold_hours is not None:
                accounts.set_payout_hold(session, merchant, args.payout_hold_hours)
            data = _merchant_dict(merchant, rt.settings)
    except IntegrityError as exc:  # another merchant took the wallet since the check
        taken = accounts.destination_taken(exc)
        if taken is None:
            raise
        raise taken from None
    _emit(
        args,
        data,
        f"merchant {data['id']} created: {data['name']} (settlement: {data['settlement_mode']})",
    )
    return 0


@_with_runtime
def cmd_merchant_settlement(args: argparse.Namespace, rt: Runtime) -> int:
    with rt.session_factory.begin() as session:
        merchant = accounts.get_merchant(session, args.merchant)
        changed = accounts.set_settlement_mode(session, merchant, SettlementMode(args.mode))
        if args.payout_hold_hours is not None:
            accounts.set_payout_hold(session, merchant, args.payout_hold_hours)
        data = _merchant_dict(merchant, rt.settings)
    note = "" if changed else " (unchanged)"
    _emit(
        args,
        data,
        f"merchant {data['id']}: settlement {data['settlement_mode']}{note}; applies to "
        "invoices created from now on",
    )
    return 0


def _merchant_dict(merchant: Merchant, settings: Settings) -> dict[str, Any]:
    from pos.methods.bitcoin import first_addresses

    return {
        "id": merchant.id,
        "name": merchant.name,
        "status": merchant.status.value,
        "btc_xpub": merchant.btc_xpub,
        "solana_wallet": merchant.solana_wallet,
        "btc_first_addresses": (
            first_addresses(merchant.btc_xpub, settings.bitcoin_network)
            if merchant.btc_xpub
            else []
        ),
        "confirmations_required": merchant.confirmations_required,
        "expiry_minutes": merchant.expiry_minutes,
        "settlement_mode": merchant.settlement_mode.value,
        "payout_hold_hours": merchant.payout_hold_hours,
    }


@_with_runtime
def cmd_merchant_list(args: argparse.Namespace, rt: Runtime) -> int:
    from sqlalchemy import select

    with rt.session_factory() as session:
        rows = [
            _merchant_dict(m, rt.settings)
            for m in session.scalars(select(Merchant).order_by(Merchant.id))
        ]
    _emit(
        args,
        {"merchants": rows},
        "\n".join(f"{m['id']:>4}  {m['status']:<9} {m['name']}" for m in rows),
    )
    return 0


@_with_runtime
def cmd_user_create(args: argparse.Namespace, rt: Runtime) -> int:
    password = args.password or secrets.token_urlsafe(12)
    with rt.session_factory.begin() as session:
        user = accounts.create_user(
            session,
            args.email,
            password,
            Role(args.role),
            args.merchant,
            display_name=args.name or "",
            # A generated password is handed over: the user must change it at first sign-in.
            one_time_password=not args.password,
        )
        data = {
            "id": user.id,
            "email": user.email,
            "role": user.role.value,
            "merchant_id": user.merchant_id,
        }
    if not args.password:
        data["password"] = password  # shown once, never stored in clear
    _emit(
        args,
        data,
        f"user {data['id']} created: {data['email']} ({data['role']})"
        + ("" if args.password else f", password: {password}"),
    )
    return 0


# --- invoices ---------------------------------------------------------------------------------


@_with_runtime
def cmd_invoice_create(args: argparse.Namespace, rt: Runtime) -> int:
    request = invoices.InvoiceRequest(
        merchant_id=args.merchant,
        price_tiyn=money.parse_kzt(args.amount_kzt),
        method=PaymentMethod(args.method),
        description=args.description or "",
        order_id=args.order_id,
    )
    with rt.session_factory() as session:
        invoice = invoices.create_invoice(session, rt.settings, rt.rates, request)
        session.commit()
        invoices.publish_after_commit(rt.session_factory, rt.coordinator, session)
        data = invoice_as_dict(invoice, rt.settings, invoice.merchant.name, with_history=False)
    _emit(
        args,
        data,
        f"invoice {data['id']}: {data['price_kzt']} KZT = {data['amount_due']} "
        f"{data['asset']}\n{data['payment_uri']}",
    )
    return 0


@_with_runtime
def cmd_invoice_show(args: argparse.Namespace, rt: Runtime) -> int:
    with rt.session_factory() as session:
        invoice = invoices.get_invoice(session, args.invoice_id)
        data = invoice_as_dict(invoice, rt.settings, invoice.merchant.name)
        data["live"] = invoices.live_view(session, rt.coordinator, invoice.id)
    if args.qr_png:
        write_output(args.qr_png, qr_png(data["payment_uri"]))
    if args.qr_svg:
        write_output(args.qr_svg, qr_svg(data["payment_uri"]))
    text = "\n".join(
        [
            f"invoice {data['id']}  {data['status']} {' '.join(data['flags'])}".rstrip(),
            f"  price     {data['price_kzt']} KZT at {data['rate_kzt']} KZT/{data['asset']}",
            f"  due       {data['amount_due']} {data['asset']} ({data['amount_due_atomic']} "
            f"{data['unit']}), paid {data['amount_paid_atomic']}",
            f"  pay with  {data['payment_uri']}",
            f"  expires   {data['expires_at']}",
        ]
        + [f"  event     v{e['version']} {e['at']} {e['type']}" for e in data["events"]]
    )
    _emit(args, data, text)
    return 0


# --- operations -------------------------------------------------------------------------------


@_with_runtime
def cmd_redis_rebuild(args: argparse.Namespace, rt: Runtime) -> int:
    def progress(done: int, total: int) -> None:
        print(f"\rrebuilding live state: {done}/{total} invoices", end="", file=sys.stderr)

    count = invoices.rebuild_live_state(
        rt.session_factory, rt.coordinator, rt.settings, progress=progress
    )
    print(file=sys.stderr)
    _emit(args, {"rebuilt": count}, f"rebuilt the live state of {count} invoices")
    return 0


@_with_runtime
def cmd_rates_show(args: argparse.Namespace, rt: Runtime) -> int:
    quote = rt.rates.btc_kzt()
    lines = [f"{quote.pair} {quote.rate} ({quote.source}, {quote.as_of.isoformat()})"]
    # The components an invoice would lock: each source's value and time, and what was left out.
    lines += [f"  {leg.source}: {leg.rate} at {leg.as_of.isoformat()}" for leg in quote.legs]
    lines += [f"  {source}: left out ({why})" for source, why in quote.ignored]
    if quote.spread_bp is not None:
        lines.append(f"  spread between sources: {quote.spread_bp} bp")
    _emit(args, quote.to_dict(), "\n".join(lines))
    return 0


@_with_runtime
def cmd_rescan_bitcoin(args: argparse.Namespace, rt: Runtime) -> int:
    from settlement.btc_watcher import rewind

    with rt.session_factory.begin() as session:
        anchored = rewind(session, args.from_height)
    _emit(
        args,
        {"chain": "bitcoin", "from_height": args.from_height},
        f"the Bitcoin watcher will rescan from height {args.from_height}"
        + ("" if anchored else " (no stored block below it: from its first stored block)"),
    )
    return 0


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    from settlement.worker import run_worker

    return run_worker(settings, once=args.once)


def cmd_web(args: argparse.Namespace, settings: Settings) -> int:
    from merchant_portal.server import serve

    return serve(
        settings,
        bind=args.bind or settings.web_bind,
        workers=args.workers,
        connections=args.connections,
    )


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    from pos.demo import run_demo

    return run_demo(settings, with_chains=not args.no_chains)


# --- parser -----------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cryptocity", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    def command(
        parent: Any, name: str, fn: Handler, help_text: str, json_flag: bool = True
    ) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = parent.add_parser(name, help=help_text)
        p.set_defaults(handler=fn)
        if json_flag:
            p.add_argument("--json", action="store_true", help="machine-readable output")
        return p

    db = sub.add_parser("db", help="database schema").add_subparsers(dest="db_cmd", required=True)
    command(db, "upgrade", cmd_db_upgrade, "apply migrations", json_flag=False)

    merchant = sub.add_parser("merchant", help="merchants").add_subparsers(dest="m", required=True)
    p = command(merchant, "create", cmd_merchant_create, "register a merchant")
    p.add_argument("--name", required=True)
    p.add_argument("--btc-xpub", help="BIP84 account public key (zpub/vpub)")
    p.add_argument("--solana-wallet", help="wallet address receiving KZTE")
    p.add_argument("--pending", action="store_true", help="wait for an operator's approval")
    p.add_argument(
        "--settlement",
        choices=[m.value for m in SettlementMode],
        default=SettlementMode.TENGE.value,
        help="tenge: the zone receives the crypto and pays KZT (default); direct: the merchant's "
        "own keys receive it and the fee is invoiced monthly",
    )
    p.add_argument("--payout-hold-hours", type=int, help="tenge: hold sales this long (24)")
    command(merchant, "list", cmd_merchant_list, "list merchants")
    p = command(merchant, "settlement", cmd_merchant_settlement, "change the settlement mode")
    p.add_argument("--merchant", type=int, required=True)
    p.add_argument("--mode", required=True, choices=[m.value for m in SettlementMode])
    p.add_argument("--payout-hold-hours", type=int)

    user = sub.add_parser("user", help="users").add_subparsers(dest="u", required=True)
    p = command(user, "create", cmd_user_create, "create a user")
    p.add_argument("--role", required=True, choices=[r.value for r in Role])
    p.add_argument("--merchant", type=int, help="merchant id (owners and cashiers)")
    p.add_argument("--email", required=True)
    p.add_argument("--name", help="display name")
    p.add_argument("--password", help="initial password (default: a random one, printed once)")

    invoice = sub.add_parser("invoice", help="invoices").add_subparsers(dest="i", required=True)
    p = command(invoice, "create", cmd_invoice_create, "create an invoice")
    p.add_argument("--merchant", type=int, required=True)
    p.add_argument("--amount-kzt", required=True, help="price in tenge, e.g. 2500 or 2500.50")
    p.add_argument("--method", required=True, choices=[m.value for m in PaymentMethod])
    p.add_argument("--description")
    p.add_argument("--order-id")
    p = command(invoice, "show", cmd_invoice_show, "show an invoice, its payments and events")
    p.add_argument("invoice_id")
    p.add_argument("--qr-png", metavar="PATH", help="also write the payment QR as PNG")
    p.add_argument("--qr-svg", metavar="PATH", help="also write the payment QR as SVG")

    redis_cmd = sub.add_parser("redis", help="Redis coordination").add_subparsers(
        dest="r", required=True
    )
    command(redis_cmd, "rebuild", cmd_redis_rebuild, "rebuild live state from the database")
    rates = sub.add_parser("rates", help="exchange rates").add_subparsers(dest="x", required=True)
    command(rates, "show", cmd_rates_show, "the BTC/KZT rate invoices would lock now")

    rescan = sub.add_parser("rescan", help="rescan a chain").add_subparsers(dest="c", required=True)
    p = command(rescan, "bitcoin", cmd_rescan_bitcoin, "rescan Bitcoin blocks from a height")
    p.add_argument("--from-height", type=int, required=True)
    p = command(sub, "worker", cmd_worker, "run the settlement worker", json_flag=False)
    p.add_argument("--once", action="store_true", help="one pass, then exit (tests, cron)")
    p = command(sub, "web", cmd_web, "serve the portal with gunicorn", json_flag=False)
    p.add_argument("--bind", help="host:port (default CRYPTOCITY_WEB_BIND or 127.0.0.1:8000)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument(
        "--connections",
        type=int,
        default=20_000,
        help="open connections per (gevent) worker, live pages included",
    )
    p = command(sub, "demo", cmd_demo, "run everything with demo data", json_flag=False)
    p.add_argument("--no-chains", action="store_true", help="do not start the sandbox chains")
    _add_sandbox_commands(sub)
    from settlement.ledger.cli import register as register_ledger  # payouts …, report …

    register_ledger(sub)
    return parser


def _add_sandbox_commands(sub: Any) -> None:
    """`sandbox bitcoin|solana` and `wallet pay`, provided by the sandbox package."""
    from sandbox.commands import register

    register(sub)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # Long-running programs log their progress; one-shot commands print only their answer.
    long_running = args.command in LONG_RUNNING
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO if long_running else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not args.verbose:
        for chatty in ("httpx", "httpx2", "httpcore"):  # one line per Solana RPC otherwise
            logging.getLogger(chatty).setLevel(logging.WARNING)
        logging.getLogger("alembic").setLevel(
            logging.INFO if args.command == "db" else logging.WARNING
        )
    try:
        settings = Settings.from_env()
        return int(args.handler(args, settings))
    except PosError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `cryptocity … | head`: the reader left; not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
