"""Hand-written SPL Token, Associated Token Account and Memo instructions.

Layouts follow the on-chain programs (little-endian integers):
  * Token InitializeMint2  = u8 20, u8 decimals, [32] mint authority, COption<[32]> freeze
  * Token MintToChecked    = u8 14, u64 amount, u8 decimals
  * Token TransferChecked  = u8 12, u64 amount, u8 decimals
  * ATA CreateIdempotent   = u8 1
  * Memo v2                = raw UTF-8 bytes, no accounts
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

from solders.instruction import AccountMeta, Instruction
from solders.pubkey import Pubkey

from sandbox.solana.errors import SolanaSandboxError

TOKEN_PROGRAM_ID = Pubkey.from_string("TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA")
TOKEN_2022_PROGRAM_ID = Pubkey.from_string("TokenzQdBNbLqP5VEhdkAS6EPFLC1PHnBqCXEpPxuEb")
ASSOCIATED_TOKEN_PROGRAM_ID = Pubkey.from_string("ATokenGPvbdGVxr1b2hvZbsiqW5xWH25efTNsLJA8knL")
MEMO_PROGRAM_ID = Pubkey.from_string("MemoSq4gqABAXKb96qnH8TysNcWxMyWCqXgDLGmfcHr")
SYSTEM_PROGRAM_ID = Pubkey.from_string("11111111111111111111111111111111")

TOKEN_PROGRAMS = (TOKEN_PROGRAM_ID, TOKEN_2022_PROGRAM_ID)

MINT_SIZE = 82
TOKEN_ACCOUNT_SIZE = 165
U64_MAX = 2**64 - 1

_INITIALIZE_MINT2 = 20
_MINT_TO_CHECKED = 14
_TRANSFER_CHECKED = 12
_ATA_CREATE_IDEMPOTENT = 1


@dataclass(frozen=True)
class MintInfo:
    """The fields of an SPL mint account that the sandbox needs."""

    address: Pubkey
    token_program: Pubkey
    decimals: int
    supply: int
    mint_authority: Pubkey | None


def _u64(value: int) -> bytes:
    if not 0 <= value <= U64_MAX:
        raise SolanaSandboxError(f"token amount {value} does not fit in a u64")
    return struct.pack("<Q", value)


def associated_token_address(
    owner: Pubkey, mint: Pubkey, token_program: Pubkey = TOKEN_PROGRAM_ID
) -> Pubkey:
    """Derive the associated token account of ``owner`` for ``mint``."""
    address, _bump = Pubkey.find_program_address(
        [bytes(owner), bytes(token_program), bytes(mint)], ASSOCIATED_TOKEN_PROGRAM_ID
    )
    return address


def initialize_mint2(
    mint: Pubkey,
    decimals: int,
    mint_authority: Pubkey,
    freeze_authority: Pubkey | None = None,
    token_program: Pubkey = TOKEN_PROGRAM_ID,
) -> Instruction:
    """InitializeMint2: no rent sysvar account needed, unlike InitializeMint."""
    freeze = b"\x01" + bytes(freeze_authority) if freeze_authority else b"\x00"
    data = bytes([_INITIALIZE_MINT2, decimals]) + bytes(mint_authority) + freeze
    return Instruction(token_program, data, [AccountMeta(mint, is_signer=False, is_writable=True)])


def mint_to_checked(
    mint: Pubkey,
    destination: Pubkey,
    authority: Pubkey,
    amount: int,
    decimals: int,
    token_program: Pubkey = TOKEN_PROGRAM_ID,
) -> Instruction:
    """MintToChecked: mint ``amount`` base units into the ``destination`` token account."""
    data = bytes([_MINT_TO_CHECKED]) + _u64(amount) + bytes([decimals])
    accounts = [
        AccountMeta(mint, is_signer=False, is_writable=True),
        AccountMeta(destination, is_signer=False, is_writable=True),
        AccountMeta(authority, is_signer=True, is_writable=False),
    ]
    return Instruction(token_program, data, accounts)


def transfer_checked(
    source: Pubkey,
    mint: Pubkey,
    destination: Pubkey,
    owner: Pubkey,
    amount: int,
    decimals: int,
    references: Sequence[Pubkey] = (),
    token_program: Pubkey = TOKEN_PROGRAM_ID,
) -> Instruction:
    """TransferChecked; Solana Pay reference keys ride along as read-only non-signers."""
    data = bytes([_TRANSFER_CHECKED]) + _u64(amount) + bytes([decimals])
    accounts = [
        AccountMeta(source, is_signer=False, is_writable=True),
        AccountMeta(mint, is_signer=False, is_writable=False),
        AccountMeta(destination, is_signer=False, is_writable=True),
        AccountMeta(owner, is_signer=True, is_writable=False),
    ]
    accounts += [AccountMeta(ref, is_signer=False, is_writable=False) for ref in references]
    return Instruction(token_program, data, accounts)


def create_ata_idempotent(
    funder: Pubkey, owner: Pubkey, mint: Pubkey, token_program: Pubkey = TOKEN_PROGRAM_ID
) -> Instruction:
    """ATA CreateIdempotent: creates the owner's token account, no-op when it exists."""
    accounts = [
        AccountMeta(funder, is_signer=True, is_writable=True),
        AccountMeta(
            associated_token_address(owner, mint, token_program), is_signer=False, is_writable=True
        ),
        AccountMeta(owner, is_signer=False, is_writable=False),
        AccountMeta(mint, is_signer=False, is_writable=False),
        AccountMeta(SYSTEM_PROGRAM_ID, is_signer=False, is_writable=False),
        AccountMeta(token_program, is_signer=False, is_writable=False),
    ]
    return Instruction(ASSOCIATED_TOKEN_PROGRAM_ID, bytes([_ATA_CREATE_IDEMPOTENT]), accounts)


def memo(text: str) -> Instruction:
    """Memo v2 instruction without signer keys (as Solana Pay requires)."""
    return Instruction(MEMO_PROGRAM_ID, text.encode("utf-8"), [])


def parse_mint(address: Pubkey, owner: Pubkey, data: bytes) -> MintInfo:
    """Decode a mint account (first 82 bytes; Token-2022 extensions follow and are ignored)."""
    if owner not in TOKEN_PROGRAMS:
        raise SolanaSandboxError(f"{address} is not a token mint (owner {owner})")
    if len(data) < MINT_SIZE or (len(data) == TOKEN_ACCOUNT_SIZE):
        raise SolanaSandboxError(f"{address} is not a mint account ({len(data)} bytes)")
    has_authority = struct.unpack_from("<I", data, 0)[0] == 1
    authority = Pubkey.from_bytes(data[4:36]) if has_authority else None
    supply = struct.unpack_from("<Q", data, 36)[0]
    decimals = data[44]
    if data[45] != 1:
        raise SolanaSandboxError(f"mint {address} is not initialized")
    return MintInfo(address, owner, decimals, supply, authority)


def token_account_amount(data: bytes) -> int:
    """Raw ``amount`` field of a token account (bytes 64..72)."""
    if len(data) < TOKEN_ACCOUNT_SIZE:
        raise SolanaSandboxError(f"not a token account ({len(data)} bytes)")
    return int(struct.unpack_from("<Q", data, 64)[0])
