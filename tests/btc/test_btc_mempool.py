"""MempoolView against a node over JSON-RPC and ZMQ: the sandbox, and a real Bitcoin Core.

Each scenario runs on both nodes (Core from ../shared/bitcoin-core, or $BITCOIND; skipped with a
message when it is missing, except under CI=true, where that fails). "No listing" assertions
show the deltas came from ZMQ events alone, so both nodes must number mempool changes alike.
The last tests replay Core's recorded ZMQ stream (../shared/fixtures/bitcoind).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import struct
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import zmq
from bitcoin.core import COutPoint, CTransaction, CTxIn, CTxInWitness, CTxOut, CTxWitness, lx
from bitcoin.core.script import CScript, CScriptWitness

from bench.chain import RBF_SEQUENCE, Payer
from sandbox.bitcoin.keys import sign_p2wpkh
from sandbox.bitcoin.node import RunningNode, start_node
from settlement.btc_mempool import MempoolDelta, MempoolView
from settlement.chains.bitcoin_core import BitcoinCoreClient, MempoolSnapshot
from settlement.chains.bitcoin_zmq import (
    FeedBatch,
    MempoolEvent,
    MempoolEventKind,
    ZmqSequenceFeed,
    decode_sequence,
)
from settlement.errors import NodeUnavailableError

SHARED = Path(__file__).resolve().parents[3] / "shared"
BITCOIND = Path(os.environ.get("BITCOIND", SHARED / "bitcoin-core" / "bin" / "bitcoind"))
FIXTURES = SHARED / "fixtures" / "bitcoind"
ELSEWHERE = bytes.fromhex("0014" + "11" * 20)  # P2WPKH to a key nobody holds
OTHER = bytes.fromhex("0014" + "22" * 20)
COIN_SAT = 1_000_000
PAY_SAT = 500_000
WAIT_S = 20.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# --- the two nodes ------------------------------------------------------------------------
@dataclass
class Chain:
    """A regtest node with -zmqpubsequence, a client and a funded payer; restartable."""

    kind: str
    datadir: Path
    rpc_port: int
    zmq_url: str
    url: str = ""
    sandbox: RunningNode | None = None
    process: subprocess.Popen[bytes] | None = None
    client: BitcoinCoreClient | None = None
    payer: Payer = field(init=False)

    def start(self) -> None:
        if self.kind == "sandbox":
            self.sandbox = start_node(self.datadir, self.rpc_port, zmqpubsequence=self.zmq_url)
            self.url = self.sandbox.url
        else:
            self.process = subprocess.Popen(
                [
                    str(BITCOIND),
                    "-regtest",
                    "-server",
                    "-listen=0",
                    f"-datadir={self.datadir}",
                    "-rpcbind=127.0.0.1",
                    "-rpcallowip=127.0.0.1",
                    f"-rpcport={self.rpc_port}",
                    "-rpcuser=u",
                    "-rpcpassword=p",
                    "-fallbackfee=0.0002",
                    f"-zmqpubsequence={self.zmq_url}",
                    "-printtoconsole=0",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            self.url = f"http://u:p@127.0.0.1:{self.rpc_port}"
        if self.client is None:  # one client all along: it reconnects after a restart
            self.client = BitcoinCoreClient(self.url, timeout=10, retries=0)
        deadline = time.monotonic() + 30
        while True:  # Core answers -28 (warming up) or refuses until it is ready
            try:
                self.node.block_count()
                return
            except NodeUnavailableError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def stop(self) -> None:
        if self.sandbox is not None:
            self.sandbox.stop()
            self.sandbox = None
        if self.process is not None:
            with contextlib.suppress(NodeUnavailableError):  # it may be stopping already
                self.node.call("stop")
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
            self.process = None
        self.node.close()

    @property
    def node(self) -> BitcoinCoreClient:
        assert self.client is not None
        return self.client

    def rpc(self, method: str, *params: Any) -> Any:
        return self.node.call(method, *params)

    def pay(self) -> str:
        """Broadcast a one-input payment; its coin stays known for a replacement."""
        txid: str = self.rpc("sendrawtransaction", self.payer.payment(ELSEWHERE, PAY_SAT))
        return txid

    def replace(self, txid: str, fee_sat: int = 20_000) -> str:
        """Spend the coin of `txid` again, to another script, with more fee (full RBF)."""
        vin = self.rpc("getrawtransaction", txid, True)["vin"][0]
        coin = (vin["txid"], int(vin["vout"]), COIN_SAT)
        raw = signed(self.payer.secret, coin, OTHER, COIN_SAT - fee_sat)
        new_txid: str = self.rpc("sendrawtransaction", raw)
        return new_txid

    def mine(self, blocks: int = 1) -> list[str]:
        return self.payer.mine(blocks)


def signed(secret: bytes, coin: tuple[str, int, int], script: bytes, amount_sat: int) -> str:
    vin = [CTxIn(COutPoint(lx(coin[0]), coin[1]), CScript(), RBF_SEQUENCE)]
    vout = [CTxOut(amount_sat, CScript(script))]
    unsigned = CTransaction(vin, vout, nLockTime=0, nVersion=2)
    witness = CTxInWitness(CScriptWitness(sign_p2wpkh(unsigned, 0, secret, coin[2])))
    return str(CTransaction(vin, vout, 0, 2, CTxWitness([witness])).serialize().hex())


def core_available() -> bool:
    if BITCOIND.is_file() and os.access(BITCOIND, os.X_OK):
        return True
    message = f"real Bitcoin Core not found at {BITCOIND} (set BITCOIND=/path/to/bitcoind)"
    if os.environ.get("CI") == "true":
        pytest.fail(message + "; CI must run these tests against Core too")
    pytest.skip(message)


@pytest.fixture(params=["sandbox", "core"])
def chain(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Chain]:
    if request.param == "core":
        core_available()
    made = Chain(
        request.param, tmp_path / request.param, free_port(), f"tcp://127.0.0.1:{free_port()}"
    )
    made.datadir.mkdir()
    made.start()
    try:
        made.payer = Payer(made.node, "mempool-view")
        made.payer.fund(12, COIN_SAT)
        yield made
    finally:
        made.stop()


@pytest.fixture
def feed(chain: Chain) -> Iterator[ZmqSequenceFeed]:
    subscribed = ZmqSequenceFeed(chain.zmq_url)
    subscribed.start()
    try:
        # Connected is not yet subscribed: until the node's publisher has taken our
        # subscription, it drops what it sends (ZMQ "slow joiner"). A block is a message.
        deadline = time.monotonic() + WAIT_S
        while not subscribed.messages:
            assert time.monotonic() < deadline, f"no ZMQ message arrived: {subscribed}"
            if subscribed.connected:
                chain.mine(1)
            time.sleep(0.05)
        subscribed.drain()
        yield subscribed
    finally:
        subscribed.stop()


# --- helpers ------------------------------------------------------------------------------
@dataclass
class Seen:
    """Deltas merged net, as a watcher polling all along would have seen them."""

    added: list[str] = field(default_factory=list)
    removed: set[str] = field(default_factory=set)
    syncs: int = 0

    def merge(self, delta: MempoolDelta) -> None:
        assert delta.complete
        self.syncs += 1
        for txid in delta.removed:
            if txid in self.added:
                self.added.remove(txid)
            else:
                self.removed.add(txid)
        for txid in delta.added:
            if txid in self.removed:
                self.removed.discard(txid)
            else:
                self.added.append(txid)


def watch(view: MempoolView, done: Callable[[Seen], bool]) -> Seen:
    """Sync until `done` holds (bounded; fails loudly with what was seen)."""
    seen = Seen()
    deadline = time.monotonic() + WAIT_S
    while True:
        seen.merge(view.sync())
        if done(seen):
            return seen
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {seen.syncs} syncs, seen {seen}")
        time.sleep(0.02)


def live_view(chain: Chain, feed: Any, clock: Callable[[], float] = time.monotonic) -> MempoolView:
    """A view that has listed the mempool and whose feed has delivered a transaction event."""
    view = MempoolView(chain.node, feed, clock=clock)
    paid = chain.pay()
    watch(view, lambda seen: paid in seen.added and view.live)
    return view


class DroppingFeed:
    """The real feed, minus the next `drop` transaction events: ZMQ losing messages."""

    def __init__(self, feed: ZmqSequenceFeed) -> None:
        self.feed = feed
        self.drop = 0
        self.dropped: list[MempoolEvent] = []

    def drain(self) -> FeedBatch:
        batch = self.feed.drain()
        kept = []
        for event in batch.events:
            if self.drop and event.is_tx:
                self.drop -= 1
                self.dropped.append(event)
            else:
                kept.append(event)
        return FeedBatch(kept, batch.connected, batch.connections, batch.lost)


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


# --- events: arrivals, blocks, replacements, reorgs ----------------------------------------
def test_arrivals_come_from_events_in_arrival_order(chain: Chain, feed: ZmqSequenceFeed) -> None:
    view = live_view(chain, feed)
    listings = view.stats.listings
    txids = [chain.pay() for _ in range(3)]
    seen = watch(view, lambda s: set(txids) <= set(s.added))
    assert seen.added == txids and seen.removed == set()
    assert view.stats.listings == listings  # no getrawmempool: ZMQ alone
    assert view.present([*txids, "ab" * 32]) == set(txids) and txids[0] in view
    recorded = chain.rpc("getmempoolentry", txids[0])["time"]
    assert view.entry_time(txids[0]) == datetime.fromtimestamp(recorded, UTC)
    assert view.entry_times([txids[1], "ab" * 32]) == {
        txids[1]: datetime.fromtimestamp(chain.rpc("getmempoolentry", txids[1])["time"], UTC),
        "ab" * 32: None,
    }


def test_mined_transactions_leave_with_their_block(chain: Chain, feed: ZmqSequenceFeed) -> None:
    view = live_view(chain, feed)
    before = set(view.txids)
    txids = [chain.pay() for _ in range(2)]
    watch(view, lambda s: set(txids) <= set(s.added))
    listings, blocks = view.stats.listings, view.stats.blocks
    chain.mine(1)
    seen = watch(view, lambda s: bool(s.removed))
    assert seen.removed == before | set(txids) and seen.added == []
    assert view.txids == set() and view.stats.blocks == blocks + 1
    assert view.entry_time(txids[0]) is None  # mined: no longer in the mempool
    # The block used up numbers without announcing them; the next event still fits.
    later = chain.pay()
    assert watch(view, lambda s: later in s.added).added == [later]
    assert view.stats.listings == listings and view.stats.gaps == 0


def test_a_replacement_removes_the_original(chain: Chain, feed: ZmqSequenceFeed) -> None:
    view = live_view(chain, feed)
    original = chain.pay()
    watch(view, lambda s: original in s.added)
    listings = view.stats.listings
    replacement = chain.replace(original)
    seen = watch(view, lambda s: replacement in s.added)
    assert seen.added == [replacement] and seen.removed == {original}
    assert original not in view and replacement in view
    assert view.stats.listings == listings


def test_a_block_with_a_conflicting_spend_removes_the_payment(
    chain: Chain, feed: ZmqSequenceFeed
) -> None:
    view = live_view(chain, feed)
    mined, payment = chain.pay(), chain.pay()
    watch(view, lambda s: payment in s.added)
    listings = view.stats.listings
    vin = chain.rpc("getrawtransaction", payment, True)["vin"][0]
    conflict = signed(chain.payer.secret, (vin["txid"], vin["vout"], COIN_SAT), OTHER, 990_000)
    # `mined` leaves silently (a number used, no message), then the payment is announced as
    # removed: the block spends its coin elsewhere.
    chain.rpc("generateblock", chain.payer.address, [mined, conflict])
    seen = watch(view, lambda s: payment in s.removed and mined in s.removed)
    assert seen.added == [] and payment not in view and mined not in view
    later = chain.pay()
    assert watch(view, lambda s: later in s.added).added == [later]
    assert view.stats.listings == listings and view.stats.gaps == 0


def test_a_reorg_brings_transactions_back_and_takes_them_again(
    chain: Chain, feed: ZmqSequenceFeed
) -> None:
    view = live_view(chain, feed)
    first = [*view.txids, chain.pay(), chain.pay()]  # with the payments that proved the feed
    block = chain.mine(1)[0]
    second = chain.pay()
    chain.mine(1)
    watch(view, lambda s: not view.txids)  # `second` may come and go between two syncs
    listings = view.stats.listings
    chain.rpc("invalidateblock", block)  # both blocks leave: their transactions come back
    seen = watch(view, lambda s: set(s.added) == {*first, second})
    assert seen.removed == set()
    chain.rpc("reconsiderblock", block)  # Core connects both blocks in one step
    seen = watch(view, lambda s: not view.txids)
    assert seen.removed == {*first, second} and seen.added == []
    later = chain.pay()
    assert watch(view, lambda s: later in s.added).added == [later]
    assert view.stats.listings == listings and view.stats.gaps == 0


# --- losses, the floor, the node going away ------------------------------------------------
def test_a_lost_message_forces_a_listing(chain: Chain, feed: ZmqSequenceFeed) -> None:
    dropping = DroppingFeed(feed)
    view = live_view(chain, dropping)
    listings = view.stats.listings
    dropping.drop = 1
    lost, after = chain.pay(), chain.pay()  # "added" of `lost` never reaches the view
    seen = watch(view, lambda s: lost in s.added)  # no block explains the gap: it lists
    assert [e.hash for e in dropping.dropped] == [lost]
    assert seen.added == [after, lost]  # `after` at once from its event, `lost` from the listing
    assert view.stats.gaps == 1 and view.stats.listings == listings + 1
    later = chain.pay()  # and events carry on from the new listing
    assert watch(view, lambda s: later in s.added).added == [later]
    assert view.stats.listings == listings + 1


def test_a_lost_last_message_is_caught_by_the_safety_net(
    chain: Chain, feed: ZmqSequenceFeed
) -> None:
    dropping, clock = DroppingFeed(feed), Clock()
    view = live_view(chain, dropping, clock)
    dropping.drop = 1
    lost = chain.pay()
    deadline = time.monotonic() + WAIT_S
    while not dropping.dropped:  # nothing follows it: the numbers cannot tell
        assert view.sync() == MempoolDelta([], set(), True)
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert lost not in view
    clock.now += view.resync_seconds
    delta = view.sync()
    assert delta == MempoolDelta([lost], set(), True, resynced=True)
    assert view.stats.mismatches == 1 and not view.live  # lists until the feed proves itself


def test_without_zmq_every_sync_diffs_a_listing(chain: Chain) -> None:
    view = MempoolView(chain.node)
    start = view.sync()
    assert start.complete and start.resynced and start.removed == set()
    assert set(start.added) == set(chain.rpc("getrawmempool"))
    txids = [chain.pay(), chain.pay()]
    delta = view.sync()
    assert set(delta.added) == set(txids) and delta.removed == set() and delta.resynced
    assert view.sync() == MempoolDelta([], set(), True, resynced=True)
    replacement = chain.replace(txids[0])
    assert view.sync() == MempoolDelta([replacement], {txids[0]}, True, resynced=True)
    chain.mine(1)
    delta = view.sync()
    assert delta.added == [] and delta.removed == {*start.added, txids[1], replacement}
    assert view.stats.listings == 5 and view.stats.events == 0
    kept = chain.pay()
    assert view.sync().added == [kept]
    view.reset()  # e.g. after losing the lease: everything is new again
    assert view.sync() == MempoolDelta([kept], set(), True, resynced=True)


@pytest.mark.parametrize("with_zmq", [True, False], ids=["zmq", "no-zmq"])
def test_a_node_that_is_down_is_unknown_and_changes_nothing(
    chain: Chain, feed: ZmqSequenceFeed, with_zmq: bool
) -> None:
    view = live_view(chain, feed) if with_zmq else MempoolView(chain.node)
    paid = chain.pay()
    watch(view, lambda s: paid in view)
    held = set(view.txids)
    chain.stop()
    deadline = time.monotonic() + WAIT_S
    while with_zmq and feed.connected:  # the subscription notices the node went away
        assert time.monotonic() < deadline
        time.sleep(0.02)
    for _ in range(2):
        assert view.sync() == MempoolDelta([], set(), complete=False)
    assert view.txids == held and paid in view
    with pytest.raises(NodeUnavailableError):
        view.entry_time("cd" * 32)
    chain.start()  # same datadir and ports: the mempool was saved on shutdown
    seen = watch(view, lambda s: True)
    assert seen.added == [] and seen.removed == set() and view.txids == held
    later = chain.pay()
    assert watch(view, lambda s: later in s.added).added == [later]


# --- the feed and the view against Core's recorded stream ----------------------------------
def recorded(name: str) -> dict[str, Any]:
    (path,) = FIXTURES.glob(f"{name}_*.json")
    return json.loads(path.read_text())  # type: ignore[no-any-return]


def recorded_stream() -> list[dict[str, Any]]:
    """Every recorded message, in order (zmq_01 ... zmq_09: one chain history)."""
    return [m for n in range(1, 10) for m in recorded(f"zmq_{n:02d}")["messages"]]


def test_the_feed_decodes_cores_messages_and_notices_a_skipped_counter() -> None:
    messages = [m for m in recorded_stream() if m["topic"] == "sequence"]
    url = f"tcp://127.0.0.1:{free_port()}"
    context: zmq.Context[Any] = zmq.Context()
    publisher = context.socket(zmq.PUB)
    publisher.setsockopt(zmq.LINGER, 0)
    publisher.bind(url)
    feed = ZmqSequenceFeed(url)
    feed.start()

    def publish(message: dict[str, Any]) -> None:
        frames = [
            b"sequence",
            bytes.fromhex(message["body_hex"]),
            bytes.fromhex(message["seq_hex"]),
        ]
        publisher.send_multipart(frames)

    try:
        deadline = time.monotonic() + WAIT_S
        while not feed.messages:  # until the subscription has reached the publisher
            publisher.send_multipart([b"hashblock", bytes(32), struct.pack("<I", 0)])
            assert time.monotonic() < deadline
            time.sleep(0.02)
        feed.drain()
        for message in messages[:-2]:
            publish(message)
        publish(messages[-1])  # the counter skips one
        events: list[MempoolEvent] = []
        lost = False
        while len(events) < len(messages) - 1:
            assert time.monotonic() < deadline
            batch = feed.drain()
            events, lost = events + batch.events, lost or batch.lost
            time.sleep(0.02)
    finally:
        feed.stop()
        publisher.close()
        context.term()
    assert lost
    wanted = [
        (m["decoded"]["hash"], m["decoded"]["label"], m["decoded"].get("mempool_sequence"))
        for m in messages[:-2] + messages[-1:]
    ]
    labels = {
        MempoolEventKind.TX_ADDED: "A",
        MempoolEventKind.TX_REMOVED: "R",
        MempoolEventKind.BLOCK_CONNECTED: "C",
        MempoolEventKind.BLOCK_DISCONNECTED: "D",
    }
    assert [(e.hash, labels[e.kind], e.mempool_sequence) for e in events] == wanted
    assert decode_sequence(b"\x00" * 32 + b"A") is None  # A without its number


class RecordedNode:
    """Core's recorded answers: the listing of 014 and the blocks' txids (getblock 1)."""

    def __init__(self) -> None:
        self.listings = 0
        self.blocks = {
            (result := recorded(name)["response"]["result"])["hash"]: result["tx"]
            for name in ("031", "050", "051")
        }
        # Block 104 has no getblock recording; its transactions are the rawtx of zmq_09.
        (connected,) = [e for e in step_events(9) if e.kind is MempoolEventKind.BLOCK_CONNECTED]
        self.blocks[connected.hash] = [
            m["decoded"]["txid"] for m in recorded("zmq_09")["messages"] if m["topic"] == "rawtx"
        ]

    def mempool_snapshot(self) -> MempoolSnapshot:
        self.listings += 1
        result = recorded("014")["response"]["result"]
        return MempoolSnapshot(result["txids"], result["mempool_sequence"])

    def mempool_entry_times(self, txids: Any) -> dict[str, datetime | None]:
        raise AssertionError("not asked for here")

    def block_txids(self, block_hash: str) -> list[str] | None:
        return self.blocks.get(block_hash)


class RecordedFeed:
    def __init__(self) -> None:
        self.events: list[MempoolEvent] = []

    def drain(self) -> FeedBatch:
        events, self.events = self.events, []
        return FeedBatch(events, True, 1, False)


def step_events(step: int) -> list[MempoolEvent]:
    """The `sequence` events Core published in recorded step zmq_<step>."""
    decoded = [
        decode_sequence(bytes.fromhex(m["body_hex"]))
        for m in recorded(f"zmq_{step:02d}")["messages"]
        if m["topic"] == "sequence"
    ]
    return [event for event in decoded if event is not None]


def test_cores_recorded_history_needs_one_listing_only() -> None:
    """The 014 listing, then Core's own messages: mine, reorg, RBF, double spend, mine."""
    node, feed = RecordedNode(), RecordedFeed()
    view = MempoolView(node, feed)
    payment = "955ee3dc0224f3dde8ed31ab190ed5d2e1eaa9263fea187777b3967954e78a66"
    assert view.sync() == MempoolDelta([payment], set(), True, resynced=True)
    # A block right after a listing cannot be placed before or after it until a transaction
    # event does: step 2 (block) waits, step 3 (reorg: the payment back, number 3) places it.
    original = "37c4b16c1df30829ccb36548f9d0e299204eb9680ea028f2032081c6ef506416"
    bumped = "883d76a6ce8bf18aac72aece2b970be66f2a278588c8c7d5f5efdbae08a06cf7"
    double_spend = "a0417ce590e5c4426371de1643f525d4d6f5682ad605e357cd5a7ce0d238b3ba"
    # (steps, added, removed, Core's getrawmempool recorded after those steps)
    steps: list[tuple[list[int], list[str], set[str], str | None]] = [
        ([1], [], set(), None),  # the payment's own "added" (1 < 2): already in the listing
        ([2], [], set(), None),  # mined (number 2 used silently): held, nothing removed yet
        ([3], [], set(), "045"),  # back by a reorg (3): the block came after the listing
        ([4], [], {payment}, None),  # mined again by the longer chain (4, silently)
        ([6], [original], set(), None),
        ([7], [bumped], {original}, "067"),  # bumpfee
        ([8], [double_spend], {bumped}, "077"),  # a conflicting spend with more fee
        ([9], [], {double_spend}, None),  # mined
    ]
    for numbers, added, removed, listing in steps:
        feed.events = [event for step in numbers for event in step_events(step)]
        assert view.sync() == MempoolDelta(added, removed, True), numbers
        if listing is not None:
            assert view.txids == set(recorded(listing)["response"]["result"]), listing
    assert view.txids == set() and node.listings == 1 and view.stats.gaps == 0
    assert view.stats.blocks == 4 and view.live


def test_a_recorded_block_alone_after_a_listing_costs_a_listing_not_a_guess() -> None:
    node, feed, clock = RecordedNode(), RecordedFeed(), Clock()
    view = MempoolView(node, feed, clock=clock)
    view.sync()
    feed.events = step_events(1) + step_events(2)  # mined: was that before the listing?
    assert view.sync() == MempoolDelta([], set(), True) and len(view) == 1
    clock.now += view.settle_seconds  # no transaction event came to tell
    assert view.sync().resynced and node.listings == 2  # it asks again instead of guessing


def test_a_recorded_message_dropped_from_cores_stream_is_a_gap() -> None:
    node, feed, clock = RecordedNode(), RecordedFeed(), Clock()
    view = MempoolView(node, feed, clock=clock)
    view.sync()
    feed.events = step_events(2) + step_events(3) + step_events(4) + step_events(6)
    view.sync()
    feed.events = step_events(7)[1:] + step_events(8)  # the replaced original's R is lost
    double_spend = step_events(8)[1].hash
    assert view.sync() == MempoolDelta([double_spend], set(), True)  # what came, as it came
    clock.now += view.settle_seconds  # and no block explains the missing number
    delta = view.sync()
    assert delta.resynced and view.stats.gaps == 1 and node.listings == 2


def test_an_event_that_came_with_the_first_listing_proves_the_feed() -> None:
    node, feed = RecordedNode(), RecordedFeed()
    feed.events = step_events(1)  # the payment's "added" arrives as the view starts
    view = MempoolView(node, feed)
    assert view.sync().resynced and view.live  # in the listing already, but it came
    feed.events = step_events(2) + step_events(3)
    assert view.sync() == MempoolDelta([], set(), True) and node.listings == 1
