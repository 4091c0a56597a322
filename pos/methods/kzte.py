"""KZTE: Solana wallet addresses, reference keys and Solana Pay transfer-request URIs."""

from __future__ import annotations

from urllib.parse import quote

from solders.keypair import Keypair
from solders.pubkey import Pubkey

from pos.errors import ValidationError
from pos.money import format_units


def parse_pubkey(text: str, field: str = "solana_wallet") -> Pubkey:
    """A base58 32-byte public key, or a clear `ValidationError`."""
    cleaned = text.strip()
    if not cleaned:
        raise ValidationError("a Solana address is required", field=field)
    try:
        return Pubkey.from_string(cleaned)
    except ValueError:
        raise ValidationError(
            f"{cleaned!r} is not a Solana address (base58, 32 bytes)", field=field
        ) from None


def parse_wallet(text: str) -> str:
    """A merchant wallet: a valid address that is on the ed25519 curve (a real key, not a PDA)."""
    key = parse_pubkey(text)
    if not key.is_on_curve():
        raise ValidationError(
            "this address is not a wallet (it is off the ed25519 curve, e.g. a program-derived "
            "address); enter the wallet's own address",
            field="solana_wallet",
        )
    return str(key)


def new_reference() -> str:
    """A fresh, unique reference key; only its public half is ever needed."""
    return str(Keypair().pubkey())


def solana_pay_uri(
    recipient: str,
    amount_base_units: int,
    decimals: int,
    mint: str,
    reference: str,
    label: str = "",
    message: str = "",
    memo: str = "",
) -> str:
    """A Solana Pay transfer request (spec: recipient, amount, spl-token, reference, …)."""
    params = [
        f"amount={format_units(amount_base_units, decimals)}",
        f"spl-token={mint}",
        f"reference={reference}",
    ]
    for name, value in (("label", label), ("message", message), ("memo", memo)):
        if value:
            params.append(f"{name}={quote(value, safe='')}")
    return f"solana:{recipient}?{'&'.join(params)}"
