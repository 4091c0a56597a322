"""The test zone's Bitcoin wallet, for tests that spend what the zone received (a refund).

The server never holds these keys; tests/conftest.py sets ZONE_BTC_XPUB to the account key of
a wallet derived from a public seed, so a test can sign as the zone would with its own wallet.
"""

from __future__ import annotations

import hashlib

from embit import bip32, script
from embit.networks import NETWORKS
from embit.transaction import Transaction, TransactionInput, TransactionOutput

from pos.models import Payment

SHOPPER = "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080"  # a regtest P2WPKH of nobody's here


def zone_spend(payment: Payment, index: int, to: str, amount: int, fee: int = 2_000) -> str:
    """Sign a spend of the zone's received output with the test zone's key (the wallet the
    server never holds: tests/conftest.py derives the zone key from a public seed)."""
    seed = hashlib.sha256(b"cryptocity demo wallet test zone").digest()
    root = bip32.HDKey.from_seed(seed, version=NETWORKS["test"]["xprv"])
    key = root.derive(f"m/84h/1h/0h/0/{index}")
    pub = key.get_public_key()
    # Change to the wallet's internal chain, as a wallet does: never to an invoice's address.
    change_pub = root.derive(f"m/84h/1h/0h/1/{index}").get_public_key()
    change = payment.amount_atomic - amount - fee
    txin = TransactionInput(bytes.fromhex(payment.txid), payment.output_index)
    tx = Transaction(
        vin=[txin],
        vout=[
            TransactionOutput(amount, script.address_to_scriptpubkey(to)),
            TransactionOutput(change, script.p2wpkh(change_pub)),
        ],
    )
    digest = tx.sighash_segwit(0, script.p2pkh(pub), payment.amount_atomic)
    txin.witness = script.witness_p2wpkh(key.key.sign(digest), pub)
    return str(tx.serialize().hex())
