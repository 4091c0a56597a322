"""KZTE: Solana wallet addresses, reference keys and Solana Pay transfer-request URIs."""

from __future__ import annotations

from urllib.parse import quote

from solders.keypair import Keypair
from solders.pubkey import Pubkey

from pos.errors import ValidationError
from pos.i18n import N_
from pos.money import format_units


def parse_pubkey(text: str, field: str = "solana_wallet") -> Pubkey:
    """A base58 32-byte public key, or a clear `ValidationError`."""
    cleaned = text.strip()
    if not cleaned:
        raise ValidationError(N_("a Solana address is required"), field=field)
    try:
        return Pubkey.from_string(cleaned)
    except ValueError:
        raise ValidationError(
            N_("%(text)s is not a Solana address (base58, 32 bytes)"),
            field=field,
            text=repr(cleaned),
        ) from None


# Programs and sysvars a wallet field must never hold: coins sent there are lost. Most are on
# the ed25519 curve (the System Program is all zeros), so the curve check alone lets them in.
KNOWN_PROGRAM_IDS = frozenset(
    {
        "11111111111111111111111111111111",  # System Program
        "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA",  # SPL Token
        "TokenzQdBNbLqP5VEhdkAS6EPFLC1PHnBqCXEpPxuEb",  # SPL Token-2022
        "ATokenGPvbdGVxr1b2hvZbsiqW5xWH25efTNsLJA8knL",  # Associated Token Account
        "MemoSq4gqABAXKb96qnH8TysNcWxMyWCqXgDLGmfcHr",  # Memo v2
        "Memo1UhkJRfHyvLMcVucJwxXeuD728EqVDDwQDxFMNo",  # Memo v1
        "ComputeBudget111111111111111111111111111111",
        "Stake11111111111111111111111111111111111111",
        "StakeConfig11111111111111111111111111111111",
        "Vote111111111111111111111111111111111111111",
        "Config1111111111111111111111111111111111111",
        "AddressLookupTab1e1111111111111111111111111",
        "BPFLoader1111111111111111111111111111111111",
        "BPFLoader2111111111111111111111111111111111",
        "BPFLoaderUpgradeab1e11111111111111111111111",
        "LoaderV411111111111111111111111111111111111",
        "NativeLoader1111111111111111111111111111111",
        "Ed25519SigVerify111111111111111111111111111",
        "KeccakSecp256k11111111111111111111111111111",
        "Secp256r1SigVerify1111111111111111111111111",
        "ZkTokenProof1111111111111111111111111111111",
        "ZkE1Gama1Proof11111111111111111111111111111",
        "Feature111111111111111111111111111111111111",
        "Sysvar1111111111111111111111111111111111111",  # the sysvar owner
        "SysvarC1ock11111111111111111111111111111111",
        "SysvarEpochSchedu1e111111111111111111111111",
        "SysvarFees111111111111111111111111111111111",
        "SysvarRecentB1ockHashes11111111111111111111",
        "SysvarRent111111111111111111111111111111111",
        "SysvarRewards111111111111111111111111111111",
        "SysvarS1otHashes111111111111111111111111111",
        "SysvarS1otHistory11111111111111111111111111",
        "SysvarStakeHistory1111111111111111111111111",
        "SysvarEpochRewards1111111111111111111111111",
        "SysvarLastRestartS1ot1111111111111111111111",
        "Sysvar1nstructions1111111111111111111111111",
    }
)


def parse_wallet(text: str, mint: str | None = None) -> str:
    """A merchant wallet: a valid address on the ed25519 curve (a key that can sign, not a PDA
    such as a token account), neither a known program or sysvar nor the KZTE `mint` itself.

    These checks need no node; `settlement.wallet_check` adds the node's view when it answers.
    """
    key = parse_pubkey(text)
    address = str(key)
    if address in KNOWN_PROGRAM_IDS:
        raise ValidationError(
            N_(
                "this address is a Solana program or system account, not a wallet; enter your "
                "wallet's own address"
            ),
            field="solana_wallet",
        )
    if mint and address == mint:
        raise ValidationError(
            N_(
                "this address is the KZTE token mint, not a wallet; enter your wallet's own address"
            ),
            field="solana_wallet",
        )
    if not key.is_on_curve():
        raise ValidationError(
            N_(
                "this address is not a wallet (it is off the ed25519 curve, e.g. a program-derived "
                "address); enter the wallet's own address"
            ),
            field="solana_wallet",
        )
    return address


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
