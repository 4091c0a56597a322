"""Fixtures for the Bitcoin watcher tests: each chain test runs on our sandbox node and on a
real Bitcoin Core (skipped locally when bitcoind is missing, a failure in CI)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from btc_harness import World, make_world
from chains import CHAINS, Chain, make_chain

from pos.runtime import Runtime

import factories


@pytest.fixture(params=CHAINS)
def chain(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Chain]:
    made = make_chain(request.param, tmp_path / request.param)
    try:
        yield made
    finally:
        made.close()


@pytest.fixture(params=CHAINS)
def pruned_chain(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Chain]:
    made = make_chain(request.param, tmp_path / request.param, prune=True)
    try:
        yield made
    finally:
        made.close()


def _world(runtime: Runtime, chain: Chain) -> World:
    with runtime.session_factory.begin() as session:
        merchant = factories.merchant(session, runtime.settings)
    return make_world(runtime, chain, merchant)


@pytest.fixture
def world(runtime: Runtime, chain: Chain) -> Iterator[World]:
    made = _world(runtime, chain)
    yield made
    made.close()


@pytest.fixture
def pruned_world(runtime: Runtime, pruned_chain: Chain) -> Iterator[World]:
    made = _world(runtime, pruned_chain)
    yield made
    made.close()
