"""Re-checking recorded payments against their nodes (for reconciliation).

Each verifier answers "does the node still show this payment as we recorded it?": True
(confirmed), False (the node contradicts it: missing from a block it was in, another amount,
not to the invoice), None (unknown: the node did not answer or cannot tell, e.g. pruned).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager

from solders.signature import Signature

from pos.models import Payment
from pos.settings import Settings
from settlement.chains.bitcoin_core import BitcoinCoreClient, btc_to_sat
from settlement.chains.solana_rpc import SolanaRpc
from settlement.errors import NodeRpcError, NodeUnavailableError, NotFoundOnChainError
from settlement.kzte_validation import ExpectedTransfer, validate_transfer


class BitcoinVerifier:
    """Reads the transaction from the block we recorded (no -txindex needed)."""

    def __init__(self, client: BitcoinCoreClient) -> None:
        self.client = client

    def verify(self, payment: Payment) -> bool | None:
        params: list[object] = [payment.txid, True]
        if payment.block_hash:
            params.append(payment.block_hash)
        try:
            raw = self.client.call("getrawtransaction", *params)
        except NotFoundOnChainError:
            # Known block but no such tx in it: a contradiction. No block: we cannot tell.
            return False if payment.block_hash else None
        except (NodeUnavailableError, NodeRpcError):
            return None
        if payment.block_hash and (
            raw.get("in_active_chain") is False or int(raw.get("confirmations", 0)) < 1
        ):
            return False  # the block left the best chain since we recorded it
        outputs = {int(out["n"]): out for out in raw.get("vout", [])}
        output = outputs.get(payment.output_index)
        if output is None:
            return False
        address = output.get("scriptPubKey", {}).get("address")
        return bool(
            btc_to_sat(output["value"]) == payment.amount_atomic
            and address == payment.invoice.btc_address
        )


class SolanaVerifier:
    """Re-reads the transfer and validates it exactly as the watcher did."""

    def __init__(self, rpc_url: str) -> None:
        self.rpc_url = rpc_url

    def verify(self, payment: Payment) -> bool | None:
        try:
            Signature.from_string(payment.txid)
        except ValueError:
            return False  # not even a signature: no node can confirm it
        return asyncio.run(self._verify(payment))

    async def _verify(self, payment: Payment) -> bool | None:
        invoice = payment.invoice
        if not (invoice.kzte_recipient and invoice.kzte_mint and invoice.kzte_reference):
            return False
        async with SolanaRpc(self.rpc_url) as rpc:
            statuses = await rpc.signature_statuses([payment.txid])
            answer = await rpc.transaction(payment.txid)
        if statuses.error is not None or answer.error is not None or answer.value is None:
            return None  # unknown, or history the node no longer keeps
        status = (statuses.value or {}).get(payment.txid)
        if status is None or status.failed or status.commitment != "finalized":
            return None if status is None else False
        expected = ExpectedTransfer(
            invoice.kzte_recipient, invoice.kzte_mint, invoice.kzte_reference, invoice.id
        )
        verdict = validate_transfer(answer.value, expected)
        return verdict.ok and verdict.amount_base_units == payment.amount_atomic


@contextmanager
def node_verifiers(settings: Settings) -> Iterator[dict[str, BitcoinVerifier | SolanaVerifier]]:
    """Verifiers by chain name, talking to the configured nodes; the Bitcoin client's keep-alive
    connection is closed on exit (a report must not leave a socket to the node behind)."""
    bitcoin = BitcoinCoreClient(settings.bitcoin_rpc_url, timeout=5)
    try:
        yield {
            "bitcoin": BitcoinVerifier(bitcoin),
            "solana": SolanaVerifier(settings.solana_rpc_url),
        }
    finally:
        bitcoin.close()
