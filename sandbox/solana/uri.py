"""Parse Solana Pay transfer-request URIs (``solana:<recipient>?amount=…&spl-token=…``).

Follows the Solana Pay specification: the recipient is a base58 32-byte key;
``amount`` is a non-negative decimal in user units (no sign, exponent, or bare
leading/trailing point); ``spl-token`` is optional; ``reference`` may repeat;
``label``, ``message`` and ``memo`` are URL-decoded. Whether the amount has
more decimals than the mint allows is only known on chain: see
:func:`amount_to_base_units`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote_plus

from solders.pubkey import Pubkey

from sandbox.solana.errors import MalformedUriError, UnsupportedUriError

SOL_DECIMALS = 9
_AMOUNT_RE = re.compile(r"[0-9]+(\.[0-9]+)?", re.ASCII)
_SINGLE = ("amount", "spl-token", "label", "message", "memo")


@dataclass(frozen=True)
class TransferRequest:
    """The fields of a Solana Pay transfer request."""

    recipient: Pubkey
    amount: str | None
    spl_token: Pubkey | None
    references: tuple[Pubkey, ...]
    label: str | None
    message: str | None
    memo: str | None


def _decode(text: str, uri: str) -> str:
    # Decode like the reference implementation's URLSearchParams ('+' is a space).
    try:
        return unquote_plus(text, errors="strict")
    except UnicodeDecodeError:
        raise MalformedUriError(f"invalid percent-encoding (not UTF-8) in {uri!r}") from None


def _pubkey(value: str, field: str) -> Pubkey:
    if not value:
        raise MalformedUriError(f"{field} is empty")
    try:
        return Pubkey.from_string(value)
    except ValueError as exc:
        raise MalformedUriError(
            f"{field} {value!r} is not a base58-encoded 32-byte public key ({exc})"
        ) from None


def parse_transfer_uri(uri: str) -> TransferRequest:
    """Parse a Solana Pay transfer-request URI; raise MalformedUriError when it breaks the spec.

    Transaction requests (``solana:https://…``) raise UnsupportedUriError.
    """
    scheme, colon, rest = uri.strip().partition(":")
    if not colon or scheme.lower() != "solana":
        raise MalformedUriError(f"not a Solana Pay URI (expected 'solana:'): {uri!r}")
    path, _, query = rest.partition("?")
    if path.lower().startswith("https"):
        raise UnsupportedUriError(
            "Solana Pay transaction requests (solana:https://…) are not supported"
        )
    if not path:
        raise MalformedUriError(f"recipient missing in {uri!r}")
    recipient = _pubkey(_decode(path, uri), "recipient")

    single: dict[str, str] = {}
    references: list[Pubkey] = []
    for part in query.split("&") if query else ():
        if not part:
            continue
        raw_key, _, raw_value = part.partition("=")
        key, value = _decode(raw_key, uri), _decode(raw_value, uri)
        if key == "reference":
            references.append(_pubkey(value, "reference"))
        elif key in _SINGLE:
            if key in single:
                raise MalformedUriError(f"'{key}' given more than once in {uri!r}")
            single[key] = value
        # Unknown parameters are ignored so that newer spec fields do not break payment.

    amount = single.get("amount")
    if amount is not None and not _AMOUNT_RE.fullmatch(amount):
        raise MalformedUriError(
            f"amount {amount!r} must be a non-negative decimal like '12' or '0.5' "
            "(no sign, exponent or bare '.')"
        )
    spl_token = single.get("spl-token")
    return TransferRequest(
        recipient=recipient,
        amount=amount,
        spl_token=_pubkey(spl_token, "spl-token") if spl_token is not None else None,
        references=tuple(references),
        label=single.get("label"),
        message=single.get("message"),
        memo=single.get("memo"),
    )


def amount_to_base_units(amount: str, decimals: int) -> int:
    """Convert a URI amount in user units to base units for a mint with ``decimals``.

    More fractional digits than ``decimals`` make the URI malformed (per spec),
    even when the extra digits are zeros.
    """
    if not _AMOUNT_RE.fullmatch(amount):
        raise MalformedUriError(f"amount {amount!r} is not a non-negative decimal")
    whole, _, fraction = amount.partition(".")
    if len(fraction) > decimals:
        raise MalformedUriError(
            f"amount {amount} has {len(fraction)} decimal places; the token allows {decimals}"
        )
    # Integer arithmetic: exact for any length, unlike a Decimal context.
    scale: int = 10**decimals
    return int(whole) * scale + int(fraction.ljust(decimals, "0") or "0")
