"""A throw-away regtest Bitcoin Core (bitcoind) for tests, plus a small JSON-RPC client.

The runner itself lives in `drills.core_node` (the fault drills start Core too); this module adds
the tests' policy. The binary is `<repo>/../shared/bitcoin-core/bin/bitcoind` unless env BITCOIND
names another. Without it (or without its libraries: `apt-get install libzmq5 libsqlite3-0`) a
test that needs Core is skipped locally and FAILS in CI (env CI=true), where both chains must run.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from drills.core_node import (
    DEFAULT_BITCOIND,
    REPO,
    RPC_IN_WARMUP,
    RPC_PASSWORD,
    RPC_USER,
    START_TIMEOUT,
    STOP_TIMEOUT,
    Bitcoind,
    JsonRpc,
    RpcError,
    bitcoind_binary,
    core_unavailable,
    free_port,
)

__all__ = [
    "DEFAULT_BITCOIND",
    "REPO",
    "RPC_IN_WARMUP",
    "RPC_PASSWORD",
    "RPC_USER",
    "START_TIMEOUT",
    "STOP_TIMEOUT",
    "Bitcoind",
    "JsonRpc",
    "RpcError",
    "bitcoind_binary",
    "core_unavailable",
    "free_port",
    "require_core",
]


def require_core() -> Path:
    """The bitcoind binary; skip without it locally, fail without it in CI."""
    reason = core_unavailable()
    if reason is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"Bitcoin Core is required in CI: {reason}", pytrace=False)
        pytest.skip(f"Bitcoin Core not available: {reason}")
    return bitcoind_binary()
