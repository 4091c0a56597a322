"""Errors of the settlement package: chain adapters map remote failures to these."""

from __future__ import annotations

from pos.errors import PosError


class SettlementError(PosError):
    """Base of every settlement error."""


class NodeUnavailableError(SettlementError):
    """The node did not answer (timeout, refused, warming up): the answer is UNKNOWN, not no."""


class NodeAuthError(SettlementError):
    """The node refused our credentials: a configuration problem, not a chain fact."""


class NodeRpcError(SettlementError):
    """The node answered with a JSON-RPC error; `code` is the node's own error code."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"node error {code}: {message}")
        self.code = code
        self.message = message


class NotFoundOnChainError(NodeRpcError):
    """Bitcoin Core -5: no such transaction / block (a definite answer, unlike a timeout)."""


class LostLeadershipError(SettlementError):
    """Another worker took the watcher's lease; this one must stop writing at once."""


class BlocksPrunedError(SettlementError):
    """The node pruned blocks the watcher still has to scan: it cannot go on by itself."""

    def __init__(self, height: int, prune_height: int) -> None:
        super().__init__(
            f"the Bitcoin node has pruned block {height}, which the watcher has not scanned yet "
            f"(the node keeps blocks from height {prune_height} on). Payments in the missing "
            "blocks cannot be seen: point BITCOIN_RPC_URL at a node that has them, or skip "
            f"them with `cryptocity rescan bitcoin --from-height {prune_height}` and check "
            "the open invoices of that time by hand"
        )
        self.height = height
        self.prune_height = prune_height
