"""Thin async helpers over solana-py's AsyncClient: send, confirm, airdrop, read mints.

Only standard JSON-RPC is used, so the same code runs against devnet when the
RPC URL changes. Sync callers go through :func:`run_sync`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Sequence
from typing import TypeVar

from solana.exceptions import SolanaRpcException
from solana.rpc.async_api import AsyncClient
from solana.rpc.commitment import Confirmed
from solana.rpc.core import RPCException, RPCNoResultException
from solana.rpc.models import TxOpts
from solders.hash import Hash
from solders.instruction import Instruction
from solders.keypair import Keypair
from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.system_program import TransferParams, transfer
from solders.transaction import Transaction
from solders.transaction_status import TransactionConfirmationStatus

from sandbox.solana.errors import RpcError, SolanaSandboxError
from sandbox.solana.spl import MintInfo, parse_mint, token_account_amount

T = TypeVar("T")

CONFIRM_TIMEOUT_S = 30.0
_POLL_INTERVAL_S = 0.2
_DONE = (TransactionConfirmationStatus.Confirmed, TransactionConfirmationStatus.Finalized)


def run_sync(coro: Awaitable[T]) -> T:
    """Run ``coro`` to completion from sync code, mapping solana-py errors to RpcError."""

    async def wrapped() -> T:
        try:
            return await coro
        except (RPCException, RPCNoResultException, SolanaRpcException) as exc:
            raise RpcError(f"Solana RPC call failed: {exc}") from exc

    return asyncio.run(wrapped())


def client(rpc_url: str) -> AsyncClient:
    """An AsyncClient at ``confirmed`` commitment; use it as ``async with client(url) as c``."""
    return AsyncClient(rpc_url, commitment=Confirmed, timeout=30)


async def latest_blockhash(conn: AsyncClient, *, not_equal: Hash | None = None) -> Hash:
    """Latest confirmed blockhash; waits for a new one when it equals ``not_equal``.

    Waiting matters when sending the same payment twice: identical instructions
    under the same blockhash give an identical signature that the cluster drops.
    """
    deadline = time.monotonic() + CONFIRM_TIMEOUT_S
    while True:
        blockhash = (await conn.get_latest_blockhash(Confirmed)).value.blockhash
        if blockhash != not_equal:
            return blockhash
        if time.monotonic() > deadline:
            raise RpcError("the cluster produced no new blockhash")
        await asyncio.sleep(_POLL_INTERVAL_S)


async def send(
    conn: AsyncClient,
    instructions: Sequence[Instruction],
    payer: Keypair,
    signers: Sequence[Keypair] = (),
    *,
    blockhash: Hash | None = None,
) -> Signature:
    """Sign with ``payer`` (+ ``signers``) and submit with a confirmed-commitment preflight."""
    if blockhash is None:
        blockhash = await latest_blockhash(conn)
    unique = {bytes(k.pubkey()): k for k in (payer, *signers)}
    tx = Transaction.new_signed_with_payer(
        list(instructions), payer.pubkey(), list(unique.values()), blockhash
    )
    opts = TxOpts(skip_confirmation=True, skip_preflight=False, preflight_commitment=Confirmed)
    return (await conn.send_raw_transaction(bytes(tx), opts=opts)).value


async def wait_confirmed(
    conn: AsyncClient, signatures: Sequence[Signature], timeout: float = CONFIRM_TIMEOUT_S
) -> None:
    """Poll getSignatureStatuses until every signature is ``confirmed`` (or finalized).

    Raises RpcError when a transaction failed on chain or the timeout passes.
    """
    pending = list(signatures)
    deadline = time.monotonic() + timeout
    while pending:
        statuses = (await conn.get_signature_statuses(pending)).value
        still: list[Signature] = []
        for sig, status in zip(pending, statuses, strict=True):
            if status is not None and status.err is not None:
                raise RpcError(f"transaction {sig} failed: {status.err}")
            if status is None or status.confirmation_status not in _DONE:
                still.append(sig)
        pending = still
        if pending:
            if time.monotonic() > deadline:
                raise RpcError(
                    f"not confirmed after {timeout:.0f}s: {', '.join(map(str, pending))}"
                )
            await asyncio.sleep(_POLL_INTERVAL_S)


async def send_and_confirm(
    conn: AsyncClient,
    instructions: Sequence[Instruction],
    payer: Keypair,
    signers: Sequence[Keypair] = (),
) -> Signature:
    """:func:`send` then :func:`wait_confirmed`; returns the signature."""
    sig = await send(conn, instructions, payer, signers)
    await wait_confirmed(conn, [sig])
    return sig


async def get_mint(conn: AsyncClient, mint: Pubkey) -> MintInfo | None:
    """Read a mint account from chain; None when it does not exist."""
    account = (await conn.get_account_info(mint, Confirmed)).value
    if account is None:
        return None
    return parse_mint(mint, account.owner, bytes(account.data))


async def token_balance(conn: AsyncClient, token_account: Pubkey) -> int:
    """Raw amount held by a token account, 0 when the account does not exist."""
    account = (await conn.get_account_info(token_account, Confirmed)).value
    if account is None:
        return 0
    return token_account_amount(bytes(account.data))


async def sol_balance(conn: AsyncClient, owner: Pubkey) -> int:
    """Lamports of ``owner`` at confirmed commitment."""
    return (await conn.get_balance(owner, Confirmed)).value


async def give_sol(
    conn: AsyncClient, recipient: Pubkey, lamports: int, funder: Keypair | None = None
) -> Signature | None:
    """Give ``lamports`` to ``recipient``: requestAirdrop, or a transfer from ``funder``.

    The airdrop is tried first (free on local validators); rate-limited clusters
    such as devnet refuse it, then ``funder`` pays.
    """
    if lamports <= 0:
        return None
    try:
        sig = (await conn.request_airdrop(recipient, lamports, Confirmed)).value
        await wait_confirmed(conn, [sig])
        return sig
    except (RPCException, RPCNoResultException, SolanaRpcException, SolanaSandboxError):
        # e.g. devnet's airdrop rate limit (HTTP 429 or an RPC error)
        if funder is None:
            raise
    ix = transfer(
        TransferParams(from_pubkey=funder.pubkey(), to_pubkey=recipient, lamports=lamports)
    )
    return await send_and_confirm(conn, [ix], funder)
