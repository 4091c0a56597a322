"""`make bench` / `python -m bench`: run the benchmarks, print a table, write bench/results.json.

Every benchmark prints its workload and progress; the machine (cores, memory) heads the run.
Load generators are separate processes on 127.0.0.1, bounded in count and time. Numbers that
miss a target are reported as they are, with a cProfile excerpt that shows where time goes.

  python -m bench                 # everything, full sizes (about 15-20 minutes on 2 cores)
  python -m bench --quick         # small sizes: a smoke run for CI and developers (~2 min)
  python -m bench --only scan     # one benchmark (repeat --only for several)
  DATABASE_URL=postgresql://… python -m bench   # the database benchmarks on PostgreSQL
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.common import machine

RESULTS = Path(__file__).parent / "results.json"
Row = tuple[str, str, str, str]  # metric, value, target, verdict


@dataclass(frozen=True)
class Bench:
    name: str
    module: str
    workload: Callable[[bool], str]
    call: Callable[[Any, bool], dict[str, Any]]
    rows: Callable[[dict[str, Any]], list[Row]]


def _verdict(met: object) -> str:
    return {True: "met", False: "MISSED", None: "not measured"}.get(met, "")  # type: ignore[call-overload, no-any-return]


# --- what each benchmark runs, and how its result becomes table rows ------------------------


def _http_rows(r: dict[str, Any]) -> list[Row]:
    rows: list[Row] = [("interface", f"{r['request']} ({r['interface']})", "", "")]
    for level in r["levels"]:
        rows.append(
            (
                f"{level['clients']} clients",
                f"{level['invoices_per_s']:.0f}/s, p50 {level['p50_ms']:.1f} ms, "
                f"p99 {level['p99_ms']:.1f} ms, {level['errors']} errors",
                "1,000/s, p99 < 50 ms",
                "met" if level["invoices_per_s"] >= 1000 and level["p99_ms"] < 50 else "MISSED",
            )
        )
    return rows


def _btc_rows(r: dict[str, Any]) -> list[Row]:
    rows: list[Row] = []
    for key, label in (
        ("broadcast_to_processing", "broadcast -> processing"),
        ("block_to_settled", "block -> settled"),
    ):
        s = r[key]
        ok = s["p99_ms"] < 100
        rows.append(
            (
                f"{label} (n={s['n']})",
                f"p50 {s['p50_ms']:.0f} ms, p90 {s['p90_ms']:.0f} ms, p99 {s['p99_ms']:.0f} ms",
                "< 100 ms",
                "met" if ok else "MISSED",
            )
        )
    return rows


def _scan_rows(r: dict[str, Any]) -> list[Row]:
    rows: list[Row] = [("getblock v2 + decode", f"{r['getblock_decode_ms']:.0f} ms", "", "")]
    for row in r["by_watched"]:
        at_1m = row["watched"] >= 1_000_000
        rows.append(
            (
                f"{r['block_txs']:,}-tx block, {row['watched']:,} watched",
                f"{row['block_ms']:.0f} ms/block (lookup {row['lookup_ms']:.1f} ms)",
                "300 ms at 1M" if at_1m else "",
                ("met" if row["block_ms"] <= 300 else "MISSED") if at_1m else "",
            )
        )
    growth = r["growth_lookup_ms_largest_over_smallest"]
    rows.append(("lookup growth, largest/smallest", f"x{growth}", "flat", ""))
    naive = r["naive"]
    for n, ratio in naive["ratio_naive_over_ours"].items():
        rows.append(
            (
                f"naive poll / ours, {int(n):,} open",
                f"x{ratio:,.0f} ({naive['poll_s_at'][n]:,.0f} s vs one pass)",
                "",
                "",
            )
        )
    return rows


def _redis_rows(r: dict[str, Any]) -> list[Row]:
    return [
        (
            f"per open invoice ({r['open_invoices']:,})",
            f"{r['bytes_per_invoice_state']:.0f} B "
            f"(+{r['stream_bytes_per_event']:.0f} B stream entry)",
            "< 500 B",
            _verdict(r["met"]),
        )
    ]


def _sse_rows(r: dict[str, Any]) -> list[Row]:
    rows: list[Row] = []
    for v in r["variants"]:
        seen = (
            f"all in {v['all_seen_s']:.2f} s"
            if v["all_seen_s"] is not None
            else f"{v['saw_paid']}/{v['clients']} within {v['deadline_s']:.0f} s"
        )
        within = v.get("saw_paid_within_1s", "?")
        rows.append(
            (
                f"{v['server']}, {v['clients']:,} streams",
                f"{seen}, {within:,} within 1 s (p50 {v['p50_s']} s, p99 {v['p99_s']} s)",
                "all < 1 s",
                _verdict(v["met"]),
            )
        )
        login = v.get("login_while_open")
        if login:
            get, post = login["get"], login["post_wrong_password"]
            rows.append(
                (
                    f"GET /login while {v['streams_served_at_payment']:,} streams are open",
                    f"p50 {get['p50_ms']} ms, p99 {get['p99_ms']} ms (n={get['n']})",
                    "p99 < 200 ms",
                    _verdict(v["login_met"]),
                )
            )
            rows.append(
                (
                    "POST /login, wrong password, meanwhile",
                    f"p50 {post['p50_ms']} ms, p99 {post['p99_ms']} ms (n={post['n']}; "
                    f"one scrypt alone: {login['scrypt_alone_ms']} ms)",
                    "",
                    "",
                )
            )
        if "rss_mib_streams_open" in v:
            rows.append(
                (
                    "web processes' RSS (master + workers)",
                    f"{v['rss_mib_streams_open']['total']:,} MiB with the streams open, "
                    f"{v['rss_mib_end']['total']:,} MiB at the end",
                    "",
                    "",
                )
            )
    return rows


def _flat_rows(r: dict[str, Any], prefix: str = "") -> list[Row]:
    """Rows for results whose shape another module owns: every scalar, dotted keys."""
    rows: list[Row] = []
    for key, value in r.items():
        if key.startswith("profile") or key == "machine":  # the run's header shows the machine
            continue
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            rows += _flat_rows(value, f"{name}.")
        elif isinstance(value, list):
            rows.append((name, f"{len(value)} items", "", ""))
        else:
            rows.append((name, str(value), "", ""))
    return rows


def _ledger_rows(r: dict[str, Any]) -> list[Row]:
    """Every figure, with #16's targets on the consumer and the zone dashboard."""
    targets = {
        "consumer_postings_per_second": ("≥ 5,000/s", lambda v: v >= 5_000),
        "zone_dashboard_seconds": ("≤ 1 s at 1M entries", lambda v: v <= 1.0),
    }
    rows: list[Row] = []
    for name, value, _target, _verdict_text in _flat_rows(r):
        target = targets.get(name)
        if target is None:
            rows.append((name, value, "", ""))
        elif name == "zone_dashboard_seconds" and r.get("ledger_entries", 0) < 1_000_000:
            rows.append((name, value, target[0], _verdict(None)))  # --quick: 10,000 entries
        else:
            rows.append((name, value, target[0], _verdict(target[1](float(value)))))
    return rows


def _mempool_rows(r: dict[str, Any]) -> list[Row]:
    rows: list[Row] = [("node", f"{r['node']}", "", "")]
    for key, label in (
        ("today", "today: verbose getrawmempool + decode"),
        ("zmq", "MempoolView on ZMQ events"),
        ("no_zmq", "MempoolView, getrawmempool false true diff"),
    ):
        p = r[key]
        speedup = "" if key == "today" else f" (x{r[key + '_faster_x']:,} faster)"
        rows.append(
            (
                f"{label}, {r['new_per_poll']} new of {r['mempool_txs']:,}",
                f"{p['ms']:,.1f} ms, {p['bytes'] / 1e6:,.2f} MB read{speedup}",
                "",
                "",
            )
        )
    return rows


def _kzte_rpc_rows(r: dict[str, Any]) -> list[Row]:
    rows: list[Row] = [("counted at", r["counted_at"], "", "")]
    for row in r["rows"]:
        label = f"{row['open_invoices']:,} open, {row['strategy']}"
        if row["destinations"] > 1:
            label += f", {row['destinations']} merchants"
        methods = ", ".join(f"{m} {n:,}" for m, n in row["by_method_per_minute"].items())
        every = row["seconds_between_reads_of_an_invoice"]
        value = (
            f"{row['calls_per_minute']:,} calls/min ({methods}); each invoice read every {every} s"
        )
        rows.append((label, value, "", ""))
    return rows


def _derive_rows(r: dict[str, Any]) -> list[Row]:
    return [("BIP84 addresses derived", f"{r['per_second']:,.0f}/s", "", "")]


def _webhook_rows(r: dict[str, Any]) -> list[Row]:
    rows: list[Row] = []
    for key, label in (
        ("concurrent", f"fast receiver, {r['per_receiver_limit']} in flight"),
        ("with_trickler", "fast receiver, a trickling one alongside"),
        ("one_at_a_time", "fast receiver, one in flight (comparison)"),
    ):
        run = r[key]
        value = f"{run['per_s']:,.0f} deliveries/s ({run['deliveries']:,} in {run['seconds']} s)"
        if key == "one_at_a_time":
            rows.append((label, value, "", ""))
        else:
            rows.append((label, value, ">= 200/s", _verdict(run["per_s"] >= 200)))
    return rows


BENCHES = [
    Bench(
        "http",
        "bench.http_create",
        lambda q: (
            "POST invoice (BTC) through gunicorn, wrk at 16/64/256 clients, "
            f"{2 if q else 10} s each"
        ),
        lambda m, q: m.run((16, 64, 256), 2 if q else 10),
        _http_rows,
    ),
    Bench(
        "btc",
        "bench.btc_detection",
        lambda q: f"{20 if q else 200} BTC payments, a block every 10, worker woken by ZMQ",
        lambda m, q: m.run(20 if q else 200, 10),
        _btc_rows,
    ),
    Bench(
        "scan",
        "bench.block_scan",
        lambda q: (
            (
                "400-tx block vs 1k/10k/100k watched"
                if q
                else "4,000-tx block vs 10k/100k/1M watched"
            )
            + ", and the naive per-invoice poll"
        ),
        lambda m, q: (
            m.run(400, (1_000, 10_000, 100_000), 3)
            if q
            else m.run(4_000, (10_000, 100_000, 1_000_000), 10)
        ),
        _scan_rows,
    ),
    Bench(
        "derive",
        "bench.block_scan",
        lambda q: f"{200 if q else 2_000} BIP84 receive addresses from one account key",
        lambda m, q: m.derive_rate(200 if q else 2_000),
        _derive_rows,
    ),
    Bench(
        "mempool",
        "bench.mempool_poll",
        lambda q: (
            f"one mempool poll, {15_000 if q else 150_000:,} txs of which 10 new: today's "
            "verbose poll vs MempoolView with and without ZMQ (loopback Core-shaped stub)"
        ),
        lambda m, q: m.run(15_000 if q else 150_000, 10, 3 if q else 5),
        _mempool_rows,
    ),
    Bench(
        "redis",
        "bench.redis_memory",
        lambda q: f"{5_000 if q else 100_000:,} open invoices mirrored into an empty Redis",
        lambda m, q: m.run(5_000 if q else 100_000),
        _redis_rows,
    ),
    Bench(
        "sse",
        "bench.sse_fanout",
        lambda q: (
            f"{50 if q else 10_000:,} checkout SSE clients, /login timed while they are open, "
            "all invoices paid in one commit"
        ),
        lambda m, q: m.run(50, 5.0, 5.0) if q else m.run(10_000, 90.0, 20.0),
        _sse_rows,
    ),
    Bench(
        "kzte",
        "bench.kzte_detection",
        lambda q: f"{20 if q else 200} open KZTE invoices on the sandbox validator",
        lambda m, q: m.run(count=20 if q else 200),
        _flat_rows,
    ),
    Bench(
        "kzte-rpc",
        "bench.kzte_polling",
        lambda q: (
            "Solana RPC calls/min watching "
            + ("10 and 100" if q else "10, 1,000 and 10,000")
            + " open KZTE invoices, per reference vs per destination, "
            + ("6 passes each (shorter than a sweep cycle)" if q else "30 passes each")
        ),
        lambda m, q: (
            m.run((10, 100), passes=6, direct_merchants=5)
            if q
            else m.run((10, 1_000, 10_000), passes=30, direct_merchants=100)
        ),
        _kzte_rpc_rows,
    ),
    Bench(
        "ledger",
        "bench.ledger_bench",
        lambda q: (
            "ledger postings and the zone dashboard over "
            + ("1,000 settlements / 10,000 entries" if q else "100,000 settlements / 1M entries")
        ),
        lambda m, q: m.run(1_000, 10_000) if q else m.run(100_000, 1_000_000),
        _ledger_rows,
    ),
    Bench(
        "webhooks",
        "bench.webhook_delivery",
        lambda q: f"{500 if q else 5_000:,} webhook deliveries to a fast loopback receiver",
        lambda m, q: m.run(500 if q else 5_000, 8 if q else 20),
        _webhook_rows,
    ),
]


def _print_table(rows: list[tuple[str, Row]]) -> None:
    headers = ("benchmark", "metric", "value", "target", "")
    table = [headers] + [(name, *row) for name, row in rows]
    widths = [max(len(str(line[i])) for line in table) for i in range(len(headers))]
    rule = "-+-".join("-" * w for w in widths)
    for number, line in enumerate(table):
        print(" | ".join(str(cell).ljust(w) for cell, w in zip(line, widths, strict=True)))
        if number == 0:
            print(rule)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (CI smoke, ~2 min)")
    parser.add_argument(
        "--only",
        action="append",
        choices=[b.name for b in BENCHES],
        help="run only this benchmark (repeatable)",
    )
    parser.add_argument("--output", type=Path, default=RESULTS, help="where to write the JSON")
    args = parser.parse_args(argv)
    selected = [b for b in BENCHES if not args.only or b.name in args.only]
    info = machine()
    print(
        f"machine: {info['cores']} cores ({info['cpu']}), {info['memory_gib']} GiB memory, "
        f"Python {info['python']}, database {info['database']}",
        flush=True,
    )
    results: dict[str, Any] = {}
    table: list[tuple[str, Row]] = []
    failed = False
    for bench in selected:
        workload = bench.workload(args.quick)
        print(f"\n== {bench.name}: {workload}", flush=True)
        began = time.monotonic()
        entry: dict[str, Any] = {"workload": workload}
        if importlib.util.find_spec(bench.module) is None:
            entry["result"] = {"available": False, "reason": f"{bench.module} does not exist"}
            table.append((bench.name, ("-", "not available", "", "")))
        else:
            try:
                result = bench.call(importlib.import_module(bench.module), args.quick)
                entry["result"] = result
                if result.get("available") is False:
                    table.append((bench.name, ("-", f"not available: {result['reason']}", "", "")))
                else:
                    table += [(bench.name, row) for row in bench.rows(result)]
            except Exception as exc:  # one broken benchmark must not hide the others' numbers
                traceback.print_exc()
                failed = True
                entry["error"] = f"{type(exc).__name__}: {exc}"
                table.append((bench.name, ("-", f"ERROR {type(exc).__name__}: {exc}", "", "")))
        entry["seconds"] = round(time.monotonic() - began, 1)
        print(f"== {bench.name} done in {entry['seconds']} s", flush=True)
        results[bench.name] = entry
    document = {
        "command": " ".join(["python -m bench", *(argv if argv is not None else sys.argv[1:])]),
        "quick": args.quick,
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": info,
        "benchmarks": results,
    }
    args.output.write_text(json.dumps(document, indent=2, default=str) + "\n")
    print()
    _print_table(table)
    for name, entry in results.items():
        result = entry.get("result") or {}
        for key, value in result.items():
            if key.startswith("profile") and value:
                print(f"\n{name}: {key} (cProfile, where the time goes)")
                print("\n".join(f"  {line}" for line in value))
    print(f"\nwrote {args.output}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
