"""`cryptocity payouts …`, `conversions …` and `report zone|statement|reconcile|balances`.

Reports print the same numbers as the portal's pages (`--json` for machines, `--csv TABLE` for
one table as CSV). Only the database is opened: none of these commands needs Redis.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date
from typing import Any

from sqlalchemy.orm import Session

from pos import business_day, money
from pos.cli_files import read_input, write_output
from pos.db import make_session_factory, utcnow
from pos.errors import ValidationError
from pos.money import format_kzt
from pos.runtime import open_database
from pos.settings import Settings
from pos.states import PaymentMethod
from settlement.ledger import (
    balances,
    conversions,
    fee_invoices,
    payouts,
    reconcile,
    refunds,
    reports,
    statements,
)
from settlement.ledger.models import PayoutStatus, RefundStatus

Handler = Callable[[argparse.Namespace, Settings], int]


@contextmanager
def _session(settings: Settings) -> Iterator[Session]:
    engine = open_database(settings)
    try:
        with make_session_factory(engine)() as session:
            yield session
    finally:
        engine.dispose()


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date like 2026-11-23") from None


def _print(args: argparse.Namespace, data: dict[str, Any], text: str) -> None:
    print(json.dumps(data, indent=2, sort_keys=True, default=str) if args.json else text)


def _kzt(tiyn: int) -> str:
    return f"{format_kzt(tiyn)} KZT"


# --- payouts ----------------------------------------------------------------------------------


def _owing_lines(owing: list[payouts.NegativePayable]) -> list[str]:
    return [
        f"{n.merchant_name} owes {_kzt(-n.amount_tiyn)} (payable {_kzt(n.amount_tiyn)}): "
        f"reversed after payout: {', '.join(n.invoice_ids) or '-'}; "
        "deducted from their next payouts"
        for n in owing
    ]


def _deducted_note(tiyn: Any, invoices: Any) -> str:
    if not tiyn:
        return ""
    return f", after deducting {_kzt(int(tiyn))} reversed after payout: {', '.join(invoices)}"


def cmd_payouts_run(args: argparse.Namespace, settings: Settings) -> int:
    with _session(settings) as session:
        rebuilt = payouts.rebuild_pending(session)  # run_payouts would too; this reports it
        created = payouts.run_payouts(session, args.date)
        session.commit()
        rows = [r.as_dict() for r in payouts.list_payouts(session, business_date=args.date)]
        owing = payouts.negative_payables(session)
    new_ids = {p.id for p in created}
    lines = [
        f"payout #{r.payout_id} ({r.business_date}) "
        + ("withdrawn" if r.withdrawn else "rebuilt")
        + f": {_kzt(r.old_amount_tiyn)} -> {_kzt(r.new_amount_tiyn)}, "
        f"reversed invoices taken out: {', '.join(r.invoice_ids)}"
        for r in rebuilt
    ]
    lines += [f"{len(created)} payouts created for {args.date}"] + [
        f"  #{r['id']} {r['merchant_name']}: {r['amount_kzt']} KZT ({r['status']})"
        + _deducted_note(r["deducted_tiyn"], r["deducted_invoices"])
        for r in rows
        if r["id"] in new_ids
    ]
    lines += _owing_lines(owing)
    _print(
        args,
        {
            "date": args.date.isoformat(),
            "created": sorted(new_ids),
            "payouts": rows,
            "rebuilt": [r.as_dict() for r in rebuilt],
            "negative_payables": [n.as_dict() for n in owing],
        },
        "\n".join(lines),
    )
    return 0


def cmd_payouts_list(args: argparse.Namespace, settings: Settings) -> int:
    status = PayoutStatus(args.status) if args.status else None
    with _session(settings) as session:
        rows = payouts.list_payouts(session, status, args.date, args.merchant)
        owing = payouts.negative_payables(session, args.merchant)
    text = [
        f"#{r.id:<6} {r.business_date} {r.status:<8} {_kzt(r.amount_tiyn):>20}  {r.merchant_name}"
        + (f"  ref {r.bank_reference}" if r.bank_reference else "")
        + _deducted_note(r.deducted_tiyn, r.deducted_invoices)
        + (
            f"  BLOCKED: reversed {', '.join(r.reversed_invoices)}; "
            f"rebuild with `cryptocity payouts run --date {r.business_date}`"
            if r.blocked
            else ""
        )
        for r in rows
    ] or ["no payouts"]
    _print(
        args,
        {"payouts": [r.as_dict() for r in rows], "negative_payables": [n.as_dict() for n in owing]},
        "\n".join(text + _owing_lines(owing)),
    )
    return 0


def cmd_payouts_mark_paid(args: argparse.Namespace, settings: Settings) -> int:
    with _session(settings) as session:
        payout = payouts.mark_paid(session, args.payout_id, args.reference, now=utcnow())
        session.commit()
        data = {
            "id": payout.id,
            "status": payout.status.value,
            "bank_reference": payout.bank_reference,
            "amount_tiyn": payout.amount_tiyn,
            "transaction_id": payout.transaction_id,
        }
    _print(args, data, f"payout #{data['id']} marked paid ({data['bank_reference']})")
    return 0


def cmd_payouts_export(args: argparse.Namespace, settings: Settings) -> int:
    status = PayoutStatus(args.status) if args.status else None
    with _session(settings) as session:
        rows = payouts.list_payouts(session, status, args.date)
        text = payouts.bank_export_csv(rows)
    for row in rows:
        if row.blocked:  # left out of the file: the bank must not transfer it
            print(
                f"payout #{row.id} left out: blocked, reversed {', '.join(row.reversed_invoices)}",
                file=sys.stderr,
            )
        if row.missing_bank_details:  # left out too: there is no account to transfer to
            print(
                f"payout #{row.id} left out: {row.merchant_name} (merchant {row.merchant_id}) "
                "has no bank details; the owner sets them on the portal's profile page",
                file=sys.stderr,
            )
    if args.output:
        write_output(args.output, text)
        print(f"wrote {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


# --- reports ----------------------------------------------------------------------------------


def _period(args: argparse.Namespace) -> reports.DateRange:
    return reports.parse_range(args.start, args.end, business_day.today())


def _csv_or(args: argparse.Namespace, tables: dict[str, reports.Table]) -> bool:
    if not args.csv:
        return False
    if args.csv not in tables:
        raise ValidationError(f"--csv takes one of: {', '.join(tables)}", field="csv")
    sys.stdout.write(reports.csv_text(tables[args.csv]))
    return True


def cmd_report_zone(args: argparse.Namespace, settings: Settings) -> int:
    with _session(settings) as session:
        board = reports.zone_dashboard(session, _period(args))
    if _csv_or(args, board.tables()):
        return 0
    d = board.as_dict()
    text = "\n".join(
        [
            f"zone {d['range']['from']} .. {d['range']['to']}",
            f"  volume            {_kzt(board.volume_tiyn)}  "
            + "  ".join(f"{m}: {_kzt(v)}" for m, v in board.volume_by_method.items()),
            f"  invoices          {d['invoices_total']}  "
            + " ".join(f"{s}={n}" for s, n in board.invoice_counts.items()),
            f"  active merchants  {board.active_merchants}",
            f"  median detection  {board.median_detection_seconds} s, "
            f"settlement {board.median_settlement_seconds} s",
            f"  fees              {_kzt(board.fees_tiyn)}",
            f"  pending payouts   {board.pending_payouts} = {_kzt(board.pending_payouts_tiyn)}",
            f"  owed to merchants {_kzt(board.owed_to_merchants_tiyn)}",
        ]
    )
    _print(args, d, text)
    return 0


def cmd_report_statement(args: argparse.Namespace, settings: Settings) -> int:
    with _session(settings) as session:
        statement = statements.merchant_statement(session, args.merchant, _period(args))
    if _csv_or(args, statement.tables()):
        return 0
    text = "\n".join(
        [f"{statement.merchant_name}: opening {_kzt(statement.opening_tiyn)}"]
        + [
            f"  {ln.at:%Y-%m-%d %H:%M} {ln.kind:<10} {ln.credit_tiyn - ln.debit_tiyn:>14} "
            f"{ln.balance_tiyn:>14}  {ln.description}"
            for ln in statement.lines
        ]
        + [f"closing {_kzt(statement.closing_tiyn)}"]
    )
    _print(args, statement.as_dict(), text)
    return 0


def cmd_report_reconcile(args: argparse.Namespace, settings: Settings) -> int:
    with _session(settings) as session:
        result = reconcile.reconcile_with_nodes(session, settings, _period(args))
    if _csv_or(args, result.tables()):
        return 0
    d = result.as_dict()
    text = "\n".join(
        [
            f"reconciliation {d['range']['from']} .. {d['range']['to']}: "
            f"{result.invoices_checked} invoices",
            f"  expected {_kzt(result.expected_tiyn)}, cleared {_kzt(result.cleared_tiyn)}",
            f"  {len(result.differences)} differences; chain checks {d['chain_checks']}",
        ]
        + [
            f"  {m.method}: clearing {m.clearing_atomic} atomic, expected {m.expected_atomic} "
            f"(received {m.chain_final_atomic} - converted {m.converted_atomic} - refunded "
            f"{m.refunded_atomic} - under a tiyn {m.unbooked_atomic}): difference "
            f"{m.difference_atomic}"
            for m in result.methods
        ]
        + [
            f"  {x.invoice_id} {x.status}: expected {x.expected_tiyn} booked {x.cleared_tiyn}: "
            f"{x.cause}"
            for x in result.differences
        ]
    )
    _print(args, d, text)
    return 0


def cmd_report_balances(args: argparse.Namespace, settings: Settings) -> int:
    with _session(settings) as session:
        rows = balances.account_balances(session, args.merchant)
        balanced = balances.ledger_balances(session)
    data = {"accounts": [row.as_dict() for row in rows], "balanced": balanced}
    text = "\n".join(
        [
            f"  {row.code:<40} {row.type.value:<9} {_kzt(row.balance_tiyn):>22}"
            + ("" if row.balance_atomic is None else f"  {row.balance_atomic} atomic")
            + ("  (memorandum)" if row.memorandum else "")
            for row in rows
        ]
        + [f"debits equal credits: {'yes' if balanced else 'NO'}"]
    )
    _print(args, data, text)
    return 0 if balanced else 1


# --- conversions ------------------------------------------------------------------------------


def cmd_conversions_record(args: argparse.Namespace, settings: Settings) -> int:
    request = conversions.ConversionRequest(
        PaymentMethod(args.method), args.amount_atomic, args.proceeds_tiyn, args.reference
    )
    with _session(settings) as session:
        conversion, new = conversions.record(session, request)
        session.commit()
        data = conversions.as_dict(conversion)
    note = "recorded" if new else "already recorded"
    _print(
        args,
        {**data, "new": new},
        f"conversion #{data['id']} {note}: book value {_kzt(conversion.book_value_tiyn)}, "
        f"fx result {_kzt(conversion.proceeds_tiyn - conversion.book_value_tiyn)}",
    )
    return 0


def cmd_conversions_import(args: argparse.Namespace, settings: Settings) -> int:
    text = read_input(args.file)
    with _session(settings) as session:
        created = conversions.import_csv(session, text)
        session.commit()
        data = {"recorded": [conversions.as_dict(c) for c in created]}
    _print(args, data, f"{len(created)} conversions recorded from {args.file}")
    return 0


def cmd_conversions_list(args: argparse.Namespace, settings: Settings) -> int:
    with _session(settings) as session:
        rows = [conversions.as_dict(c) for c in conversions.list_conversions(session)]
    text = "\n".join(
        f"  #{r['id']} {r['created_at']} {r['method']} {r['amount_atomic']} -> "
        f"{r['proceeds_tiyn']} tiyn (book {r['book_value_tiyn']}, fx {r['fx_result_tiyn']}) "
        f"{r['reference'] or ''}"
        for r in rows
    )
    _print(args, {"conversions": rows}, text or "no conversions")
    return 0


# --- fee invoices (`direct` merchants) --------------------------------------------------------


def cmd_fees_invoice(args: argparse.Namespace, settings: Settings) -> int:
    with _session(settings) as session:
        created = fee_invoices.issue_month(session, args.month)
        session.commit()
        rows = [r for r in fee_invoices.list_fee_invoices(session) if r.month == args.month]
    new_ids = {bill.id for bill in created}
    text = "\n".join(
        [f"{len(created)} fee invoices issued for {args.month}"]
        + [
            f"  #{r.id} {r.merchant_name}: {_kzt(r.amount_tiyn)} ({r.status})"
            + ("" if r.id in new_ids else " (issued before)")
            for r in rows
        ]
    )
    _print(args, {"created": sorted(new_ids), "fee_invoices": [r.as_dict() for r in rows]}, text)
    return 0


def cmd_fees_list(args: argparse.Namespace, settings: Settings) -> int:
    with _session(settings) as session:
        rows = fee_invoices.list_fee_invoices(session, args.merchant)
    text = "\n".join(
        f"  #{r.id} {r.month} {r.merchant_name}: {_kzt(r.amount_tiyn)} {r.status}"
        + (f" ({r.bank_reference})" if r.bank_reference else "")
        for r in rows
    )
    _print(args, {"fee_invoices": [r.as_dict() for r in rows]}, text or "no fee invoices")
    return 0


def cmd_fees_mark_paid(args: argparse.Namespace, settings: Settings) -> int:
    with _session(settings) as session:
        bill = fee_invoices.mark_paid(session, args.fee_invoice_id, args.reference)
        session.commit()
        data = {"id": bill.id, "status": bill.status.value, "amount_tiyn": bill.amount_tiyn}
    _print(args, data, f"fee invoice #{data['id']} marked paid")
    return 0


# --- refunds ----------------------------------------------------------------------------------


def _claim_url(settings: Settings, path: str) -> str:
    return f"http://{settings.web_bind}{path}"


def cmd_refunds_create(args: argparse.Namespace, settings: Settings) -> int:
    with _session(settings) as session:
        refund = refunds.create(session, settings, args.invoice, amount_atomic=args.amount_atomic)
        session.commit()
        data = refunds.as_dict(refund)
        refund_tiyn = refund.amount_tiyn
    data["claim_url"] = _claim_url(settings, str(data["claim_path"]))
    _print(
        args,
        data,
        f"refund #{data['id']}: {data['amount_atomic']} atomic "
        f"({_kzt(refund_tiyn)}) owed back on invoice {data['invoice_id']}\n"
        f"claim link for the shopper: {data['claim_url']}",
    )
    return 0


def cmd_refunds_return(args: argparse.Namespace, settings: Settings) -> int:
    amount = None if args.amount is None else money.parse_kzt(args.amount)
    with _session(settings) as session:
        refund = refunds.create_return(session, settings, args.invoice, amount_tiyn=amount)
        session.commit()
        data = refunds.as_dict(refund)
        refund_tiyn = refund.amount_tiyn
    data["claim_url"] = _claim_url(settings, str(data["claim_path"]))
    _print(
        args,
        data,
        f"refund #{data['id']}: sale {data['invoice_id']} returned, {_kzt(refund_tiyn)} "
        f"({data['amount_atomic']} atomic)\nclaim link for the shopper: {data['claim_url']}",
    )
    return 0


def cmd_refunds_list(args: argparse.Namespace, settings: Settings) -> int:
    status = RefundStatus(args.status) if args.status else None
    with _session(settings) as session:
        rows = [refunds.as_dict(r) for r in refunds.list_refunds(session, args.merchant, status)]
    text = "\n".join(
        f"  #{r['id']} {r['status']:<9} {r['method']} {r['amount_atomic']} -> "
        f"{r['destination'] or '(not claimed)'} {r['txid'] or ''} {r['problem'] or ''}"
        for r in rows
    )
    _print(args, {"refunds": rows}, text or "no refunds")
    return 0


def cmd_refunds_record_sent(args: argparse.Namespace, settings: Settings) -> int:
    with _session(settings) as session:
        # The watcher looks for it from a day of blocks before the node's tip it sees first.
        refund = refunds.record_sent(session, args.refund_id, args.txid)
        session.commit()
        data = refunds.as_dict(refund)
    _print(args, data, f"refund #{data['id']} sent in {data['txid']}; the watcher confirms it")
    return 0


def cmd_refunds_cancel(args: argparse.Namespace, settings: Settings) -> int:
    with _session(settings) as session:
        refund = refunds.cancel(session, args.refund_id)
        session.commit()
        data = refunds.as_dict(refund)
    _print(args, data, f"refund #{data['id']} cancelled")
    return 0


# --- parser -----------------------------------------------------------------------------------


def _command(parent: Any, name: str, fn: Handler, help_text: str) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = parent.add_parser(name, help=help_text)
    p.set_defaults(handler=fn)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    return p


def _range_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--from", dest="start", metavar="YYYY-MM-DD", help="first business day (Asia/Almaty)"
    )
    p.add_argument("--to", dest="end", metavar="YYYY-MM-DD", help="last day, included")
    p.add_argument("--csv", metavar="TABLE", help="print one table as CSV instead")


def register(sub: Any) -> None:
    """Add `payouts …` and `report …` to the `cryptocity` subcommands."""
    pay = sub.add_parser("payouts", help="merchant payouts").add_subparsers(
        dest="payouts_cmd", required=True
    )
    p = _command(pay, "run", cmd_payouts_run, "create the day's pending payouts")
    p.add_argument("--date", type=_date, required=True, metavar="YYYY-MM-DD")
    p = _command(pay, "list", cmd_payouts_list, "list payouts")
    p.add_argument("--status", choices=[s.value for s in PayoutStatus])
    p.add_argument("--date", type=_date, metavar="YYYY-MM-DD")
    p.add_argument("--merchant", type=int)
    p = _command(pay, "mark-paid", cmd_payouts_mark_paid, "record the bank transfer of a payout")
    p.add_argument("payout_id", type=int)
    p.add_argument("--reference", required=True, help="the bank's transfer reference")
    p = pay.add_parser("export", help="bank export CSV of payouts")
    p.set_defaults(handler=cmd_payouts_export)
    # No filter means every payout, like the portal's export (`/reports/payouts.csv`).
    p.add_argument("--status", choices=[s.value for s in PayoutStatus])
    p.add_argument("--date", type=_date, metavar="YYYY-MM-DD")
    p.add_argument("--output", metavar="PATH", help="write to a file instead of stdout")

    rep = sub.add_parser("report", help="settlement reports").add_subparsers(
        dest="report_cmd", required=True
    )
    _range_args(_command(rep, "zone", cmd_report_zone, "the zone dashboard"))
    p = _command(rep, "statement", cmd_report_statement, "a merchant's statement")
    p.add_argument("--merchant", type=int, required=True)
    _range_args(p)
    _range_args(_command(rep, "reconcile", cmd_report_reconcile, "clearing vs chain payments"))
    p = _command(rep, "balances", cmd_report_balances, "every account's balance")
    p.add_argument("--merchant", type=int, help="only this merchant's accounts")

    conv = sub.add_parser("conversions", help="crypto converted to KZT").add_subparsers(
        dest="conversions_cmd", required=True
    )
    p = _command(conv, "record", cmd_conversions_record, "record one conversion")
    p.add_argument("--method", required=True, choices=[m.value for m in PaymentMethod])
    p.add_argument("--amount-atomic", type=int, required=True, help="satoshi / KZTE base units")
    p.add_argument("--proceeds-tiyn", type=int, required=True, help="KZT received, in tiyn")
    p.add_argument("--reference", help="the exchange's or bank's reference (unique)")
    p = _command(conv, "import", cmd_conversions_import, "record the lines of a CSV file")
    p.add_argument("file", help="CSV: " + ",".join(conversions.CSV_COLUMNS))
    _command(conv, "list", cmd_conversions_list, "list conversions")

    ref = sub.add_parser("refunds", help="money owed back to shoppers").add_subparsers(
        dest="refunds_cmd", required=True
    )
    p = _command(ref, "create", cmd_refunds_create, "a claim link for what an invoice owes back")
    p.add_argument("--invoice", required=True)
    p.add_argument("--amount-atomic", type=int, help="part of it (default: all)")
    p = _command(ref, "return", cmd_refunds_return, "a claim link for a settled sale given back")
    p.add_argument("--invoice", required=True)
    p.add_argument("--amount", help="part of the sale in tenge, e.g. 1500 (default: all of it)")
    p = _command(ref, "list", cmd_refunds_list, "list refunds")
    p.add_argument("--merchant", type=int)
    p.add_argument("--status", choices=[s.value for s in RefundStatus])
    p = _command(ref, "record-sent", cmd_refunds_record_sent, "the txid that pays a claim")
    p.add_argument("refund_id", type=int)
    p.add_argument("--txid", required=True, help="Bitcoin txid or Solana signature")
    p = _command(ref, "cancel", cmd_refunds_cancel, "cancel an unsent refund")
    p.add_argument("refund_id", type=int)

    fees = sub.add_parser("fees", help="fee invoices of direct merchants").add_subparsers(
        dest="fees_cmd", required=True
    )
    p = _command(fees, "invoice", cmd_fees_invoice, "issue a month's fee invoices")
    p.add_argument("--month", required=True, metavar="YYYY-MM")
    p = _command(fees, "list", cmd_fees_list, "list fee invoices")
    p.add_argument("--merchant", type=int)
    p = _command(fees, "mark-paid", cmd_fees_mark_paid, "record a merchant's fee payment")
    p.add_argument("fee_invoice_id", type=int)
    p.add_argument("--reference", required=True, help="the bank's transfer reference")
