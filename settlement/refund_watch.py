"""The refund watcher: a refund is posted only once the chain shows it paid (DESIGN §7).

For each refund recorded `sent`:
- Bitcoin: the transaction is looked up in the mempool (`getrawtransaction txid true`) and, as
  the node keeps no transaction index, in each block mined since it was recorded (`getblock`
  txid lists, then `getrawtransaction txid true blockhash`). It must pay the claimed address at
  least the claimed satoshi, and in `tenge` mode spend at least one output the zone received
  as a payment (so the zone, not somebody else, refunded); it is confirmed with as many blocks
  as the merchant's policy asks (at least one).
- KZTE: the signature must be finalized, not failed, and carry a token transfer of the zone's
  mint to the claimant's token account of at least the claimed base units, from the zone's own
  token account (`tenge`).
What does not match is written to `refund.problem` (shown to the operator) and retried; a
node that does not answer changes nothing.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from pos.models import Invoice, Payment, SettlementMode
from pos.runtime import Runtime
from pos.settings import Settings
from settlement.chains.bitcoin_core import BitcoinCoreClient, btc_to_sat
from settlement.chains.solana_rpc import ChainTransaction, SolanaRpc
from settlement.errors import NodeRpcError, NodeUnavailableError, NotFoundOnChainError
from settlement.kzte_validation import (
    _TRANSFER,
    _TRANSFER_CHECKED,
    TOKEN_2022_PROGRAM,
    TOKEN_PROGRAM,
    associated_token_address,
)
from settlement.ledger import refunds
from settlement.ledger.models import Refund, RefundStatus
from settlement.worker import Duty

log = logging.getLogger(__name__)

MAX_BLOCKS_PER_PASS = 50  # a long outage is caught up over a few passes
LOOKBACK_BLOCKS = 144  # a txid recorded late (up to a day of blocks after it was mined)


# --- Bitcoin ----------------------------------------------------------------------------------


def _btc_problem(session: Session, refund: Refund, raw: dict[str, Any]) -> str | None:
    """Why `raw` does not pay this refund, or None when it does."""
    paid = sum(
        btc_to_sat(out["value"])
        for out in raw.get("vout", [])
        if out.get("scriptPubKey", {}).get("address") == refund.destination
    )
    if paid < refund.amount_atomic:
        return f"the transaction pays {paid} sat to {refund.destination}, the claim is " + (
            f"{refund.amount_atomic} sat"
        )
    if refund.settlement_mode == SettlementMode.TENGE.value:
        spent = {(vin.get("txid"), vin.get("vout")) for vin in raw.get("vin", [])}
        received = session.execute(
            select(Payment.txid, Payment.output_index)
            .join(Invoice, Invoice.id == Payment.invoice_id)
            .where(
                Invoice.settlement_mode == SettlementMode.TENGE,
                Payment.chain == "bitcoin",
                Payment.txid.in_([txid for txid, _vout in spent if txid]),
            )
        ).all()
        if not any((txid, vout) in spent for txid, vout in received):
            return "the transaction spends nothing the zone received: not sent by the zone"
    return None


def _find_block(client: BitcoinCoreClient, refund: Refund) -> str | None:
    """Walk the blocks mined since the refund was recorded for its txid (no -txindex)."""
    tip = int(client.call("getblockcount"))
    start = refund.search_from_height
    if start is None:
        start = tip - LOOKBACK_BLOCKS
    for height in range(max(start, 0), min(tip, start + MAX_BLOCKS_PER_PASS - 1) + 1):
        block_hash = str(client.call("getblockhash", height))
        if refund.txid in client.call("getblock", block_hash, 1).get("tx", []):
            return block_hash
        refund.search_from_height = height  # never search these again
    return None


def check_btc(session: Session, client: BitcoinCoreClient, refund: Refund) -> bool:
    """Move one sent BTC refund forward; True when it was confirmed now."""
    raw: dict[str, Any] | None = None
    if refund.block_hash is None:
        try:
            raw = client.call("getrawtransaction", refund.txid, True)
        except NotFoundOnChainError:
            raw = None
        if raw is not None and raw.get("blockhash"):
            refund.block_hash = str(raw["blockhash"])
        elif raw is None:
            refund.block_hash = _find_block(client, refund)
            if refund.block_hash is None:
                refund.problem = "not seen on chain yet"
                return False
    if refund.block_hash is not None:
        try:
            raw = client.call("getrawtransaction", refund.txid, True, refund.block_hash)
        except NotFoundOnChainError:
            refund.block_hash, refund.problem = None, "its block left the best chain"
            return False
    assert raw is not None
    problem = _btc_problem(session, refund, raw)
    if problem is not None:
        refund.problem = problem
        return False
    invoice = session.get_one(Invoice, refund.invoice_id)
    needed = max(1, invoice.merchant.confirmations_required)
    confirmations = int(raw.get("confirmations", 0))
    if raw.get("in_active_chain") is False:
        refund.block_hash, refund.problem = None, "its block left the best chain"
        return False
    if confirmations < needed:
        refund.problem = f"{confirmations} of {needed} confirmations"
        return False
    refunds.confirm(session, refund)
    return True


# --- KZTE -------------------------------------------------------------------------------------


def kzte_problem(
    tx: ChainTransaction, refund: Refund, mint: str, zone_wallet: str | None
) -> str | None:
    """Why a finalized transaction does not pay this refund, or None when it does (pure)."""
    if tx.failed:
        return "the transaction failed on chain"
    paid = 0
    for ix in tx.instructions:
        if ix.program not in (TOKEN_PROGRAM, TOKEN_2022_PROGRAM) or not ix.data:
            continue
        if ix.data[0] == _TRANSFER_CHECKED and len(ix.accounts) >= 4:
            source, ix_mint, destination = ix.accounts[0], ix.accounts[1], ix.accounts[2]
        elif ix.data[0] == _TRANSFER and len(ix.accounts) >= 3:
            source, ix_mint, destination = ix.accounts[0], None, ix.accounts[1]
        else:
            continue
        if destination != refund.destination_account or ix_mint not in (None, mint):
            continue
        zone_source = zone_wallet and associated_token_address(zone_wallet, mint, ix.program)
        if refund.settlement_mode == SettlementMode.TENGE.value and source != zone_source:
            return "the transfer does not come from the zone's token account"
        paid += int.from_bytes(ix.data[1:9], "little")
    if paid < refund.amount_atomic:
        return f"the transaction pays {paid} base units to the claimant, the claim is " + (
            f"{refund.amount_atomic}"
        )
    return None


async def _kzte_answer(rpc_url: str, signature: str) -> tuple[str | None, ChainTransaction | None]:
    async with SolanaRpc(rpc_url) as rpc:
        statuses = await rpc.signature_statuses([signature])
        status = (statuses.value or {}).get(signature)
        if status is None or status.commitment != "finalized":
            return (None if status is None else status.commitment), None
        answer = await rpc.transaction(signature)
        return "finalized", answer.value


def check_kzte(session: Session, settings: Settings, refund: Refund) -> bool:
    commitment, tx = asyncio.run(_kzte_answer(settings.solana_rpc_url, refund.txid or ""))
    if tx is None:
        refund.problem = f"not finalized yet ({commitment or 'not seen'})"
        return False
    problem = kzte_problem(tx, refund, settings.kzte_mint or "", settings.zone_kzte_wallet)
    if problem is not None:
        refund.problem = problem
        return False
    refunds.confirm(session, refund)
    return True


# --- the duty ---------------------------------------------------------------------------------


def _check_one(rt: Runtime, client: BitcoinCoreClient, refund_id: int) -> int:
    with rt.session_factory() as session:
        refund = session.get_one(Refund, refund_id)
        try:
            if refund.method == "btc":
                done = check_btc(session, client, refund)
            else:
                done = check_kzte(session, rt.settings, refund)
        except (NodeUnavailableError, NodeRpcError) as exc:
            log.info("refund %s: the node did not answer (%s); next pass", refund_id, exc)
            return 0
        session.commit()
    if done:
        log.info("refund %s confirmed on chain", refund_id)
    return int(done)


def run(rt: Runtime) -> int:
    """One pass over the sent refunds; returns how many were confirmed."""
    confirmed = 0
    with rt.session_factory() as session:
        ids = session.scalars(select(Refund.id).where(Refund.status == RefundStatus.SENT)).all()
    if not ids:
        return 0  # the common case: no node call at all
    client = BitcoinCoreClient(rt.settings.bitcoin_rpc_url, timeout=5)
    try:
        for refund_id in ids:
            confirmed += _check_one(rt, client, refund_id)
    finally:
        client.close()
    return confirmed


def duty() -> list[Duty]:
    return [Duty("refund-watch", 10.0, run, leader_only=True)]
