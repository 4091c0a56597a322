"""Solana Pay URI parsing and hand-written instruction layouts (no validator needed)."""

from __future__ import annotations

import struct

import pytest
from solders.keypair import Keypair
from solders.pubkey import Pubkey

from sandbox.solana import spl
from sandbox.solana.errors import (
    MalformedUriError,
    SolanaSandboxError,
    UnsupportedUriError,
    WalletError,
)
from sandbox.solana.uri import amount_to_base_units, parse_transfer_uri

RECIPIENT = Keypair().pubkey()
MINT = Keypair().pubkey()
REF1 = Keypair().pubkey()
REF2 = Keypair().pubkey()


def test_full_uri_is_parsed() -> None:
    uri = (
        f"solana:{RECIPIENT}?amount=12.50&spl-token={MINT}&reference={REF1}&reference={REF2}"
        "&label=Caf%C3%A9+One&message=Thanks%20for%20shopping&memo=INV%2F42%26x&future=ignored"
    )
    req = parse_transfer_uri(uri)
    assert req.recipient == RECIPIENT
    assert req.amount == "12.50"
    assert req.spl_token == MINT
    assert req.references == (REF1, REF2)
    assert req.label == "Café One"
    assert req.message == "Thanks for shopping"
    assert req.memo == "INV/42&x"


def test_minimal_uri_has_no_optional_fields() -> None:
    req = parse_transfer_uri(f"solana:{RECIPIENT}")
    assert (req.amount, req.spl_token, req.references, req.memo) == (None, None, (), None)


@pytest.mark.parametrize(
    ("uri", "fragment"),
    [
        ("solana:?amount=1", "recipient missing"),
        ("solana:", "recipient missing"),
        (f"bitcoin:{RECIPIENT}?amount=1", "not a Solana Pay URI"),
        (f"{RECIPIENT}?amount=1", "not a Solana Pay URI"),
        ("solana:0OIl0OIl0OIl0OIl0OIl0OIl0OIl0OIl?amount=1", "recipient"),
        ("solana:abc?amount=1", "recipient"),
        (f"solana:{RECIPIENT}?amount=-1", "non-negative decimal"),
        (f"solana:{RECIPIENT}?amount=1e3", "non-negative decimal"),
        (f"solana:{RECIPIENT}?amount=1E-2", "non-negative decimal"),
        (f"solana:{RECIPIENT}?amount=.5", "non-negative decimal"),
        (f"solana:{RECIPIENT}?amount=5.", "non-negative decimal"),
        (f"solana:{RECIPIENT}?amount=%2B5", "non-negative decimal"),
        (f"solana:{RECIPIENT}?amount=1,5", "non-negative decimal"),
        (f"solana:{RECIPIENT}?amount=", "non-negative decimal"),
        (f"solana:{RECIPIENT}?amount=%D9%A1", "non-negative decimal"),  # Arabic-Indic digit one
        (f"solana:{RECIPIENT}?amount=1&amount=2", "more than once"),
        (f"solana:{RECIPIENT}?amount=1&spl-token=notbase58!", "spl-token"),
        (f"solana:{RECIPIENT}?amount=1&spl-token=", "spl-token is empty"),
        (f"solana:{RECIPIENT}?amount=1&reference={REF1}&reference=xyz", "reference"),
        (f"solana:{RECIPIENT}?amount=1&memo=%FF", "percent-encoding"),
    ],
)
def test_malformed_uris_are_refused(uri: str, fragment: str) -> None:
    with pytest.raises(MalformedUriError) as info:
        parse_transfer_uri(uri)
    assert fragment in str(info.value)
    assert isinstance(info.value, WalletError)
    assert isinstance(info.value, SolanaSandboxError)


def test_transaction_request_is_unsupported() -> None:
    with pytest.raises(UnsupportedUriError, match="transaction requests"):
        parse_transfer_uri("solana:https%3A%2F%2Fexample.com%2Fpay")


@pytest.mark.parametrize(
    ("amount", "decimals", "base"),
    [
        ("0", 6, 0),
        ("1", 6, 1_000_000),
        ("0.5", 6, 500_000),
        ("12.345678", 6, 12_345_678),
        ("007.10", 2, 710),
        ("18446744073709.551615", 6, 2**64 - 1),
        ("3", 0, 3),
    ],
)
def test_amount_to_base_units(amount: str, decimals: int, base: int) -> None:
    assert amount_to_base_units(amount, decimals) == base


@pytest.mark.parametrize(("amount", "decimals"), [("1.1234567", 6), ("1.0000000", 6), ("1.5", 0)])
def test_too_many_decimals_is_malformed(amount: str, decimals: int) -> None:
    with pytest.raises(MalformedUriError, match=f"the token allows {decimals}"):
        amount_to_base_units(amount, decimals)


def test_transfer_checked_layout_and_reference_accounts() -> None:
    src, dst, owner = (Keypair().pubkey() for _ in range(3))
    ix = spl.transfer_checked(src, MINT, dst, owner, 1_234_567, 6, [REF1, REF2])
    assert ix.program_id == spl.TOKEN_PROGRAM_ID
    assert ix.data == bytes([12]) + struct.pack("<Q", 1_234_567) + bytes([6])
    keys = [(m.pubkey, m.is_signer, m.is_writable) for m in ix.accounts]
    assert keys == [
        (src, False, True),
        (MINT, False, False),
        (dst, False, True),
        (owner, True, False),
        (REF1, False, False),
        (REF2, False, False),
    ]


def test_other_instruction_layouts() -> None:
    authority, owner = Keypair().pubkey(), Keypair().pubkey()
    init = spl.initialize_mint2(MINT, 6, authority)
    assert init.data == bytes([20, 6]) + bytes(authority) + b"\x00"
    mint_to = spl.mint_to_checked(MINT, owner, authority, 5, 6)
    assert mint_to.data == bytes([14]) + struct.pack("<Q", 5) + bytes([6])
    ata_ix = spl.create_ata_idempotent(authority, owner, MINT)
    assert ata_ix.program_id == spl.ASSOCIATED_TOKEN_PROGRAM_ID
    assert ata_ix.data == bytes([1])
    assert ata_ix.accounts[1].pubkey == spl.associated_token_address(owner, MINT)
    memo = spl.memo("héllo")
    assert memo.program_id == Pubkey.from_string("MemoSq4gqABAXKb96qnH8TysNcWxMyWCqXgDLGmfcHr")
    assert memo.data == "héllo".encode() and list(memo.accounts) == []
