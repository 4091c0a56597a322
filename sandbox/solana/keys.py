"""Keypair files in solana-keygen's format (a JSON array of the 64 secret-key bytes)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from solders.keypair import Keypair

from sandbox.solana.errors import SolanaSandboxError


def sandbox_dir(data_dir: Path) -> Path:
    """Directory holding the sandbox's own keypairs: ``<data_dir>/sandbox/solana``."""
    return Path(data_dir) / "sandbox" / "solana"


def state_file(data_dir: Path) -> Path:
    """The file the settings loader reads in demo mode: ``<data_dir>/sandbox/solana.json``."""
    return Path(data_dir) / "sandbox" / "solana.json"


def mint_keypair_path(data_dir: Path) -> Path:
    """Keypair whose public key is the sandbox KZTE mint address."""
    return sandbox_dir(data_dir) / "kzte-mint.json"


def faucet_keypair_path(data_dir: Path) -> Path:
    """Keypair of the KZTE mint authority, which also pays for faucet SOL."""
    return sandbox_dir(data_dir) / "faucet.json"


def load_keypair(path: Path) -> Keypair:
    """Read a solana-keygen style keypair file."""
    try:
        raw = json.loads(Path(path).read_text())
        if not isinstance(raw, list) or len(raw) != 64:
            raise ValueError("expected a JSON array of 64 numbers")
        return Keypair.from_bytes(bytes(raw))
    except (OSError, ValueError) as exc:
        raise SolanaSandboxError(f"bad keypair file {path}: {exc}") from exc


def save_keypair(path: Path, keypair: Keypair) -> None:
    """Write ``keypair`` as a JSON array of 64 bytes, readable by the owner only."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    # Secret key material: create with 0600 from the start.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(list(bytes(keypair)), handle)
    os.replace(tmp, path)


def load_or_create_keypair(path: Path) -> Keypair:
    """Load the keypair at ``path``, generating and saving a new one when missing."""
    path = Path(path)
    if path.exists():
        return load_keypair(path)
    keypair = Keypair()
    save_keypair(path, keypair)
    return keypair
