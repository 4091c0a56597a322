"""Fixtures for the Bitcoin watcher tests: a fresh sandbox node per test, on port 0."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from btc_harness import World, make_world

from pos.runtime import Runtime
from sandbox.bitcoin.node import RunningNode, start_node

import factories


@pytest.fixture
def node(tmp_path: Path) -> Iterator[RunningNode]:
    running = start_node(tmp_path / "node", rpcport=0)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def world(runtime: Runtime, node: RunningNode, tmp_path: Path) -> Iterator[World]:
    with runtime.session_factory.begin() as session:
        merchant = factories.merchant(session, runtime.settings)
    made = make_world(runtime, node, tmp_path, merchant)
    yield made
    made.close()
