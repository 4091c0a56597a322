import pytest
from embit import base58
from solders.keypair import Keypair
from solders.pubkey import Pubkey

from pos.errors import ValidationError
from pos.methods import bitcoin, kzte
from pos.settings import BitcoinNetwork

# BIP84's published test vector: mnemonic "abandon … about", account 0.
BIP84_ZPUB = (
    "zpub6rFR7y4Q2AijBEqTUquhVz398htDFrtymD9xYYfG1m4wAcvPhXNfE3EfH1r1ADqtfSdVCToUG868RvU"
    "UkgDKf31mGDtKsAYz2oz2AGutZYs"
)
BIP84_ZPRV = (
    "zprvAdG4iTXWBoARxkkzNpNh8r6Qag3irQB8PzEMkAFeTRXxHpbF9z4QgEvBRmfvqWvGp42t42nvgGpNgYSJ"
    "A9iefm1yYNZKEm7z6qUWCroSQnE"
)


def _with_version(key: str, version_hex: str) -> str:
    raw = bytearray(base58.decode_check(key))
    raw[:4] = bytes.fromhex(version_hex)
    return base58.encode_check(bytes(raw))


def test_bip84_vector_addresses() -> None:
    key = bitcoin.parse_account_xpub(BIP84_ZPUB, BitcoinNetwork.MAINNET)
    assert key.kind == "zpub"
    assert bitcoin.first_addresses(key.text, BitcoinNetwork.MAINNET, 2) == [
        "bc1qcr8te4kr609gcawutmrza0j4xv80jy8z306fyu",
        "bc1qnjg0jd8228aq7egyzacy8cys3knf9xvrerkf9g",
    ]


def test_xpub_spelling_of_the_same_account_derives_the_same_addresses() -> None:
    xpub = _with_version(BIP84_ZPUB, "0488b21e")
    assert bitcoin.derive_address(xpub, 0, BitcoinNetwork.MAINNET) == (
        "bc1qcr8te4kr609gcawutmrza0j4xv80jy8z306fyu"
    )


def test_regtest_addresses_use_bcrt() -> None:
    vpub = _with_version(BIP84_ZPUB, "045f1cf6")
    assert bitcoin.derive_address(vpub, 0, BitcoinNetwork.REGTEST).startswith("bcrt1q")
    assert bitcoin.derive_address(vpub, 0, BitcoinNetwork.TESTNET).startswith("tb1q")


@pytest.mark.parametrize(
    ("key", "network", "message"),
    [
        (BIP84_ZPRV, BitcoinNetwork.MAINNET, "PRIVATE key"),
        (BIP84_ZPUB[:-1] + "t", BitcoinNetwork.MAINNET, "checksum"),
        ("hello", BitcoinNetwork.MAINNET, "checksum"),
        ("", BitcoinNetwork.MAINNET, "paste"),
        (BIP84_ZPUB, BitcoinNetwork.REGTEST, "for mainnet but the zone runs on regtest"),
        (_with_version(BIP84_ZPUB, "045f1cf6"), BitcoinNetwork.MAINNET, "for a test network"),
        (_with_version(BIP84_ZPUB, "049d7cb2"), BitcoinNetwork.MAINNET, "BIP49"),
        (_with_version(BIP84_ZPUB, "02aa7ed3"), BitcoinNetwork.MAINNET, "multisig"),
        (_with_version(BIP84_ZPUB, "deadbeef"), BitcoinNetwork.MAINNET, "unknown"),
        (base58.encode_check(bytes(10)), BitcoinNetwork.MAINNET, "78 bytes"),
    ],
)
def test_malformed_keys_get_precise_errors(key: str, network: BitcoinNetwork, message: str) -> None:
    with pytest.raises(ValidationError, match=message) as info:
        bitcoin.parse_account_xpub(key, network)
    assert info.value.field == "btc_xpub"


def test_a_key_whose_point_is_off_the_curve_is_refused() -> None:
    # A valid checksum over a public key that is no point of secp256k1 (embit's ECError).
    raw = bytearray(base58.decode_check(BIP84_ZPUB))
    raw[45] = 5  # neither 02 nor 03: no compressed public key
    with pytest.raises(ValidationError, match="the key's public point is invalid") as info:
        bitcoin.parse_account_xpub(base58.encode_check(bytes(raw)), BitcoinNetwork.MAINNET)
    assert info.value.field == "btc_xpub"


def test_master_key_depth_is_refused() -> None:
    raw = bytearray(base58.decode_check(BIP84_ZPUB))
    raw[4] = 0
    with pytest.raises(ValidationError, match="depth 0"):
        bitcoin.parse_account_xpub(base58.encode_check(bytes(raw)), BitcoinNetwork.MAINNET)


def test_bip21_uri() -> None:
    uri = bitcoin.bip21_uri("bcrt1qexample", 5556, "Alatau Coffee", "Invoice 42 & tea")
    assert uri == (
        "bitcoin:bcrt1qexample?amount=0.00005556&label=Alatau%20Coffee"
        "&message=Invoice%2042%20%26%20tea"
    )


def test_solana_wallet_validation() -> None:
    wallet = str(Keypair().pubkey())
    pda, _ = Pubkey.find_program_address([b"seed"], Pubkey.new_unique())
    assert kzte.parse_wallet(f"  {wallet} ") == wallet
    with pytest.raises(ValidationError, match="off the ed25519 curve"):
        kzte.parse_wallet(str(pda))
    with pytest.raises(ValidationError, match="not a Solana address"):
        kzte.parse_wallet("0OIl-not-base58")
    with pytest.raises(ValidationError, match="not a Solana address"):
        kzte.parse_wallet("1111")  # valid base58, wrong length


def test_solana_pay_uri_follows_the_spec() -> None:
    uri = kzte.solana_pay_uri(
        "Recipient111",
        2_500_500_000,
        6,
        "Mint111",
        "Ref111",
        label="Qazaq Books",
        message="Order #7",
        memo="inv123",
    )
    assert uri == (
        "solana:Recipient111?amount=2500.5&spl-token=Mint111&reference=Ref111"
        "&label=Qazaq%20Books&message=Order%20%237&memo=inv123"
    )


def test_references_are_unique_keys() -> None:
    refs = {kzte.new_reference() for _ in range(100)}
    assert len(refs) == 100
    assert all(len(bytes(Pubkey.from_string(r))) == 32 for r in refs)
