"""One stack's run: start it, run every drill, wait (bounded) for the stack to agree with the
chains, audit, and hand back the rows and notes as JSON-able data."""

from __future__ import annotations

import time
import traceback
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from drills.audit import Row, Truth, Verdict, combine, judge, total
from drills.scenarios import DRILLS, Ctx, Params
from drills.stack import Stack, make_root, remove_root, say
from drills.traffic import Api, Book, Miner, Shopper
from drills.truth import BtcTruth, Deliveries, kzte_truth, load_facts, now, webhook_deliveries
from drills.truth import whole_database as audit_whole
from pos.states import PaymentMethod

SHOWN_REASONS = 12


@dataclass
class Result:
    stack: str
    ok: bool
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    elapsed_seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "stack": self.stack,
            "ok": self.ok,
            "rows": [asdict(r) for r in self.rows],
            "notes": self.notes,
            "elapsed_seconds": self.elapsed_seconds,
        }

    @staticmethod
    def from_json(data: dict[str, Any]) -> Result:
        return Result(
            str(data["stack"]),
            bool(data["ok"]),
            [Row(**r) for r in data["rows"]],
            [str(n) for n in data["notes"]],
            float(data["elapsed_seconds"]),
        )


def run_stack(db: str, btc: str, params: Params, keep: bool) -> Result:
    name = f"{db}/{btc}"
    started = time.monotonic()
    root = make_root(f"{db}-{btc}", None)
    stack = Stack(name, db, btc, root)
    book = Book()
    miner: Miner | None = None
    result = Result(name, ok=False)
    try:
        stack.start()
        from_height = stack.btc.tip()
        miner = Miner(stack, params.mine_every)
        miner.enabled.set()
        ctx = Ctx(stack, book, Api(stack, book), Shopper(stack), miner, params)
        for drill in DRILLS:
            began = time.monotonic()
            say(name, f"drill {drill.__name__} ...")
            try:
                drill(ctx)
            except Exception as exc:  # a drill that breaks is a failed drill, not a stopped run
                traceback.print_exc()
                ctx.check(drill.__name__, False, f"the drill itself failed: {exc!r}")
            say(name, f"drill {drill.__name__} done in {time.monotonic() - began:.0f} s")
        result = _audit(ctx, from_height)
    except Exception as exc:
        traceback.print_exc()
        result.notes.append(f"the stack failed: {exc!r}")
    finally:
        if miner is not None:
            miner.close()
        stack.close()
        result.elapsed_seconds = time.monotonic() - started
        if keep or not result.ok:
            result.notes.append(f"logs and data kept in {root}")
        else:
            remove_root(root)
    return result


def _evaluate(ctx: Ctx, btc_truth: BtcTruth) -> tuple[dict[str, Verdict], int]:
    """Every record's verdict now, and how many payments the chains have not decided yet."""
    records = list(ctx.book.records)
    btc_txids = [t for r in records if r.method is PaymentMethod.BTC for t in r.txids]
    kzte_sigs = [t for r in records if r.method is PaymentMethod.KZTE for t in r.txids]
    with ctx.stack.btc_lock:
        truths: dict[str, Truth] = btc_truth.judge(btc_txids)
    truths.update(kzte_truth(ctx.stack.solana.rpc_url, kzte_sigs))
    facts = load_facts(ctx.stack.runtime, [r.invoice_id for r in records])
    moment = now()
    undecided = sum(1 for truth in truths.values() if truth is Truth.PENDING)
    return {
        r.invoice_id: judge(
            facts.get(r.invoice_id),
            combine(truths[t] for t in r.txids),
            r.txids,
            r.paid_at,
            r.expires_at,
            moment,
        )
        for r in records
    }, undecided


def _settled_down(verdicts: dict[str, Verdict], undecided: int, deliveries: Deliveries) -> bool:
    """Nothing left to wait for: every verdict clean, every payment decided by its chain (mined
    or finalized), every webhook event delivered."""
    bad = any(v.lost or v.wrong or v.unbalanced or v.duplicated for v in verdicts.values())
    return not bad and not undecided and not deliveries.undelivered


def _audit(ctx: Ctx, from_height: int) -> Result:
    stack, book = ctx.stack, ctx.book
    say(stack.name, "waiting for the stack to agree with the chains ...")
    ctx.miner.enabled.set()
    btc_truth = BtcTruth(stack.btc, from_height)
    assert stack.receiver_log is not None
    deadline = time.monotonic() + ctx.params.converge
    waited = time.monotonic()
    while True:
        verdicts, undecided = _evaluate(ctx, btc_truth)
        deliveries = webhook_deliveries(stack.runtime, stack.receiver_log, stack.webhook_secret)
        if _settled_down(verdicts, undecided, deliveries) or time.monotonic() > deadline:
            break
        time.sleep(2.0)
    waited = time.monotonic() - waited
    rows: dict[str, Row] = {}
    reasons: list[str] = []
    for record in book.records:
        verdict = verdicts[record.invoice_id]
        row = rows.setdefault(record.drill, Row(stack.name, record.drill))
        row.add(verdict, paid=bool(record.txids))
        if verdict.reasons and (
            verdict.lost or verdict.wrong or verdict.duplicated or verdict.unbalanced
        ):
            reasons.append(f"{record.drill}: {record.invoice_id}: {'; '.join(verdict.reasons)}")
    for drill, failures in book.failed_checks.items():
        row = rows.setdefault(drill, Row(stack.name, drill))
        row.wrong += len(failures)
        reasons += [f"{drill}: check failed: {f}" for f in failures]
    for drill, count in book.server_errors.items():
        rows.setdefault(drill, Row(stack.name, drill)).five_xx = count
    whole = audit_whole(stack.runtime, {r.invoice_id for r in book.records})
    ordered = list(rows.values())
    if whole.unbalanced_transactions or whole.ledger_sum_tiyn:
        ordered.append(
            Row(stack.name, "whole ledger", unbalanced=whole.unbalanced_transactions or 1)
        )
    ordered.append(total(stack.name, ordered))
    notes = _notes(ctx, deliveries, whole.invoices, whole.strangers, waited)
    if undecided:
        notes.append(f"{stack.name}: {undecided} payments still undecided by their chain")
    notes += reasons[:SHOWN_REASONS]
    if len(reasons) > SHOWN_REASONS:
        notes.append(f"... and {len(reasons) - SHOWN_REASONS} more")
    webhooks_ok = not (
        deliveries.undelivered or deliveries.changed_bodies or deliveries.bad_signatures
    )
    ok = not ordered[-1].failed and webhooks_ok
    return Result(stack.name, ok, ordered, notes)


def _notes(
    ctx: Ctx, d: Deliveries, invoices: int, strangers: Sequence[str], waited: float
) -> list[str]:
    stack, book = ctx.stack, ctx.book
    notes = [f"{stack.name}: {drill}: {'; '.join(texts)}" for drill, texts in book.notes.items()]
    lag = sorted(d.lag_seconds)
    p99 = lag[int(len(lag) * 0.99) - 1] if lag else 0.0
    notes.append(
        f"{stack.name}: webhooks: {d.events} events, {len(d.undelivered)} undelivered, "
        f"{d.received} POSTs ({d.repeats} repeats), {d.changed_bodies} ids with changed bodies, "
        f"{d.bad_signatures} bad signatures; lag p99 {p99:.1f} s, max "
        f"{(lag[-1] if lag else 0.0):.1f} s"
    )
    latency = sorted(book.api_latency)
    if latency:
        notes.append(
            f"{stack.name}: API creates under load: p50 "
            f"{latency[len(latency) // 2] * 1000:.0f} ms, p99 "
            f"{latency[int(len(latency) * 0.99) - 1] * 1000:.0f} ms, max "
            f"{latency[-1] * 1000:.0f} ms"
        )
    logs = [w.log() for w in stack.workers]
    errors = sum(text.count(" ERROR ") for text in logs)
    tracebacks = sum(text.count("Traceback") for text in logs)
    locked = sum(text.count("database is locked") for text in logs)
    notes.append(
        f"{stack.name}: {len(stack.workers)} worker processes started; their logs hold {errors} "
        f"ERROR lines, {tracebacks} tracebacks, {locked} 'database is locked' back-offs; "
        f"{invoices} invoices in the database ({len(strangers)} not made by a drill); the end "
        f"waited {waited:.0f} s for agreement"
    )
    return notes
