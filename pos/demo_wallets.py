"""Demo-only wallets: the simulated merchants' keys and the zone's own sandbox wallet.

Merchants' demo keys come from public seeds (anyone may derive them: they are simulations).
The zone's wallet gets a random seed kept in the sandbox data dir, readable by its owner only:
the server reads just the public parts (the BIP84 account key, the Solana wallet address);
the seed is there for the sandbox wallet that sends refunds on the zone's behalf.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from pathlib import Path

from embit import base58, bip32
from embit.networks import NETWORKS
from solders.keypair import Keypair

from pos.settings import BitcoinNetwork

_VPUB = bytes.fromhex("045f1cf6")
_ZPUB = bytes.fromhex("04b24746")
ZONE_WALLET_FILE = "zone_wallet.json"


def account_xpub_from_seed(seed: bytes, network: BitcoinNetwork) -> str:
    """The BIP84 account key m/84'/coin'/0' of a wallet seed, SLIP-132 encoded (vpub / zpub)."""
    test = network is not BitcoinNetwork.MAINNET
    root = bip32.HDKey.from_seed(seed, version=NETWORKS["test" if test else "main"]["xprv"])
    account = root.derive(f"m/84h/{1 if test else 0}h/0h").to_public()
    raw = bytearray(base58.decode_check(account.to_base58()))
    raw[:4] = _VPUB if test else _ZPUB
    return str(base58.encode_check(bytes(raw)))


def demo_account_xpub(slug: str, network: BitcoinNetwork) -> str:
    """The BIP84 account key of a demo merchant's (simulated) wallet."""
    seed = hashlib.sha256(f"cryptocity demo wallet {slug}".encode()).digest()
    return account_xpub_from_seed(seed, network)


def demo_solana_wallet(slug: str) -> str:
    seed = hashlib.sha256(f"cryptocity demo solana {slug}".encode()).digest()
    return str(Keypair.from_seed(seed).pubkey())


def zone_wallet(sandbox_dir: Path, network: BitcoinNetwork) -> tuple[str, str]:
    """(BIP84 account key, Solana wallet) of the demo zone, made on first use."""
    path = sandbox_dir / ZONE_WALLET_FILE
    try:
        seed = bytes.fromhex(json.loads(path.read_text())["seed"])
    except (OSError, ValueError, KeyError, TypeError):
        seed = secrets.token_bytes(32)
        sandbox_dir.mkdir(parents=True, exist_ok=True)
        temp = path.with_suffix(".tmp")
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump({"seed": seed.hex()}, handle)
        os.replace(temp, path)  # two processes starting at once: the last one wins, whole
        seed = bytes.fromhex(json.loads(path.read_text())["seed"])
    solana = Keypair.from_seed(hashlib.sha256(b"solana" + seed).digest())
    return account_xpub_from_seed(seed, network), str(solana.pubkey())
