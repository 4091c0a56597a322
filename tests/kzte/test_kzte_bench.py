"""Smoke: the RPC-cost benchmark runs both strategies end to end at a tiny size.

No timing asserts: only that each measurement ran, counted real calls of the kind its
strategy makes, and has the shape `python -m bench` prints.
"""

from __future__ import annotations

import pytest

from bench import __main__ as runner
from bench import kzte_polling

pytestmark = pytest.mark.slow


def test_both_strategies_are_measured_in_one_run() -> None:
    result = kzte_polling.run(sizes=(3,), passes=2, direct_merchants=2)
    rows = {(r["strategy"], r["destinations"]): r for r in result["rows"]}
    assert set(rows) == {("reference", 1), ("destination", 1), ("destination", 2)}
    old, new = rows[("reference", 1)], rows[("destination", 1)]
    assert old["reference_reads_per_minute"] > 0 and old["destination_reads_per_minute"] == 0
    assert new["destination_reads_per_minute"] > 0
    assert "getAccountInfo" in new["by_method_per_minute"]  # the mint's token program
    assert "getAccountInfo" not in old["by_method_per_minute"]
    assert all(r["passes"] == 2 and r["open_invoices"] == 3 for r in rows.values())
    table = runner._kzte_rpc_rows(result)
    assert [label for label, *_ in table][1:] == [
        "3 open, reference",
        "3 open, destination",
        "3 open, destination, 2 merchants",
    ]
