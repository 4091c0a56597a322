"""QR codes for payment URIs, as PNG bytes or SVG text.

A BIP21 URI is drawn with its scheme and address in upper case (`BITCOIN:BC1Q…?amount=…`), the
way BIP173 recommends for QR codes: upper-case letters, digits and `:` are all in the QR
alphanumeric set (5.5 bits a character instead of 8), so the code has fewer, larger modules and
scans more easily. It stays the same payment request:
- the scheme is case-insensitive (RFC 3986 §3.1, which BIP21 builds on);
- a bech32 address is valid in all upper case, and decoders must accept it (BIP173); only mixed
  case is refused. Base58 addresses (`1…`, `3…`) are case-sensitive, so a URI with one is left
  exactly as it is (we only derive bech32 addresses, but the rule must not depend on that);
- the query (`?amount=…&label=…&message=…`) is left as it is: `?`, `=` and `&` are outside the
  alphanumeric set anyway, and a label or message is case-sensitive text a wallet shows. It is
  encoded as a second segment in byte mode.
Every other URI (Solana Pay, otpauth, links) is encoded as it is.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import qrcode
import qrcode.image.svg
from qrcode.constants import ERROR_CORRECT_M
from qrcode.util import MODE_ALPHA_NUM, QRData

BIP21_SCHEME = "bitcoin:"
# BIP173: the human-readable part of the networks we use, then the separator "1".
BECH32_PREFIXES = ("bc1", "tb1", "bcrt1")
BECH32_CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"


@dataclass(frozen=True)
class Segment:
    """A run of the QR payload and the mode it is encoded in."""

    text: str
    alphanumeric: bool


def _is_bech32(address: str) -> bool:
    """One case throughout, a known prefix, and only bech32 characters after the separator."""
    if address != address.lower() and address != address.upper():
        return False  # mixed case is invalid bech32: leave it for the wallet to refuse
    lower = address.lower()
    prefix = next((p for p in BECH32_PREFIXES if lower.startswith(p)), None)
    if prefix is None:
        return False
    data = lower[len(prefix) :]
    return len(data) >= 6 and all(c in BECH32_CHARSET for c in data)


def payload_segments(uri: str) -> list[Segment]:
    """How `uri` is put into the QR code: an upper-cased BIP21 head in alphanumeric mode and the
    rest (the query) as it is, or the whole URI as it is."""
    if uri[: len(BIP21_SCHEME)].lower() != BIP21_SCHEME:
        return [Segment(uri, alphanumeric=False)]
    address, separator, query = uri[len(BIP21_SCHEME) :].partition("?")
    if not _is_bech32(address):
        return [Segment(uri, alphanumeric=False)]
    segments = [Segment(f"{BIP21_SCHEME}{address}".upper(), alphanumeric=True)]
    if separator:
        segments.append(Segment(separator + query, alphanumeric=False))
    return segments


def _make(uri: str) -> qrcode.QRCode:
    code = qrcode.QRCode(error_correction=ERROR_CORRECT_M, border=4, box_size=8)
    for segment in payload_segments(uri):
        if segment.alphanumeric:
            code.add_data(QRData(segment.text.encode("ascii"), mode=MODE_ALPHA_NUM))
        else:
            code.add_data(segment.text)  # the library picks the modes of its parts
    code.make(fit=True)
    return code


def qr_png(uri: str) -> bytes:
    buffer = io.BytesIO()
    _make(uri).make_image().save(buffer)
    return buffer.getvalue()


def qr_svg(uri: str) -> str:
    image = _make(uri).make_image(image_factory=qrcode.image.svg.SvgPathImage)
    return image.to_string(encoding="unicode")  # type: ignore[no-any-return]
