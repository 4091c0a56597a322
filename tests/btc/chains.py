"""Chain drivers for the watcher scenarios: one interface, our sandbox node or a real bitcoind.

The drivers live in `drills.chains` (the fault drills use them too); here `make_chain` adds the
tests' policy for Core: skipped locally without bitcoind, a failure in CI.
"""

from __future__ import annotations

from pathlib import Path

from core_node import require_core

from drills.chains import (
    CHAINS,
    ELSEWHERE,
    EXTRA_FEE_SAT,
    MINER_BLOCKS_AFTER_FUNDING,
    SHOPPER_COINBASES,
    Chain,
    CoreChain,
    SandboxChain,
    Sent,
    btc,
)

__all__ = [
    "CHAINS",
    "ELSEWHERE",
    "EXTRA_FEE_SAT",
    "MINER_BLOCKS_AFTER_FUNDING",
    "SHOPPER_COINBASES",
    "Chain",
    "CoreChain",
    "SandboxChain",
    "Sent",
    "btc",
    "make_chain",
]


def make_chain(kind: str, datadir: Path, prune: bool = False) -> Chain:
    if kind == "core":
        return CoreChain(datadir, prune=prune, binary=require_core())
    return SandboxChain(datadir, prune=prune)
