"""Refund destinations: BIP173/BIP350 vectors, demo-wallet addresses, Solana wallets and ATAs."""

from __future__ import annotations

import hashlib

import pytest
from embit import base58, bip32, ec, script
from embit import bech32 as embit_bech32
from embit.networks import NETWORKS
from solders.keypair import Keypair
from solders.pubkey import Pubkey
from spl.token.constants import TOKEN_2022_PROGRAM_ID, TOKEN_PROGRAM_ID
from spl.token.instructions import get_associated_token_address

from pos.demo_wallets import demo_account_xpub, demo_solana_wallet
from pos.errors import ValidationError
from pos.methods.bitcoin import derive_address
from pos.refund_destinations import (
    SYSTEM_PROGRAM,
    Bech32Variant,
    decode_bech32,
    kzte_refund_token_account,
    parse_btc_refund_address,
    parse_kzte_refund_wallet,
)
from pos.settings import BitcoinNetwork
from sandbox.solana import spl as sandbox_spl

MAIN = BitcoinNetwork.MAINNET
TEST = BitcoinNetwork.TESTNET
SIGNET = BitcoinNetwork.SIGNET
REGTEST = BitcoinNetwork.REGTEST
EMBIT_NET = {MAIN: "main", TEST: "test", SIGNET: "signet", REGTEST: "regtest"}


SIZE = "wrong size or version"
BAD_CHAR = "character is wrong"


def _refused(text: str, network: BitcoinNetwork = MAIN) -> str:
    with pytest.raises(ValidationError) as info:
        parse_btc_refund_address(text, network)
    assert info.value.field == "address"
    return str(info.value)


# --- BIP173 / BIP350 string vectors (bitcoin/bips bip-0173 and bip-0350, "Test vectors") ------

BIP173_VALID_BECH32 = [
    "A12UEL5L",
    "a12uel5l",
    "an83characterlonghumanreadablepartthatcontainsthenumber1andtheexcludedcharactersbio1tt5tgs",
    "abcdef1qpzry9x8gf2tvdw0s3jn54khce6mua7lmqqqxw",
    "11qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqc8247j",
    "split1checkupstagehandshakeupstreamerranterredcaperred2y9e3w",
    "?1ezyfcl",
]
BIP350_VALID_BECH32M = [
    "A1LQFN3A",
    "a1lqfn3a",
    "an83characterlonghumanreadablepartthatcontainsthetheexcludedcharactersbioandnumber11sg7hg6",
    "abcdef1l7aum6echk45nj3s0wdvt2fg8x9yrzpqzd3ryx",
    "11llllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllludsr8",
    "split1checkupstagehandshakeupstreamerranterredcaperredlc445v",
    "?1v759aa",
]


@pytest.mark.parametrize("text", BIP173_VALID_BECH32)
def test_bip173_valid_strings_decode_as_bech32(text: str) -> None:
    assert decode_bech32(text)[2] is Bech32Variant.BECH32


@pytest.mark.parametrize("text", BIP350_VALID_BECH32M)
def test_bip350_valid_strings_decode_as_bech32m(text: str) -> None:
    assert decode_bech32(text)[2] is Bech32Variant.BECH32M


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        # BIP173 invalid Bech32
        ("\x201nwldj5", "character out of range"),
        ("\x7f1axkwrx", "character out of range"),
        ("\x801eym55h", "character out of range"),
        (
            "an84characterslonghumanreadablepartthatcontainsthenumber1andtheexcludedcharactersbio"
            "1569pvx",
            "too long",
        ),
        ("pzry9x0s0muk", "no separator"),
        ("1pzry9x0s0muk", "empty human-readable part"),
        ("x1b4n0q5v", "invalid data character"),
        ("li1dgmt3", "checksum too short"),
        ("de1lg7wt\xff", "character out of range"),
        ("A1G7SGD8", "checksum mismatch"),
        ("10a06t8", "empty human-readable part"),
        ("1qzzfhee", "empty human-readable part"),
        # BIP350 invalid Bech32m
        ("\x201xj0phk", "character out of range"),
        ("\x7f1g6xzxy", "character out of range"),
        ("\x801vctc34", "character out of range"),
        (
            "an84characterslonghumanreadablepartthatcontainsthetheexcludedcharactersbioandnumber1"
            "1d6pts4",
            "too long",
        ),
        ("qyrz8wqd2c9m", "no separator"),
        ("1qyrz8wqd2c9m", "empty human-readable part"),
        ("y1b0jsk6g", "invalid data character"),
        ("lt1igcx5c0", "invalid data character"),
        ("in1muywd", "checksum too short"),
        ("mm1crxm3i", "invalid data character"),
        ("au1s5cgom", "invalid data character"),
        ("M1VUXWEZ", "checksum mismatch"),
        ("16plkw9", "empty human-readable part"),
        ("1p2gdwpf", "empty human-readable part"),
    ],
)
def test_bip173_bip350_invalid_strings_are_refused_for_the_stated_reason(
    text: str, reason: str
) -> None:
    with pytest.raises(ValueError, match=reason):
        decode_bech32(text)


# --- BIP350 segwit address vectors -------------------------------------------------------------

# (address, network, scriptPubKey hex) for the BIP350 valid addresses we can pay.
BIP350_PAYABLE = [
    (
        "BC1QW508D6QEJXTDG4Y5R3ZARVARY0C5XW7KV8F3T4",
        MAIN,
        "0014751e76e8199196d454941c45d1b3a323f1433bd6",
    ),
    (
        "tb1qrp33g0q5c5txsp9arysrx4k6zdkfs4nce4xj0gdcccefvpysxf3q0sl5k7",
        TEST,
        "00201863143c14c5166804bd19203356da136c985678cd4d27a1b8c6329604903262",
    ),
    (
        "tb1qqqqqp399et2xygdj5xreqhjjvcmzhxw4aywxecjdzew6hylgvsesrxh6hy",
        SIGNET,
        "0020000000c4a5cad46221b2a187905e5266362b99d5e91c6ce24d165dab93e86433",
    ),
    (
        "tb1pqqqqp399et2xygdj5xreqhjjvcmzhxw4aywxecjdzew6hylgvsesf3hn0c",
        TEST,
        "5120000000c4a5cad46221b2a187905e5266362b99d5e91c6ce24d165dab93e86433",
    ),
    (
        "bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqzk5jj0",
        MAIN,
        "512079be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798",
    ),
]


@pytest.mark.parametrize(("address", "network", "spk"), BIP350_PAYABLE)
def test_bip350_valid_addresses_are_accepted_in_lower_case(
    address: str, network: BitcoinNetwork, spk: str
) -> None:
    accepted = parse_btc_refund_address(address, network)
    assert accepted == address.lower()
    # The accepted text means the vector's script (read back by embit's own decoder).
    assert script.address_to_scriptpubkey(accepted).data.hex() == spk


@pytest.mark.parametrize(
    "address",
    [
        # Valid BIP350 strings whose witness version / length nothing spends today.
        "bc1pw508d6qejxtdg4y5r3zarvary0c5xw7kw508d6qejxtdg4y5r3zarvary0c5xw7kt5nd6y",  # v1, 40 B
        "BC1SW50QGDZ25J",  # v16, 2 bytes
        "bc1zw508d6qejxtdg4y5r3zarvaryvaxxpcs",  # v2, 16 bytes
    ],
)
def test_unknown_witness_versions_and_lengths_are_refused(address: str) -> None:
    assert "SegWit version" in _refused(address) and "no wallet can spend" in _refused(address)


@pytest.mark.parametrize(
    ("address", "network", "fragment"),
    [
        # BIP350 invalid addresses, with the reason the BIP gives
        ("tc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vq5zuyut", TEST, "not a Bitcoin"),
        ("bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqh2y7hd", MAIN, "SegWit version"),
        ("tb1z0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqglt7rf", TEST, "SegWit version"),
        ("BC1S0XLXVLHEMJA6C4DQV22UAPCTQUPFHLXM9H8Z3K2E72Q4K9HCZ7VQ54WELL", MAIN, "SegWit version"),
        ("bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kemeawh", MAIN, "SegWit version"),
        ("tb1q0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vq24jc47", TEST, "SegWit version"),
        ("bc1p38j9r5y49hruaue7wxjce0updqjuyyx0kh56v8s25huc6995vvpql3jow4", MAIN, BAD_CHAR),
        ("BC130XLXVLHEMJA6C4DQV22UAPCTQUPFHLXM9H8Z3K2E72Q4K9HCZ7VQ7ZWS8R", MAIN, SIZE),
        ("bc1pw5dgrnzv", MAIN, SIZE),
        (
            "bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7v8n0nx0muaewav253zgeav",
            MAIN,
            SIZE,
        ),
        ("BC1QR508D6QEJXTDG4Y5R3ZARVARYV98GJ9P", MAIN, "20 or 32 bytes, not 16"),
        ("tb1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vq47Zagq", TEST, "mixes capital"),
        ("bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7v07qwwzcrf", MAIN, SIZE),
        ("tb1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vpggkg4j", TEST, SIZE),
        ("bc1gmk9yu", MAIN, "no data"),
        # BIP173 invalid addresses
        ("tc1qw508d6qejxtdg4y5r3zarvary0c5xw7kg3g4ty", TEST, "not a Bitcoin"),
        ("bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t5", MAIN, "checksum does not match"),
        ("BC13W508D6QEJXTDG4Y5R3ZARVARY0C5XW7KN40WF2", MAIN, SIZE),
        ("bc1rw5uspcuh", MAIN, SIZE),
        (
            "bc10w508d6qejxtdg4y5r3zarvary0c5xw7kw508d6qejxtdg4y5r3zarvary0c5xw7kw5rljs90",
            MAIN,
            SIZE,
        ),
        ("tb1qrp33g0q5c5txsp9arysrx4k6zdkfs4nce4xj0gdcccefvpysxf3q0sL5k7", TEST, "mixes capital"),
        ("bc1zw508d6qejxtdg4y5r3zarvaryvqyzf3du", MAIN, SIZE),
        ("tb1qrp33g0q5c5txsp9arysrx4k6zdkfs4nce4xj0gdcccefvpysxf3pjxtptv", TEST, SIZE),
        # BIP173's v1+ examples carry a Bech32 checksum: invalid since BIP350
        (
            "bc1pw508d6qejxtdg4y5r3zarvary0c5xw7kw508d6qejxtdg4y5r3zarvary0c5xw7k7grplx",
            MAIN,
            "SegWit version",
        ),
        ("BC1SW50QA3JX3S", MAIN, "SegWit version"),
        ("bc1zw508d6qejxtdg4y5r3zarvaryvg6kdaj", MAIN, "SegWit version"),
    ],
)
def test_bip173_bip350_invalid_addresses_are_refused_with_the_reason(
    address: str, network: BitcoinNetwork, fragment: str
) -> None:
    assert fragment in _refused(address, network)


def test_v0_with_a_bech32m_checksum_names_the_checksum_problem() -> None:
    message = _refused("bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kemeawh")
    assert "checksum does not match its SegWit version" in message


def test_a_taproot_program_that_is_not_a_curve_point_is_refused() -> None:
    for x in (0, 5, 7, 2**256 - 1):  # x = 2^256-1 is above the field prime
        program = x.to_bytes(32, "big")
        with pytest.raises(ec.ECError):  # embit agrees: no such public key
            ec.PublicKey.parse(b"\x02" + program)
        address = embit_bech32.encode("bc", 1, program)
        assert "holds no valid key" in _refused(address)
    # x = 1 is a curve point: the same construction is accepted.
    good = embit_bech32.encode("bc", 1, (1).to_bytes(32, "big"))
    assert parse_btc_refund_address(good, MAIN) == good


# --- Addresses of the demo wallets on every network --------------------------------------------


def _demo_addresses(network: BitcoinNetwork) -> dict[str, str]:
    xpub = demo_account_xpub("coffee", network)
    key = bip32.HDKey.parse(base58.decode_check(xpub)).derive([0, 3]).key
    net = NETWORKS[EMBIT_NET[network]]
    return {
        "p2wpkh": derive_address(xpub, 3, network),
        "p2pkh": script.p2pkh(key).address(net),
        "p2sh": script.p2sh(script.p2wpkh(key)).address(net),
        "p2wsh": script.p2wsh(script.p2pkh(key)).address(net),
        "p2tr": script.p2tr(key).address(net),
    }


@pytest.mark.parametrize("network", list(BitcoinNetwork))
def test_every_address_type_of_the_demo_wallet_is_accepted_on_its_network(
    network: BitcoinNetwork,
) -> None:
    addresses = _demo_addresses(network)
    test_legacy: dict[str, tuple[str, ...]] = {"p2pkh": ("m", "n"), "p2sh": ("2",)}
    hrp = {MAIN: "bc1", TEST: "tb1", SIGNET: "tb1", REGTEST: "bcrt1"}[network]
    starts: dict[str, tuple[str, ...]] = {
        "p2wpkh": (hrp + "q",),
        "p2wsh": (hrp + "q",),
        "p2tr": (hrp + "p",),
    }
    starts |= {"p2pkh": ("1",), "p2sh": ("3",)} if network is MAIN else test_legacy
    for kind, address in addresses.items():
        assert address.startswith(starts[kind]), (kind, address)
        assert parse_btc_refund_address(address, network) == address
        assert parse_btc_refund_address(f"  {address}\n", network) == address
        assert parse_btc_refund_address(f"bitcoin:{address}", network) == address


@pytest.mark.parametrize(
    ("belongs_to", "zone", "named"),
    [
        (MAIN, REGTEST, "mainnet address"),
        (MAIN, TEST, "mainnet address"),
        (TEST, MAIN, "testnet or signet address"),
        (SIGNET, REGTEST, "testnet or signet address"),
        (REGTEST, SIGNET, "regtest address"),
        (REGTEST, MAIN, "regtest address"),
    ],
)
def test_a_segwit_address_of_another_network_names_its_network(
    belongs_to: BitcoinNetwork, zone: BitcoinNetwork, named: str
) -> None:
    addresses = _demo_addresses(belongs_to)
    for kind in ("p2wpkh", "p2wsh", "p2tr"):
        message = _refused(addresses[kind], zone)
        assert named in message and f"paid on {zone}" in message


def test_a_legacy_address_of_another_network_names_its_network() -> None:
    for kind in ("p2pkh", "p2sh"):
        assert "a mainnet address" in _refused(_demo_addresses(MAIN)[kind], REGTEST)
        assert "a test network address" in _refused(_demo_addresses(TEST)[kind], MAIN)


def test_legacy_test_addresses_serve_every_test_network() -> None:
    # testnet, signet and regtest share the base58 version bytes 0x6f / 0xc4.
    for kind in ("p2pkh", "p2sh"):
        address = _demo_addresses(TEST)[kind]
        assert parse_btc_refund_address(address, REGTEST) == address
        assert parse_btc_refund_address(address, SIGNET) == address


def test_well_known_mainnet_legacy_addresses_are_accepted() -> None:
    genesis = "1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa"  # the genesis block's coinbase
    p2sh = "3J98t1WpEZ73CNmQviecrnyiWrnqRhWNLy"
    assert parse_btc_refund_address(genesis, MAIN) == genesis
    assert parse_btc_refund_address(p2sh, MAIN) == p2sh
    assert script.address_to_scriptpubkey(p2sh).script_type() == "p2sh"


# --- Input forms and the remaining error paths -------------------------------------------------


def test_an_upper_case_bech32_uri_is_normalised() -> None:
    address = _demo_addresses(MAIN)["p2wpkh"]
    assert parse_btc_refund_address(f"BITCOIN:{address.upper()}", MAIN) == address


@pytest.mark.parametrize(
    "suffix", ["?amount=0.001", "?label=Refund", "?", "?amount=1&message=hi", "#x"]
)
def test_a_uri_with_anything_but_the_address_is_refused(suffix: str) -> None:
    address = _demo_addresses(MAIN)["p2wpkh"]
    assert "enter only the address" in _refused(f"bitcoin:{address}{suffix}")


@pytest.mark.parametrize("text", ["", "   ", "bitcoin:", " bitcoin:  "])
def test_an_empty_entry_asks_for_the_address(text: str) -> None:
    assert "enter the Bitcoin address" in _refused(text)


def test_an_address_with_a_space_inside_is_refused() -> None:
    address = _demo_addresses(MAIN)["p2wpkh"]
    assert "no spaces" in _refused(f"{address[:10]} {address[10:]}")


def test_a_mixed_case_demo_address_is_refused() -> None:
    address = _demo_addresses(MAIN)["p2wpkh"]
    assert "mixes capital and small letters" in _refused(address[:6].upper() + address[6:])


def test_a_mistyped_bech32_character_fails_the_checksum() -> None:
    address = _demo_addresses(MAIN)["p2tr"]
    typo = address[:-1] + ("q" if address[-1] != "q" else "p")
    assert "checksum does not match" in _refused(typo)


def test_a_mistyped_legacy_character_fails_the_checksum() -> None:
    address = _demo_addresses(MAIN)["p2pkh"]
    typo = address[:-1] + ("2" if address[-1] != "2" else "3")
    assert "checksum does not match" in _refused(typo)


def test_a_legacy_string_with_foreign_characters_is_refused() -> None:
    assert "characters no address uses" in _refused("1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfN0")


def test_a_too_short_base58_string_is_refused() -> None:
    assert "too short" in _refused("1A1z")


def test_a_private_key_is_refused_with_a_warning() -> None:
    # WIF of the private key 1 (compressed), mainnet.
    wif = base58.encode_check(b"\x80" + (1).to_bytes(32, "big") + b"\x01")
    assert "PRIVATE key" in _refused(wif)


def test_an_extended_public_key_is_not_an_address() -> None:
    assert "wrong length or prefix" in _refused(demo_account_xpub("coffee", MAIN))


def test_a_base58check_string_with_an_unknown_prefix_is_refused() -> None:
    litecoin_style = base58.encode_check(b"\x30" + bytes(20))  # version 0x30: an "L…" address
    assert "wrong length or prefix" in _refused(litecoin_style)


def test_another_coins_bech32_address_is_not_a_bitcoin_address() -> None:
    ltc = embit_bech32.encode("ltc", 0, bytes(20))
    assert "not a Bitcoin address" in _refused(ltc)


# --- KZTE wallets ------------------------------------------------------------------------------

MINT = str(Keypair.from_seed(hashlib.sha256(b"refund test mint").digest()).pubkey())
TOKEN_PROGRAM = str(TOKEN_PROGRAM_ID)
TOKEN_2022_PROGRAM = str(TOKEN_2022_PROGRAM_ID)


def _wallet_refused(text: str, mint: str | None = MINT) -> str:
    with pytest.raises(ValidationError) as info:
        parse_kzte_refund_wallet(text, mint=mint)
    assert info.value.field == "wallet"
    return str(info.value)


def test_a_real_wallet_is_accepted_and_canonical() -> None:
    wallet = demo_solana_wallet("coffee")
    assert parse_kzte_refund_wallet(f" {wallet}\n", mint=MINT) == wallet
    assert parse_kzte_refund_wallet(wallet, mint=None) == wallet


def test_a_token_account_pda_is_not_a_wallet() -> None:
    ata = kzte_refund_token_account(demo_solana_wallet("coffee"), MINT)
    assert not Pubkey.from_string(ata).is_on_curve()
    assert "not a wallet address" in _wallet_refused(ata)


def test_a_program_derived_address_of_any_program_is_not_a_wallet() -> None:
    pda, _bump = Pubkey.find_program_address([b"vault"], Pubkey.from_string(TOKEN_PROGRAM))
    assert "not a wallet address" in _wallet_refused(str(pda))


def test_the_kzte_mint_is_not_a_wallet() -> None:
    assert Pubkey.from_string(MINT).is_on_curve()  # the curve test alone would let it through
    assert "the KZTE token itself" in _wallet_refused(MINT)


@pytest.mark.parametrize(
    ("program", "named"),
    [
        (SYSTEM_PROGRAM, "system program"),
        (TOKEN_PROGRAM, "SPL Token program"),
        (TOKEN_2022_PROGRAM, "Token-2022 program"),
        ("ATokenGPvbdGVxr1b2hvZbsiqW5xWH25efTNsLJA8knL", "associated token account program"),
        ("MemoSq4gqABAXKb96qnH8TysNcWxMyWCqXgDLGmfcHr", "Memo program"),
    ],
)
def test_program_ids_are_not_wallets(program: str, named: str) -> None:
    assert Pubkey.from_string(program).is_on_curve()  # again: only the list catches these
    message = _wallet_refused(program)
    assert named in message and "not a wallet" in message


@pytest.mark.parametrize("text", ["", "   "])
def test_an_empty_wallet_is_asked_for(text: str) -> None:
    assert "a Solana address is required" in _wallet_refused(text)


@pytest.mark.parametrize("text", ["0OIl" * 8, "abc", _demo_addresses(MAIN)["p2wpkh"], "4" * 50])
def test_a_string_that_is_not_base58_32_bytes_is_refused(text: str) -> None:
    assert "is not a Solana address" in _wallet_refused(text)


def test_a_malformed_mint_is_reported_as_the_mint() -> None:
    with pytest.raises(ValidationError) as info:
        parse_kzte_refund_wallet(demo_solana_wallet("coffee"), mint="not-a-mint")
    assert info.value.field == "mint"


# --- The refund's token account ----------------------------------------------------------------


def _ata_by_hand(owner: str, mint: str, token_program: str) -> str:
    """The documented PDA search: highest bump whose sha256 is off the ed25519 curve."""
    ata_program = bytes(Pubkey.from_string("ATokenGPvbdGVxr1b2hvZbsiqW5xWH25efTNsLJA8knL"))
    seeds = b"".join(bytes(Pubkey.from_string(s)) for s in (owner, token_program, mint))
    for bump in range(255, -1, -1):
        digest = hashlib.sha256(
            seeds + bytes([bump]) + ata_program + b"ProgramDerivedAddress"
        ).digest()
        candidate = Pubkey(digest)
        if not candidate.is_on_curve():
            return str(candidate)
    raise AssertionError("no bump found")


@pytest.mark.parametrize("token_program", [TOKEN_PROGRAM, TOKEN_2022_PROGRAM])
@pytest.mark.parametrize("slug", ["coffee", "books"])
def test_the_refund_token_account_is_the_wallets_ata(slug: str, token_program: str) -> None:
    wallet = demo_solana_wallet(slug)
    ata = kzte_refund_token_account(wallet, MINT, token_program)
    assert ata == _ata_by_hand(wallet, MINT, token_program)
    spl_ata = get_associated_token_address(
        Pubkey.from_string(wallet), Pubkey.from_string(MINT), Pubkey.from_string(token_program)
    )
    assert ata == str(spl_ata)
    sandbox_ata = sandbox_spl.associated_token_address(
        Pubkey.from_string(wallet), Pubkey.from_string(MINT), Pubkey.from_string(token_program)
    )
    assert ata == str(sandbox_ata)


def test_the_default_token_program_is_classic_spl_token_like_the_sandbox_mint() -> None:
    wallet = demo_solana_wallet("coffee")
    classic = kzte_refund_token_account(wallet, MINT)
    assert classic == kzte_refund_token_account(wallet, MINT, TOKEN_PROGRAM)
    assert classic != kzte_refund_token_account(wallet, MINT, TOKEN_2022_PROGRAM)


def test_a_token_account_cannot_be_the_owner_of_the_refund_account() -> None:
    ata = kzte_refund_token_account(demo_solana_wallet("coffee"), MINT)
    with pytest.raises(ValidationError, match="not a wallet address"):
        kzte_refund_token_account(ata, MINT)


def test_the_mint_cannot_own_the_refund_account() -> None:
    with pytest.raises(ValidationError, match="the KZTE token itself"):
        kzte_refund_token_account(MINT, MINT)


def test_an_unknown_token_program_is_refused() -> None:
    with pytest.raises(ValidationError, match="SPL Token or Token-2022") as info:
        kzte_refund_token_account(demo_solana_wallet("coffee"), MINT, SYSTEM_PROGRAM)
    assert info.value.field == "token_program"
