"""Benchmark: the Bitcoin watcher's cost per block as the number of open invoices grows.

A block of `tx_count` one-output transactions is mined on the sandbox node (in-process,
127.0.0.1). For each size N the Redis watch index `cc:watch:btc` is filled (pipelined) with N
entries, 100 of them addresses the block really pays, and the block is scanned the way the
watcher does it: `getblock` verbosity 2 decoded by the adapter, then `BitcoinWatcher._scan_block`
(HMGET lookups of every output address in chunks of 2,000, and the payment bookkeeping of the
matches). Target: 300 ms per block at 1,000,000 watched addresses, and flat growth.

Baseline, measured in the same run: what a processor without a shared address index does —
for every open invoice, every poll, fetch the mempool (getrawmempool) and the tip block
(getblock verbosity 2) and look for that invoice's address. Its cost per invoice is measured
over a sample of invoices and multiplied by N; the ratio to our measured cost is reported.

Also: BIP84 addresses derived per second (`pos.methods.bitcoin.derive_address`).
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import Any

from bench.chain import Payer, random_address, start_bench_node
from bench.common import profile_top, say, scratch
from pos.coordination import watch_key
from pos.demo_wallets import demo_account_xpub
from pos.methods.bitcoin import derive_address
from pos.settings import BitcoinNetwork
from settlement.btc_watcher import BitcoinWatcher, Conflicts
from settlement.chains.bitcoin_core import BitcoinCoreClient, BlockView

TAG = "scan"
TARGET_MS_AT_1M = 300.0
MATCHES = 100  # watched addresses the block really pays
FILL_CHUNK = 10_000
RUNS = 3


def _median_s(fn: Callable[[], object], runs: int = RUNS) -> float:
    times = []
    for _ in range(runs):
        began = time.perf_counter()
        fn()
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def _build_block(payer: Payer, tx_count: int) -> tuple[str, list[str]]:
    """Mine a block of `tx_count` payments to random addresses; (block hash, addresses)."""
    say(TAG, f"funding {tx_count} coins")
    payer.fund(tx_count, 1_000_000)
    say(TAG, f"signing and broadcasting {tx_count} transactions")
    addresses, raws = [], []
    for _ in range(tx_count):
        script, address = random_address()
        addresses.append(address)
        raws.append(payer.payment(script))
    payer.broadcast_many(raws)
    (block_hash,) = payer.mine(1)
    return block_hash, addresses


def _fill_index(client: Any, size: int, paid: list[str]) -> float:
    """Replace the watch index with `size` entries (the block's `paid` addresses among them)."""
    key = watch_key("btc")
    client.delete(key)
    began = time.perf_counter()
    real = {address: f"bench{n:015d}" for n, address in enumerate(paid)}
    client.hset(key, mapping=real)
    written = len(real)
    while written < size:
        n = min(FILL_CHUNK, size - written)
        # Random bech32-length strings: the lookup cost does not depend on checksums.
        fake = {f"bcrt1q{os.urandom(19).hex()}": f"x{written + i:019d}" for i in range(n)}
        client.hset(key, mapping=fake)
        written += n
    return time.perf_counter() - began


def _naive_per_invoice_s(client: BitcoinCoreClient, addresses: list[str]) -> float:
    """One naive poll for each address: mempool + tip block, then a scan for the address."""

    def poll_one(address: str) -> bool:
        client.mempool_times()
        block = client.block(client.best_block_hash())
        return any(out.address == address for tx in block.txs for out in tx.outputs)

    began = time.perf_counter()
    found = sum(poll_one(address) for address in addresses)
    elapsed = time.perf_counter() - began
    if found != len(addresses):
        raise RuntimeError("the naive scan missed a payment")
    return elapsed / len(addresses)


def derive_rate(count: int = 2_000) -> dict[str, Any]:
    """BIP84 receive addresses derived per second from one account key."""
    xpub = demo_account_xpub("bench", BitcoinNetwork.REGTEST)
    began = time.perf_counter()
    for index in range(count):
        derive_address(xpub, index, BitcoinNetwork.REGTEST)
    elapsed = time.perf_counter() - began
    return {"addresses": count, "per_second": round(count / elapsed, 1)}


def run(
    tx_count: int = 4_000,
    sizes: tuple[int, ...] = (10_000, 100_000, 1_000_000),
    naive_sample: int = 10,
) -> dict[str, Any]:
    """Scan one `tx_count`-transaction block against watch indexes of each size in `sizes`."""
    with tempfile.TemporaryDirectory(prefix="cc-bench-node-") as tmp:
        node = start_bench_node(Path(tmp))
        try:
            with (
                scratch(TAG, bitcoin_rpc_url=node.url) as env,
                closing(BitcoinCoreClient(node.url, timeout=600)) as client,
            ):
                payer = Payer(client, TAG)
                block_hash, addresses = _build_block(payer, tx_count)
                holder: list[BlockView] = []
                fetch_s = _median_s(lambda: holder.append(client.block(block_hash)))
                block = holder[-1]
                say(
                    TAG,
                    f"block of {len(block.txs)} txs: getblock v2 + decode {fetch_s * 1e3:.0f} ms",
                )
                watcher = BitcoinWatcher(env.rt, client)
                redis = env.rt.coordinator.client
                paid = addresses[:MATCHES]
                rows = []
                for size in sizes:
                    say(TAG, f"filling the watch index with {size:,} addresses")
                    memory_before = int(redis.info("memory")["used_memory"])
                    fill_s = _fill_index(redis, size, paid)
                    index_bytes = int(redis.info("memory")["used_memory"]) - memory_before
                    matched = len(watcher._match(block.txs))
                    if matched != len(paid):
                        raise RuntimeError(f"matched {matched} outputs, expected {len(paid)}")

                    def scan() -> None:
                        with env.rt.session_factory() as session:
                            watcher._scan_block(session, block, Conflicts())
                            session.rollback()

                    lookup_s = _median_s(lambda: watcher._match(block.txs))
                    scan_s = _median_s(scan)
                    row = {
                        "watched": size,
                        "fill_s": round(fill_s, 2),
                        "index_bytes_per_entry": round(index_bytes / size, 1),
                        "lookup_ms": round(lookup_s * 1e3, 1),
                        "scan_ms": round(scan_s * 1e3, 1),
                        "block_ms": round((fetch_s + scan_s) * 1e3, 1),
                    }
                    say(TAG, f"  {row}")
                    rows.append(row)
                say(TAG, f"naive baseline: polling {naive_sample} invoices one by one")
                naive_client = BitcoinCoreClient(node.url, timeout=600)
                try:
                    naive_s = _naive_per_invoice_s(naive_client, paid[:naive_sample])
                finally:
                    naive_client.close()
                ours_at = {r["watched"]: r["block_ms"] / 1e3 for r in rows}
                largest = rows[-1]
                result: dict[str, Any] = {
                    "block_txs": len(block.txs),
                    "block_hash": block_hash,
                    "getblock_decode_ms": round(fetch_s * 1e3, 1),
                    "by_watched": rows,
                    "growth_lookup_ms_largest_over_smallest": round(
                        rows[-1]["lookup_ms"] / max(rows[0]["lookup_ms"], 1e-6), 2
                    ),
                    "target": f"<= {TARGET_MS_AT_1M:.0f} ms per block at 1,000,000 watched",
                    # None: the run did not reach 1,000,000 watched (e.g. --quick).
                    "met": largest["block_ms"] <= TARGET_MS_AT_1M
                    if largest["watched"] >= 1_000_000
                    else None,
                    "naive": {
                        "method": "per open invoice per poll: getrawmempool + getblock(tip, 2) "
                        "+ scan for its address",
                        "sample_invoices": naive_sample,
                        "per_invoice_ms": round(naive_s * 1e3, 2),
                        "rpc_calls_per_poll_per_invoice": 3,
                        "poll_s_at": {str(n): round(naive_s * n, 1) for n in ours_at},
                        "ratio_naive_over_ours": {
                            str(n): round(naive_s * n / ours, 1) for n, ours in ours_at.items()
                        },
                        "note": "naive poll time = measured per-invoice cost x N (extrapolated)",
                    },
                }
                if result["met"] is False:
                    say(TAG, "target missed: profiling one block fetch + scan")

                    def one_block() -> None:
                        fetched = client.block(block_hash)
                        with env.rt.session_factory() as session:
                            watcher._scan_block(session, fetched, Conflicts())
                            session.rollback()

                    result["profile"] = profile_top(one_block, 20)
                return result
        finally:
            node.stop()
