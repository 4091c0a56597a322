"""Where a shopper asks a refund to go: a Bitcoin address or a KZTE (Solana) wallet (DESIGN §7).

Pure functions, no I/O. Each refuses, with a sentence a shopper understands, anything that could
send the refund somewhere nobody can spend it: a typo (checksums), another network, a witness
version or program length no wallet spends today, a program-derived address, a program id.
"""

from __future__ import annotations

import hashlib
from enum import Enum

from embit import base58

from pos.errors import ValidationError
from pos.i18n import N_
from pos.methods.kzte import parse_pubkey
from pos.settings import BitcoinNetwork

# The settlement watcher derives the destination it checks with this very function, so a refund
# is addressed exactly the way the watcher will later verify it (one derivation, not two).
from settlement.kzte_validation import (
    ASSOCIATED_TOKEN_PROGRAM,
    TOKEN_2022_PROGRAM,
    TOKEN_PROGRAM,
    associated_token_address,
)

ADDRESS_FIELD = "address"
WALLET_FIELD = "wallet"

# --- Bitcoin -----------------------------------------------------------------------------------

# Segwit human-readable parts (BIP173 / SLIP-173); testnet and signet share "tb".
_HRP_NETWORKS: dict[str, frozenset[BitcoinNetwork]] = {
    "bc": frozenset({BitcoinNetwork.MAINNET}),
    "tb": frozenset({BitcoinNetwork.TESTNET, BitcoinNetwork.SIGNET}),
    "bcrt": frozenset({BitcoinNetwork.REGTEST}),
}
_HRP_NAMES = {"bc": "mainnet", "tb": "testnet or signet", "bcrt": "regtest"}
_TEST_NETWORKS = frozenset({BitcoinNetwork.TESTNET, BitcoinNetwork.SIGNET, BitcoinNetwork.REGTEST})
# Base58Check version bytes: P2PKH and P2SH; every test network shares 0x6f / 0xc4.
_BASE58_VERSIONS: dict[int, frozenset[BitcoinNetwork]] = {
    0x00: frozenset({BitcoinNetwork.MAINNET}),
    0x05: frozenset({BitcoinNetwork.MAINNET}),
    0x6F: _TEST_NETWORKS,
    0xC4: _TEST_NETWORKS,
}
_WIF_VERSIONS = frozenset({0x80, 0xEF})
_BECH32_CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_BECH32_MAX_LENGTH = 90
# secp256k1 field prime: a P2TR program must be the x coordinate of a curve point.
_SECP256K1_P = 2**256 - 2**32 - 977


class Bech32Variant(Enum):
    """The checksum constant: BIP173 Bech32 (witness v0) or BIP350 Bech32m (v1 and later)."""

    BECH32 = 1
    BECH32M = 0x2BC830A3


def _polymod(values: list[int]) -> int:
    # BIP173 "bech32_polymod": the BCH checksum over GF(32).
    generator = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)
    chk = 1
    for value in values:
        top = chk >> 25
        chk = (chk & 0x1FFFFFF) << 5 ^ value
        for i, g in enumerate(generator):
            chk ^= g if (top >> i) & 1 else 0
    return chk


def _hrp_expand(hrp: str) -> list[int]:
    return [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]


def decode_bech32(text: str) -> tuple[str, list[int], Bech32Variant]:
    """Split a Bech32/Bech32m string into (lower-case HRP, 5-bit data without checksum, variant).

    The string rules and checksum of BIP173 ("Bech32") with BIP350's second constant
    ("Bech32m"). Raises `ValueError` naming the rule broken; callers translate it.
    """
    if any(ord(c) < 33 or ord(c) > 126 for c in text):
        raise ValueError("character out of range")
    if text.lower() != text and text.upper() != text:
        raise ValueError("mixed case")
    if len(text) > _BECH32_MAX_LENGTH:
        raise ValueError("too long")
    lowered = text.lower()
    sep = lowered.rfind("1")
    if sep < 1:
        raise ValueError("no separator or empty human-readable part")
    if sep + 7 > len(lowered):
        raise ValueError("checksum too short")
    hrp, rest = lowered[:sep], lowered[sep + 1 :]
    if any(c not in _BECH32_CHARSET for c in rest):
        raise ValueError("invalid data character")
    data = [_BECH32_CHARSET.index(c) for c in rest]
    check = _polymod(_hrp_expand(hrp) + data)
    for variant in Bech32Variant:
        if check == variant.value:
            return hrp, data[:-6], variant
    raise ValueError("checksum mismatch")


def _five_to_eight_bits(data: list[int]) -> bytes | None:
    # BIP173 "convertbits(data, 5, 8, False)": at most 4 padding bits, all zero.
    acc = bits = 0
    out = bytearray()
    for value in data:
        acc = (acc << 5) | value
        bits += 5
        if bits >= 8:
            bits -= 8
            out.append((acc >> bits) & 0xFF)
    if bits >= 5 or (acc << (8 - bits)) & 0xFF:
        return None
    return bytes(out)


def _is_secp256k1_x(program: bytes) -> bool:
    # An x-only key is valid when x < p and x^3 + 7 is a square mod p (Euler's criterion).
    x = int.from_bytes(program, "big")
    if x >= _SECP256K1_P:
        return False
    return pow((x**3 + 7) % _SECP256K1_P, (_SECP256K1_P - 1) // 2, _SECP256K1_P) == 1


def _invalid(message: str) -> ValidationError:
    return ValidationError(message, field=ADDRESS_FIELD)


def _wrong_network(belongs_to: str, network: BitcoinNetwork) -> ValidationError:
    return _invalid(
        f"this is a {belongs_to} address, but refunds here are paid on {network}; "
        f"enter a {network} address"
    )


def _parse_segwit(text: str, network: BitcoinNetwork) -> str:
    try:
        hrp, data, variant = decode_bech32(text)
    except ValueError as exc:
        reason = str(exc)
        if reason == "mixed case":
            raise _invalid(
                "this address mixes capital and small letters; copy it again exactly"
            ) from None
        if reason == "checksum mismatch":
            raise _invalid(
                "this address is mistyped: its checksum does not match "
                "(a character is probably wrong or missing)"
            ) from None
        raise _invalid(
            "this is not a valid Bitcoin address (a character is wrong, missing or extra)"
        ) from None
    if not data:
        raise _invalid("this address is incomplete: it has no data after the prefix")
    version, program = data[0], _five_to_eight_bits(data[1:])
    if version > 16 or program is None or not 2 <= len(program) <= 40:
        raise _invalid(
            "this is not a valid Bitcoin address (its data has the wrong size or version)"
        )
    # BIP350: v0 carries a Bech32 checksum, v1 and later a Bech32m one; the other constant is a
    # different (corrupted or pre-BIP350) string, so it is a checksum failure.
    if (version == 0) != (variant is Bech32Variant.BECH32):
        raise _invalid(
            "this address is mistyped or made by outdated software: its checksum does not "
            "match its SegWit version"
        )
    if version == 0 and len(program) not in (20, 32):
        raise _invalid(
            f"this is not a valid Bitcoin address (a version 0 program is 20 or 32 bytes, "
            f"not {len(program)})"
        )
    if version == 1 and len(program) == 32 and not _is_secp256k1_x(program):
        raise _invalid("this Taproot address holds no valid key; coins sent there are lost")
    if version >= 2 or (version == 1 and len(program) != 32):
        raise _invalid(
            f"this address uses a SegWit version ({version}, {len(program)} bytes) that no "
            "wallet can spend yet; enter the receive address your wallet shows"
        )
    if network not in _HRP_NETWORKS[hrp]:
        raise _wrong_network(_HRP_NAMES[hrp], network)
    return text.lower()


def _parse_base58(text: str, network: BitcoinNetwork) -> str:
    try:
        raw: bytes = base58.decode(text)
    except ValueError:
        raise _invalid(
            "this is not a Bitcoin address: it contains characters no address uses"
        ) from None
    if len(raw) < 5:
        raise _invalid("this is not a Bitcoin address: it is too short")
    payload, checksum = raw[:-4], raw[-4:]
    if hashlib.sha256(hashlib.sha256(payload).digest()).digest()[:4] != checksum:
        raise _invalid(
            "this address is mistyped: its checksum does not match "
            "(a character is probably wrong or missing)"
        )
    if len(payload) in (33, 34) and payload[0] in _WIF_VERSIONS:
        raise _invalid(
            "this is a PRIVATE key, not an address; never share it. Enter your wallet's "
            "receive address"
        )
    if len(payload) != 21 or payload[0] not in _BASE58_VERSIONS:
        raise _invalid("this is not a Bitcoin address (it has the wrong length or prefix)")
    networks = _BASE58_VERSIONS[payload[0]]
    if network not in networks:
        belongs_to = "mainnet" if BitcoinNetwork.MAINNET in networks else "test network"
        raise _wrong_network(belongs_to, network)
    return text


def parse_btc_refund_address(text: str, network: BitcoinNetwork) -> str:
    """The Bitcoin address a refund is paid to, normalised (bech32 in lower case).

    Accepts P2PKH, P2SH, P2WPKH, P2WSH and P2TR addresses of `network`, bare or as a
    `bitcoin:<address>` URI without parameters. Raises `ValidationError(field="address")`.
    """
    cleaned = text.strip()
    if not cleaned:
        raise _invalid("enter the Bitcoin address the refund should go to")
    if cleaned[:8].lower() == "bitcoin:":
        cleaned = cleaned[8:]
        address, sep, _params = cleaned.partition("?")
        # An amount or a label in a refund URI would be silently dropped: say so instead.
        if sep or "#" in address:
            raise _invalid("enter only the address, without an amount or other details")
        cleaned = address.strip()
        if not cleaned:
            raise _invalid("enter the Bitcoin address the refund should go to")
    if any(c.isspace() for c in cleaned):
        raise _invalid("a Bitcoin address has no spaces; copy it again exactly")
    sep_at = cleaned.lower().rfind("1")
    hrp_guess = cleaned[:sep_at].lower() if sep_at > 0 else ""
    if hrp_guess in _HRP_NETWORKS:
        return _parse_segwit(cleaned, network)
    return _parse_base58(cleaned, network)


# --- KZTE (Solana) -----------------------------------------------------------------------------

SYSTEM_PROGRAM = "11111111111111111111111111111111"
# Program ids are ordinary on-curve keys (vanity keypairs, or all zeros for the system program),
# so the curve test alone lets them through; a token sent "to" a program is lost.
_PROGRAM_IDS: dict[str, str] = {
    SYSTEM_PROGRAM: "the Solana system program",
    TOKEN_PROGRAM: "the SPL Token program",
    TOKEN_2022_PROGRAM: "the Token-2022 program",
    str(ASSOCIATED_TOKEN_PROGRAM): "the associated token account program",
    "MemoSq4gqABAXKb96qnH8TysNcWxMyWCqXgDLGmfcHr": "the Memo program",
    "Memo1UhkJRfHyvLMcVucJwxXeuD728EqVDDwQDxFMNo": "the Memo program",
}


def parse_kzte_refund_wallet(text: str, *, mint: str | None) -> str:
    """The Solana wallet (owner) a KZTE refund is paid to, in canonical base58.

    It must be a real ed25519 key that can sign (not a program-derived address such as a token
    account), and neither the KZTE mint (`mint`, the zone's `kzte_mint`) nor a program id.
    Raises `ValidationError(field="wallet")`.
    """
    key = parse_pubkey(text, field=WALLET_FIELD)
    address = str(key)
    if mint is not None and address == str(parse_pubkey(mint, field="mint")):
        raise ValidationError(
            N_(
                "this is the address of the KZTE token itself, not a wallet; enter your wallet's "
                "address"
            ),
            field=WALLET_FIELD,
        )
    if address in _PROGRAM_IDS:
        raise ValidationError(
            f"this is the address of {_PROGRAM_IDS[address]}, not a wallet; enter your "
            "wallet's address",
            field=WALLET_FIELD,
        )
    if not key.is_on_curve():
        raise ValidationError(
            N_(
                "this is not a wallet address (it is a program-derived address, for example a "
                "token account); enter your wallet's own address"
            ),
            field=WALLET_FIELD,
        )
    return address


def kzte_refund_token_account(wallet: str, mint: str, token_program: str = TOKEN_PROGRAM) -> str:
    """The associated token account a KZTE refund pays (the `TransferChecked` destination).

    `token_program` is the program that owns the mint: classic SPL Token for the sandbox mint
    (sandbox/solana/mint.py creates it with TOKEN_PROGRAM_ID); a Token-2022 mint gives a
    different account, so pass what the chain reports as the mint's owner.
    """
    if token_program not in (TOKEN_PROGRAM, TOKEN_2022_PROGRAM):
        raise ValidationError(
            N_("the token program must be SPL Token or Token-2022"), field="token_program"
        )
    owner = parse_kzte_refund_wallet(wallet, mint=mint)
    return associated_token_address(owner, str(parse_pubkey(mint, field="mint")), token_program)
