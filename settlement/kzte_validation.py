"""Is this Solana transaction a payment of this KZTE invoice? (pure; no I/O)

The rules follow the Solana Pay reference validator (`validateTransfer` of `@solana/pay`),
made tolerant where real wallets differ (DESIGN §5):
  * the transaction succeeded (no error);
  * its LAST instruction is an SPL Token `Transfer` or `TransferChecked` (classic or Token-2022)
    whose destination is the merchant's associated token account of the invoice's mint, and for
    `TransferChecked` whose mint account is that mint;
  * the invoice's reference key is among that instruction's extra accounts;
  * the amount is the destination's post minus pre token balance (raw integers; a destination
    created in the same transaction had a pre balance of 0, where `@solana/pay` would give up);
  * a memo, when the transaction carries one (Memo v1 or v2, with or without a signer account),
    equals the invoice id; a transaction without a memo is still accepted, since the unique
    reference already ties it to the invoice.
One transaction pays at most once: its last instruction.
"""

from __future__ import annotations

from dataclasses import dataclass

from solders.pubkey import Pubkey

from settlement.chains.solana_rpc import ChainTransaction, TokenBalance

TOKEN_PROGRAM = "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA"
TOKEN_2022_PROGRAM = "TokenzQdBNbLqP5VEhdkAS6EPFLC1PHnBqCXEpPxuEb"
ASSOCIATED_TOKEN_PROGRAM = Pubkey.from_string("ATokenGPvbdGVxr1b2hvZbsiqW5xWH25efTNsLJA8knL")
MEMO_PROGRAMS = frozenset(
    {
        "MemoSq4gqABAXKb96qnH8TysNcWxMyWCqXgDLGmfcHr",  # v2
        "Memo1UhkJRfHyvLMcVucJwxXeuD728EqVDDwQDxFMNo",  # v1 (older wallets)
    }
)
_TRANSFER = 3  # accounts: source, destination, authority, [multisig signers]
_TRANSFER_CHECKED = 12  # accounts: source, mint, destination, authority, [multisig signers]


@dataclass(frozen=True)
class ExpectedTransfer:
    """What the invoice asked for (from its row, never from the transaction)."""

    recipient: str  # the merchant's wallet (owner of the token account)
    mint: str
    reference: str
    memo: str  # the invoice id


@dataclass(frozen=True)
class Verdict:
    """`ok` with the amount received, or the reason the transaction does not pay the invoice."""

    ok: bool
    amount_base_units: int = 0
    reason: str = ""
    # Reasons a person should hear about (money went somewhere else), as opposed to noise.
    suspicious: bool = False
    # For suspicious ones: which of pos.invoices.REJECTION_REASONS (the owner's timeline).
    code: str = ""


def associated_token_address(owner: str, mint: str, token_program: str = TOKEN_PROGRAM) -> str:
    """The owner's associated token account for `mint` (the ATA program's derivation)."""
    address, _bump = Pubkey.find_program_address(
        [
            bytes(Pubkey.from_string(owner)),
            bytes(Pubkey.from_string(token_program)),
            bytes(Pubkey.from_string(mint)),
        ],
        ASSOCIATED_TOKEN_PROGRAM,
    )
    return str(address)


def _balance(balances: tuple[TokenBalance, ...], index: int) -> TokenBalance | None:
    return next((b for b in balances if b.account_index == index), None)


def _memos(tx: ChainTransaction) -> list[str]:
    texts = []
    for ix in tx.instructions:
        if ix.program in MEMO_PROGRAMS:
            texts.append(ix.data.decode("utf-8", errors="replace"))
    return texts


def validate_transfer(tx: ChainTransaction, expected: ExpectedTransfer) -> Verdict:
    """Decide whether `tx` pays `expected`; pure, so every rule is unit-tested without a node."""
    if tx.failed:
        return Verdict(False, reason="the transaction failed on chain")
    if not tx.instructions:
        return Verdict(False, reason="the transaction has no instructions")
    ix = tx.instructions[-1]
    if ix.program not in (TOKEN_PROGRAM, TOKEN_2022_PROGRAM) or not ix.data:
        return Verdict(False, reason="the last instruction is not a token transfer")
    kind = ix.data[0]
    if kind == _TRANSFER and len(ix.accounts) >= 3:
        destination, mint_account, required = ix.accounts[1], None, 3
    elif kind == _TRANSFER_CHECKED and len(ix.accounts) >= 4:
        destination, mint_account, required = ix.accounts[2], ix.accounts[1], 4
    else:
        return Verdict(False, reason="the last instruction is not a Transfer or TransferChecked")

    if mint_account is not None and mint_account != expected.mint:
        return Verdict(
            False,
            reason=f"wrong mint: paid in {mint_account}, not {expected.mint}",
            suspicious=True,
            code="wrong_mint",
        )
    index = tx.account_keys.index(destination)
    post = _balance(tx.post_token_balances, index)
    if post is not None and post.mint != expected.mint:
        return Verdict(
            False,
            reason=f"wrong mint: paid in {post.mint}, not {expected.mint}",
            suspicious=True,
            code="wrong_mint",
        )
    ata = associated_token_address(expected.recipient, expected.mint, ix.program)
    if destination != ata:
        owner = f" (owned by {post.owner})" if post is not None and post.owner else ""
        return Verdict(
            False,
            reason=f"wrong recipient: paid to token account {destination}{owner}, "
            f"not {expected.recipient}'s {ata}",
            suspicious=True,
            code="wrong_recipient",
        )
    if expected.reference not in ix.accounts[required:]:
        return Verdict(False, reason="the transfer does not carry the invoice's reference key")
    memos = _memos(tx)
    if memos and expected.memo not in memos:
        return Verdict(
            False,
            reason=f"memo {memos[0]!r} is not the invoice id",
            suspicious=True,
            code="wrong_memo",
        )
    if post is None:
        return Verdict(False, reason="the node returned no token balance for the recipient")
    pre = _balance(tx.pre_token_balances, index)
    received = post.amount_base_units - (pre.amount_base_units if pre is not None else 0)
    if received <= 0:
        return Verdict(False, reason="the recipient's balance did not grow")
    return Verdict(True, amount_base_units=received)
