"""Smoke test: the mempool poll benchmark runs at a tiny size and reports its numbers.

No timing asserts (numbers belong to `make bench`); bytes are deterministic enough to order.
"""

from __future__ import annotations

from bench import mempool_poll


def test_mempool_poll_compares_the_three_polls() -> None:
    result = mempool_poll.run(size=300, new=10, rounds=2)  # raises if a poll misses a new tx
    assert result["mempool_txs"] == 300 and result["new_per_poll"] == 10
    assert "stub" in result["node"]  # the output says it is not a real node
    today, zmq, no_zmq = result["today"], result["zmq"], result["no_zmq"]
    assert today["bytes"] > no_zmq["bytes"] > zmq["bytes"] > 0
    assert result["verbose_bytes_per_tx"] > 400 and result["listing_bytes_per_tx"] < 100
