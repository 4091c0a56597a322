"""A merchant's Solana wallet as the node sees it, at the moment the owner saves it.

The offline checks (pos.methods.kzte.parse_wallet: on the curve, no known program, not the
KZTE mint) cannot tell a mint or token account someone made with a plain keypair from a wallet:
the node can. An executable account, or one owned by the Token or Token-2022 program, is
refused. A node that does not answer refuses nothing: the wallet is accepted on the offline
checks and the gap is logged, since a shop's setup must not hang on a node (unknown is not
failed) and those checks already keep out every program, the mint, and every PDA.
"""

from __future__ import annotations

import asyncio
import logging

from pos.errors import ValidationError
from settlement.chains.solana_rpc import SolanaRpc

log = logging.getLogger(__name__)

TOKEN_PROGRAMS = frozenset(
    {
        "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA",
        "TokenzQdBNbLqP5VEhdkAS6EPFLC1PHnBqCXEpPxuEb",
    }
)
# A setup page waits at most this long for the node (one attempt, no retry).
TIMEOUT_SECONDS = 3.0


async def _check(rpc_url: str, wallet: str) -> bool:
    async with SolanaRpc(rpc_url, timeout_seconds=TIMEOUT_SECONDS, attempts=1) as rpc:
        answer = await rpc.account_facts(wallet)
    if answer.error is not None:
        log.warning(
            "Solana node %s did not answer (%s): wallet %s accepted on the offline checks only",
            rpc_url,
            answer.error,
            wallet,
        )
        return False
    facts = answer.value
    if facts is None:
        return True  # no account yet: a fresh wallet, which is fine
    if facts.executable:
        raise ValidationError(
            "this address is a Solana program, not a wallet; enter your wallet's own address",
            field="solana_wallet",
        )
    if facts.owner in TOKEN_PROGRAMS:
        raise ValidationError(
            "this address is a token mint or token account, not a wallet; enter your wallet's "
            "own address (the one your wallet app shows)",
            field="solana_wallet",
        )
    return True


def check_wallet_on_chain(rpc_url: str, wallet: str) -> bool:
    """Refuse (`ValidationError`) a wallet the node shows is a program, mint or token account;
    True when the node answered, False when it did not and only the offline checks ran."""
    return asyncio.run(_check(rpc_url, wallet))
