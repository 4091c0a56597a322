"""Fixtures for the bitcoind stand-in tests: a node on port 0 in tmp_path."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from btcnode_helpers import Client, Key

from sandbox.bitcoin.node import RunningNode, start_node


@pytest.fixture
def node(tmp_path: Path) -> Iterator[RunningNode]:
    n = start_node(tmp_path / "btc")
    try:
        yield n
    finally:
        n.stop()


@pytest.fixture
def rpc(node: RunningNode) -> Client:
    return Client(node)


@pytest.fixture
def shopper() -> Key:
    return Key("shopper")


@pytest.fixture
def funded(rpc: Client, shopper: Key) -> Client:
    """A node with 101 blocks paid to ``shopper`` (block 1's coinbase is mature)."""
    rpc("generatetoaddress", 101, shopper.address)
    return rpc
