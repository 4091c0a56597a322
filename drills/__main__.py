"""`python -m drills [--quick] [--db sqlite|postgres|both] [--btc ...] [--jobs N] [--keep]`.

Each stack (a database and a Bitcoin node) runs in a child process of its own; this one prints
the table of every stack and exits 1 if any payment was lost, duplicated, unbalanced or left in
a wrong state, or a webhook event was never delivered.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from drills.audit import Row, format_table
from drills.core_node import core_unavailable
from drills.runner import Result, run_stack
from drills.scenarios import Params

DBS = {"sqlite": ["sqlite"], "postgres": ["postgres"], "both": ["sqlite", "postgres"]}


def plan(db: str, btc: str, quick: bool) -> list[tuple[str, str]]:
    """The (database, Bitcoin node) pairs to run.

    `paired` (the quick default): the databases take the nodes in turn — SQLite on Bitcoin Core,
    PostgreSQL on the sandbox — so one quick run covers both of each; `both` (the full
    default): every database on every node. Without bitcoind, the sandbox stands in for it.
    """
    dbs = DBS[db]
    nodes = ["core", "sandbox"] if core_unavailable() is None else ["sandbox"]
    choice = btc or ("paired" if quick else "both")
    if choice == "paired":
        return [(d, nodes[i % len(nodes)]) for i, d in enumerate(dbs)]
    if choice == "both":
        return [(d, n) for d in dbs for n in nodes]
    if choice == "core" and "core" not in nodes:
        raise SystemExit(f"error: Bitcoin Core is not available here: {core_unavailable()}")
    return [(d, choice) for d in dbs]


def _child(args: argparse.Namespace) -> int:
    db, btc = args.stack.split(":")
    params = Params.quick() if args.quick else Params.full()
    result = run_stack(db, btc, params, keep=args.keep)
    Path(args.result).write_text(json.dumps(result.to_json()))
    return 0 if result.ok else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m drills", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the bounded form (CI, ~4 min)")
    parser.add_argument("--db", choices=sorted(DBS), default="both")
    parser.add_argument(
        "--btc", choices=["core", "sandbox", "both", "paired"], default="", help="Bitcoin nodes"
    )
    parser.add_argument("--jobs", type=int, default=0, help="stacks at once (quick: all)")
    parser.add_argument("--keep", action="store_true", help="keep every stack's temp dir")
    parser.add_argument("--stack", help=argparse.SUPPRESS)  # internal: one child's stack
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.stack:
        return _child(args)

    stacks = plan(args.db, args.btc, args.quick)
    jobs = args.jobs or (len(stacks) if args.quick else 1)
    started = time.monotonic()
    print(f"drills ({'quick' if args.quick else 'full'}): {stacks}, {jobs} at a time", flush=True)
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="cc-drills-results-") as scratch:
        waiting = list(stacks)
        running: list[tuple[str, subprocess.Popen[bytes], Path]] = []
        while waiting or running:
            while waiting and len(running) < jobs:
                db, btc = waiting.pop(0)
                out = Path(scratch) / f"{db}-{btc}.json"
                command = [sys.executable, "-m", "drills", "--stack", f"{db}:{btc}"]
                command += ["--result", str(out)]
                command += ["--quick"] * args.quick + ["--keep"] * args.keep
                child = subprocess.Popen(command, cwd=Path(__file__).resolve().parents[1])
                running.append((f"{db}/{btc}", child, out))
            for entry in list(running):
                name, child, out = entry
                if child.poll() is None:
                    continue
                running.remove(entry)
                if out.exists():
                    results.append(Result.from_json(json.loads(out.read_text())))
                else:
                    results.append(Result(name, False, [Row(name, "(crashed)", wrong=1)]))
            time.sleep(0.5)
    rows = [row for result in results for row in result.rows]
    print("\n" + format_table(rows) + "\n")
    for result in results:
        for note in result.notes:
            print(f"- {note}")
        print(
            f"- {result.stack}: {'passed' if result.ok else 'FAILED'} in "
            f"{result.elapsed_seconds:.0f} s"
        )
    print(f"- total {time.monotonic() - started:.0f} s")
    return 0 if results and all(r.ok for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
