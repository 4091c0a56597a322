"""Fixtures for the KZTE tests: a sandbox Solana validator per module, a shopper wallet, a
merchant with a fresh wallet, and a port that accepts connections but never answers."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from kzte_support import EAGER, Shop
from solders.keypair import Keypair

from pos import accounts
from pos.models import SettlementMode
from pos.runtime import Runtime
from sandbox.solana.validator import RunningValidator, start_validator
from settlement.kzte_watcher import KzteWatcher


@pytest.fixture(scope="module")
def chain_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("kzte-chain")


@pytest.fixture(scope="module")
def validator(chain_dir: Path) -> Iterator[RunningValidator]:
    with start_validator(chain_dir) as running:
        yield running


@pytest.fixture(scope="module")
def shopper_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("kzte-shopper")


@pytest.fixture
def shop(runtime: Runtime, validator: RunningValidator, shopper_dir: Path) -> Shop:
    runtime.settings = runtime.settings.with_overrides(
        kzte_mint=validator.kzte_mint,
        kzte_decimals=validator.kzte_decimals,
        solana_rpc_url=validator.rpc_url,
        solana_ws_url=validator.ws_url,
    )
    wallet = str(Keypair().pubkey())  # its token account does not exist: the shopper creates it
    with runtime.session_factory() as session:
        # `direct`: these tests watch a merchant's own wallet (the zone's is one more wallet).
        merchant = accounts.create_merchant(
            session,
            runtime.settings,
            "KZTE Shop",
            solana_wallet=wallet,
            settlement_mode=SettlementMode.DIRECT,
        )
        session.commit()
        merchant_id = merchant.id
    return Shop(runtime, validator, merchant_id, wallet, shopper_dir, KzteWatcher(EAGER))


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A listening socket that never accepts a request's answer: a hung node."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield sock.getsockname()[1]
