"""Shopper wallet drills: pay a BIP21 URI, less/more/twice, double spend, URI errors."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from btcnode_helpers import Client, Key

from sandbox.bitcoin.errors import BadAmountError, InvalidURIError, WalletError, WrongNetworkError
from sandbox.bitcoin.node import RunningNode
from sandbox.bitcoin.wallet import parse_bip21, pay_uri

MERCHANT = Key("wallet-merchant")
THIEF = Key("wallet-thief")


def received(rpc: Client, txid: str, spk_hex: str) -> Decimal:
    tx = rpc("getrawtransaction", txid, True)
    return sum(
        (Decimal(o["value"]) for o in tx["vout"] if o["scriptPubKey"]["hex"] == spk_hex), Decimal(0)
    )


def test_pay_uri_mempool_then_block(node: RunningNode, rpc: Client, tmp_path: Path) -> None:
    uri = f"bitcoin:{MERCHANT.address}?amount=0.00123456&label=Coffee&message=Order%2042"
    (txid,) = pay_uri(uri, rpc_url=node.url, wallet_dir=tmp_path / "w")
    assert rpc("getrawmempool") == [txid]
    entry = rpc("getmempoolentry", txid)
    assert 1 <= Decimal(entry["fees"]["base"]) * 100_000_000 / entry["vsize"] <= 3  # ~2 sat/vB
    tx = rpc("getrawtransaction", txid, True)
    assert all(vin["sequence"] == 0xFFFFFFFD for vin in tx["vin"])
    assert received(rpc, txid, MERCHANT.spk.hex()) == Decimal("0.00123456")
    (block,) = rpc("generatetoaddress", 1, THIEF.address)
    assert txid in rpc("getblock", block, 1)["tx"]
    assert rpc("getrawmempool") == []
    # The wallet state persists; a second payment reuses its coins without re-funding.
    height = rpc("getblockcount")
    pay_uri(uri, rpc_url=node.url, wallet_dir=tmp_path / "w")
    assert rpc("getblockcount") == height


def test_less_more_twice(node: RunningNode, rpc: Client, tmp_path: Path) -> None:
    uri = f"bitcoin:{MERCHANT.address}?amount=0.01"
    wallet = tmp_path / "w"
    (less,) = pay_uri(uri, rpc_url=node.url, wallet_dir=wallet, amount_factor=Decimal("0.5"))
    (more,) = pay_uri(uri, rpc_url=node.url, wallet_dir=wallet, amount_factor=Decimal("1.2"))
    twice = pay_uri(uri, rpc_url=node.url, wallet_dir=wallet, times=2)
    assert len(twice) == 2 and len(set(twice)) == 2
    assert received(rpc, less, MERCHANT.spk.hex()) == Decimal("0.005")
    assert received(rpc, more, MERCHANT.spk.hex()) == Decimal("0.012")
    assert all(received(rpc, t, MERCHANT.spk.hex()) == Decimal("0.01") for t in twice)
    assert set(rpc("getrawmempool")) == {less, more, *twice}
    rpc("generatetoaddress", 1, THIEF.address)
    assert rpc("getrawmempool") == []


def test_double_spend_replaces_payment(node: RunningNode, rpc: Client, tmp_path: Path) -> None:
    uri = f"bitcoin:{MERCHANT.address}?amount=0.002"
    paid, replacement = pay_uri(
        uri, rpc_url=node.url, wallet_dir=tmp_path / "w", double_spend_to=THIEF.address
    )
    assert rpc("getrawmempool") == [replacement]
    with pytest.raises(Exception, match="No such mempool"):
        rpc("getrawtransaction", paid, True)
    assert received(rpc, replacement, THIEF.spk.hex()) == Decimal("0.002")
    assert received(rpc, replacement, MERCHANT.spk.hex()) == 0
    (block,) = rpc("generatetoaddress", 1, THIEF.address)
    assert replacement in rpc("getblock", block, 1)["tx"]


@pytest.mark.parametrize(
    ("uri", "error"),
    [
        ("bitcorn:bcrt1qxyz?amount=1", InvalidURIError),
        ("bitcoin:?amount=1", InvalidURIError),
        ("bitcoin:bcrt1qnotanaddress?amount=1", InvalidURIError),
        ("bitcoin:bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq?amount=1", WrongNetworkError),
        ("bitcoin:1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN2?amount=1", WrongNetworkError),
        (f"bitcoin:{MERCHANT.address}", BadAmountError),
        (f"bitcoin:{MERCHANT.address}?amount=abc", BadAmountError),
        (f"bitcoin:{MERCHANT.address}?amount=1e-3", BadAmountError),
        (f"bitcoin:{MERCHANT.address}?amount=0.000000001", BadAmountError),
        (f"bitcoin:{MERCHANT.address}?amount=0", BadAmountError),
        (f"bitcoin:{MERCHANT.address}?amount=21000001", BadAmountError),
        (f"bitcoin:{MERCHANT.address}?amount=1&req-foo=1", InvalidURIError),
    ],
)
def test_bad_uris(uri: str, error: type[WalletError]) -> None:
    with pytest.raises(error):
        parse_bip21(uri)


def test_parse_bip21_fields() -> None:
    req = parse_bip21(f"BITCOIN:{MERCHANT.address.upper()}?amount=1.5&label=Caf%C3%A9&x=1")
    assert (req.amount, req.label, req.script) == (150_000_000, "Café", MERCHANT.spk)
