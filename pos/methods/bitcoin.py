"""BTC: BIP84 account public keys, per-invoice receive addresses, BIP21 payment URIs.

The server only ever holds the merchant's account-level extended PUBLIC key; addresses are
m/84'/coin'/account'/0/<index> P2WPKH, derived here with embit (python-bitcoinlib has no BIP32).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import quote

from embit import base58, bip32
from embit import script as btc_script
from embit.base import EmbitError
from embit.networks import NETWORKS

from pos.errors import ValidationError
from pos.i18n import N_
from pos.money import SAT_PER_BTC, format_units
from pos.settings import BitcoinNetwork

# SLIP-132 version bytes -> (kind, is_private, is_testnet-family)
_VERSIONS: dict[bytes, tuple[str, bool, bool]] = {
    bytes.fromhex("0488b21e"): ("xpub", False, False),
    bytes.fromhex("04b24746"): ("zpub", False, False),
    bytes.fromhex("049d7cb2"): ("ypub", False, False),
    bytes.fromhex("0295b43f"): ("Ypub", False, False),
    bytes.fromhex("02aa7ed3"): ("Zpub", False, False),
    bytes.fromhex("043587cf"): ("tpub", False, True),
    bytes.fromhex("045f1cf6"): ("vpub", False, True),
    bytes.fromhex("044a5262"): ("upub", False, True),
    bytes.fromhex("024289ef"): ("Upub", False, True),
    bytes.fromhex("02575483"): ("Vpub", False, True),
    bytes.fromhex("0488ade4"): ("xprv", True, False),
    bytes.fromhex("04b2430c"): ("zprv", True, False),
    bytes.fromhex("049d7878"): ("yprv", True, False),
    bytes.fromhex("04358394"): ("tprv", True, True),
    bytes.fromhex("045f18bc"): ("vprv", True, True),
    bytes.fromhex("044a4e28"): ("uprv", True, True),
}
_ACCEPTED_KINDS = {"xpub", "zpub", "tpub", "vpub"}
_EMBIT_NETWORK = {
    BitcoinNetwork.MAINNET: "main",
    BitcoinNetwork.TESTNET: "test",
    BitcoinNetwork.SIGNET: "signet",
    BitcoinNetwork.REGTEST: "regtest",
}
BIP84_ACCOUNT_DEPTH = 3
GAP_LIMIT = 20
# Bitcoin Core's dust threshold for a P2WPKH output at the default 3 sat/vB dust relay fee:
# wallets refuse to create a smaller output and nodes do not relay one, so an output below it
# never counts as a payment and a remainder is never requested below it.
DUST_LIMIT_SAT = 294


@dataclass(frozen=True)
class AccountKey:
    """A validated BIP84 account public key."""

    text: str
    kind: str
    network: BitcoinNetwork

    @property
    def identity(self) -> str:
        """The account itself, whatever the encoding (xpub/zpub): chain code + public key."""
        return account_identity(self.text)


def parse_account_xpub(text: str, network: BitcoinNetwork) -> AccountKey:
    """Validate a merchant's BIP84 account public key for `network`; precise errors otherwise."""
    cleaned = text.strip()
    if not cleaned:
        raise ValidationError(N_("paste the account public key (zpub or vpub)"), field="btc_xpub")
    try:
        raw = base58.decode_check(cleaned)
    except (ValueError, IndexError):
        raise ValidationError(
            N_(
                "this is not a valid extended public key: its checksum does not match "
                "(a character was probably mistyped or cut off)"
            ),
            field="btc_xpub",
        ) from None
    if len(raw) != 78:
        raise ValidationError(
            N_("an extended key is 78 bytes; this one decodes to %(count)d"),
            field="btc_xpub",
            count=len(raw),
        )
    version = raw[:4]
    if version not in _VERSIONS:
        raise ValidationError(
            N_("unknown extended key version %(version)s; expected a zpub or vpub"),
            field="btc_xpub",
            version=version.hex(),
        )
    kind, is_private, testnet_family = _VERSIONS[version]
    if is_private:
        raise ValidationError(
            N_(
                "this is an extended PRIVATE key (%(kind)s). Never share it with anyone; "
                "CryptoCity Pay only needs the account's public key (zpub/vpub)"
            ),
            field="btc_xpub",
            kind=kind,
        )
    if kind not in _ACCEPTED_KINDS:
        # Two whole sentences, not a word put into one: each translates as a sentence.
        wrong_kind = (
            N_(
                "a %(kind)s describes multisig addresses; export the native SegWit (BIP84) "
                "account key, a zpub or vpub"
            )
            if kind[0].isupper()
            else N_(
                "a %(kind)s describes wrapped SegWit (BIP49) addresses; export the native "
                "SegWit (BIP84) account key, a zpub or vpub"
            )
        )
        raise ValidationError(wrong_kind, field="btc_xpub", kind=kind)
    wants_testnet = network is not BitcoinNetwork.MAINNET
    if testnet_family != wants_testnet:
        wrong_network = (
            N_(
                "this %(kind)s is for a test network but the zone runs on %(network)s; "
                "export a xpub or zpub"
            )
            if testnet_family
            else N_(
                "this %(kind)s is for mainnet but the zone runs on %(network)s; "
                "export a tpub or vpub"
            )
        )
        raise ValidationError(wrong_network, field="btc_xpub", kind=kind, network=network.value)
    depth = raw[4]
    if depth != BIP84_ACCOUNT_DEPTH:
        raise ValidationError(
            N_(
                "this key is at depth %(depth)d; export the account key m/84'/coin'/account' "
                "(depth 3) from your wallet"
            ),
            field="btc_xpub",
            depth=depth,
        )
    try:
        bip32.HDKey.parse(raw)
    # embit says an off-curve point with its own EmbitError (ECError), not a ValueError.
    except (ValueError, TypeError, AssertionError, EmbitError) as exc:
        raise ValidationError(
            N_("the key's public point is invalid: %(reason)s"), field="btc_xpub", reason=str(exc)
        ) from None
    return AccountKey(cleaned, kind, network)


def account_identity(xpub: str) -> str:
    """Hex of the chain code and compressed public key: equal for every SLIP-132 encoding."""
    raw: bytes = base58.decode_check(xpub)
    return (raw[13:45] + raw[45:78]).hex()


@lru_cache(maxsize=4096)
def _receive_chain(xpub: str) -> bip32.HDKey:
    # m/84'/c'/a'/0: cached because every invoice of a merchant derives from it.
    return bip32.HDKey.parse(base58.decode_check(xpub)).derive([0])


def derive_address(xpub: str, index: int, network: BitcoinNetwork) -> str:
    """The P2WPKH receive address at `index` (m/84'/c'/a'/0/index)."""
    if not 0 <= index < 2**31:
        raise ValidationError(N_("address index out of range"), field="index")
    child = _receive_chain(xpub).derive([index])
    return str(btc_script.p2wpkh(child.key).address(NETWORKS[_EMBIT_NETWORK[network]]))


def first_addresses(xpub: str, network: BitcoinNetwork, count: int = 5) -> list[str]:
    """What the owner compares with their wallet at onboarding."""
    return [derive_address(xpub, i, network) for i in range(count)]


def bip21_uri(address: str, amount_sat: int, label: str = "", message: str = "") -> str:
    """`bitcoin:<addr>?amount=<BTC>&label=…&message=…` (BIP21; amount in BTC, no exponent)."""
    params = [f"amount={format_units(amount_sat, 8)}"]
    if label:
        params.append(f"label={quote(label, safe='')}")
    if message:
        params.append(f"message={quote(message, safe='')}")
    return f"bitcoin:{address}?{'&'.join(params)}"


def sat_to_btc_text(amount_sat: int) -> str:
    return f"{amount_sat // SAT_PER_BTC}.{amount_sat % SAT_PER_BTC:08d}"
