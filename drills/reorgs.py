"""The chain drills: reorgs of depth 1, 3 and 6 with and without the payment mined again, and a
double spend confirmed by the replacing chain while the worker is restarted. The miner is off:
each step decides exactly which blocks exist."""

from __future__ import annotations

from drills.context import Ctx, eventually
from drills.traffic import Record, price
from pos.models import PaymentStatus
from pos.states import InvoiceStatus, PaymentMethod

BTC = PaymentMethod.BTC


def reorgs(ctx: Ctx) -> None:
    ctx.miner.enabled.clear()
    ctx.settle_up()
    try:
        for depth in (1, 3, 6):
            for remine in (True, False):
                _reorg(ctx, depth, remine)
        _double_spend_in_reorg(ctx)
    finally:
        ctx.miner.enabled.set()


def _paid_and_settled(ctx: Ctx, drill: str, blocks: int) -> Record | None:
    record = ctx.api.create(drill, BTC, price())
    if record is None or not ctx.shopper.pay(record):
        ctx.check(drill, False, "could not create and pay the invoice")
        return None
    status = ctx.wait_status(record, lambda s: s is InvoiceStatus.PROCESSING)
    ctx.check(drill, status is InvoiceStatus.PROCESSING, f"seen: {status}")
    ctx.mine(blocks)
    status = ctx.wait_status(record, lambda s: s is InvoiceStatus.SETTLED)
    if not ctx.check(drill, status is InvoiceStatus.SETTLED, f"settled before the reorg: {status}"):
        return None
    ctx.check(drill, eventually(lambda: ctx.net_settlements(record.invoice_id) == 1), "posted")
    return record


def _reorg(ctx: Ctx, depth: int, remine: bool) -> None:
    drill = f"reorg depth {depth}, {'re-mined' if remine else 'dropped'}"
    record = _paid_and_settled(ctx, drill, depth)
    if record is None:
        return
    with ctx.stack.btc_lock:
        ctx.stack.btc.reorg(depth, remine)
    status = ctx.wait_status(record, lambda s: s is not InvoiceStatus.SETTLED)
    ctx.check(drill, status is InvoiceStatus.PROCESSING, f"reopened: {status}")
    ctx.check(drill, eventually(lambda: ctx.net_settlements(record.invoice_id) == 0), "reversed")
    if remine:
        ctx.mine(1)
        status = ctx.wait_status(record, lambda s: s is InvoiceStatus.SETTLED)
        ctx.check(drill, status is InvoiceStatus.SETTLED, f"settled again: {status}")
        return
    gone = eventually(
        lambda: (
            ctx.payment_status(record.txids[0]) in (PaymentStatus.REORGED, PaymentStatus.MISSING)
        )
    )
    ctx.check(drill, gone, f"payment unknown: {ctx.payment_status(record.txids[0])}")
    ctx.check(drill, ctx.invoice_status(record) is InvoiceStatus.PROCESSING, "still processing")
    with ctx.stack.btc_lock:
        ctx.stack.btc.load_wallet()  # the shopper's wallet is back (and resubmits it)


def _double_spend_in_reorg(ctx: Ctx) -> None:
    drill = "double spend in reorg, worker restarted"
    record = _paid_and_settled(ctx, drill, 1)
    if record is None:
        return
    chain = ctx.stack.btc
    with ctx.stack.btc_lock:
        conflict = chain.conflicting_tx(record.txids[0])  # the same coins, elsewhere
        chain.rpc("invalidateblock", chain.rpc("getbestblockhash"))
    status = ctx.wait_status(record, lambda s: s is not InvoiceStatus.SETTLED)
    ctx.check(drill, status is InvoiceStatus.PROCESSING, f"reopened: {status}")
    for worker in ctx.stack.live_workers():
        worker.kill()
    ctx.stack.start_worker()  # whatever proves the conflict must come from the database
    with ctx.stack.btc_lock:
        chain.mine_block([conflict])
        chain.mine(1)
    status = ctx.wait_status(record, lambda s: s is InvoiceStatus.INVALID)
    ctx.check(drill, status is InvoiceStatus.INVALID, f"invalid: {status}")
    ctx.check(drill, eventually(lambda: ctx.net_settlements(record.invoice_id) == 0), "reversed")
