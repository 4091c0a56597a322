"""QR payloads: BIP21 URIs upper-cased into alphanumeric mode, everything else as it is."""

from __future__ import annotations

from urllib.parse import parse_qs, unquote, urlsplit

import qrcode
from qrcode.constants import ERROR_CORRECT_M
from qrcode.util import MODE_8BIT_BYTE, MODE_ALPHA_NUM

from pos import qr
from pos.demo_wallets import demo_account_xpub
from pos.methods import bitcoin
from pos.settings import BitcoinNetwork

ADDRESS = bitcoin.derive_address(
    demo_account_xpub("qr", BitcoinNetwork.MAINNET), 0, BitcoinNetwork.MAINNET
)


def _payload(uri: str) -> list[tuple[int, str]]:
    """What the QR code carries: (mode, text) of each segment, as the encoder wrote them."""
    code = qr._make(uri)
    return [(chunk.mode, chunk.data.decode("utf-8")) for chunk in code.data_list]


def _parse_bip21(text: str) -> tuple[str, str, dict[str, list[str]]]:
    """(address, amount, params) as a wallet reads them: the scheme case-insensitive, a bech32
    address in either case (normalised to lower), the query as it is."""
    parts = urlsplit(text)
    assert parts.scheme.lower() == "bitcoin"
    params = parse_qs(parts.query)
    return parts.path.lower(), params["amount"][0], params


def test_bip21_is_upper_case_in_alphanumeric_mode_and_parses_back() -> None:
    assert ADDRESS.startswith("bc1q")
    uri = bitcoin.bip21_uri(ADDRESS, 5_556, label="Shop A", message="Order #7")
    segments = _payload(uri)
    assert segments[0] == (MODE_ALPHA_NUM, f"BITCOIN:{ADDRESS.upper()}")
    decoded = "".join(text for _mode, text in segments)
    address, amount, params = _parse_bip21(decoded)
    assert (address, amount) == (ADDRESS, "0.00005556")
    # The case-sensitive text a wallet shows keeps its case.
    assert unquote(params["label"][0]) == "Shop A"
    assert unquote(params["message"][0]) == "Order #7"


def test_a_bare_bip21_uri_is_all_alphanumeric_and_a_smaller_code() -> None:
    uri = f"bitcoin:{ADDRESS}"
    assert _payload(uri) == [(MODE_ALPHA_NUM, f"BITCOIN:{ADDRESS.upper()}")]
    as_bytes = qrcode.QRCode(error_correction=ERROR_CORRECT_M)
    as_bytes.add_data(uri)
    as_bytes.make(fit=True)
    assert qr._make(uri).version < as_bytes.version


def test_the_upper_case_head_makes_a_with_amount_code_no_larger() -> None:
    uri = bitcoin.bip21_uri(ADDRESS, 123_456_789)
    as_bytes = qrcode.QRCode(error_correction=ERROR_CORRECT_M)
    as_bytes.add_data(uri)
    as_bytes.make(fit=True)
    assert qr._make(uri).version <= as_bytes.version


def test_regtest_addresses_are_upper_cased_too() -> None:
    address = bitcoin.derive_address(
        demo_account_xpub("qr", BitcoinNetwork.REGTEST), 0, BitcoinNetwork.REGTEST
    )
    segments = _payload(bitcoin.bip21_uri(address, 1_000))
    assert segments[0] == (MODE_ALPHA_NUM, f"BITCOIN:{address.upper()}")


def test_case_sensitive_payloads_are_left_as_they_are() -> None:
    legacy = "bitcoin:1BoatSLRHtKNngkdXEeobR76b53LETtpyT?amount=0.1"  # base58: case-sensitive
    solana = "solana:7xKXtg2CW87d97TXJSDpbD5jBkheTqA83TZRuJosgAsU?amount=1&label=Shop"
    otpauth = "otpauth://totp/CryptoCity:ops?secret=JBSWY3DPEHPK3PXP&issuer=CryptoCity"
    for uri in (legacy, solana, otpauth):
        segments = _payload(uri)
        assert "".join(text for _mode, text in segments) == uri
        assert all(mode != MODE_ALPHA_NUM or text.isupper() for mode, text in segments)
    assert qr.payload_segments(legacy) == [qr.Segment(legacy, alphanumeric=False)]


def test_mixed_case_bech32_is_not_touched() -> None:
    mixed = "bitcoin:" + ADDRESS[:10] + ADDRESS[10:].upper()
    assert qr.payload_segments(mixed) == [qr.Segment(mixed, alphanumeric=False)]


def test_png_and_svg_render() -> None:
    uri = bitcoin.bip21_uri(ADDRESS, 5_556)
    assert qr.qr_png(uri).startswith(b"\x89PNG")
    assert "<svg" in qr.qr_svg(uri)
    assert MODE_8BIT_BYTE in {mode for mode, _t in _payload(uri)}
