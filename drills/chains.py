"""Chain drivers: one interface, our sandbox node or a real bitcoind (watcher tests and drills).

A driver plays the shopper (a funded wallet paying with RBF-signalling transactions, bumping
fees, double-spending), the miner (blocks, hand-built blocks, reorgs) and the node operator
(stops, restarts without the mempool or the wallet, pruning). On Core every step is what a real
shopper, miner or operator would do: wallet RPCs, `generateblock`, `invalidateblock`, restarts
with `-persistmempool=0`, `loadwallet` (which resubmits the wallet's unconfirmed transactions).
The sandbox driver does the same with our stand-in node and its one-key shopper wallet.

Faults (the drills): `terminate()` (SIGTERM), `kill()` (SIGKILL), `pause()` / `resume()`
(SIGSTOP / SIGCONT) act on the node's process — Core's, or the sandbox node's when it runs as
its own process (`SandboxChain(..., process=True)`, drills.sandbox_node); `start()` brings it
back on the same ports and datadir.
"""

from __future__ import annotations

import abc
import contextlib
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from drills.core_node import Bitcoind, JsonRpc, RpcError, core_binary, free_port
from drills.sandbox_node import NodeProcess
from sandbox.bitcoin.keys import p2wpkh_script, pubkey_of
from sandbox.bitcoin.node import DEFAULT_PASSWORD, DEFAULT_USER, MINER_ADDRESS, start_node
from sandbox.bitcoin.scripts import address_to_script, classify
from sandbox.bitcoin.wallet import RPC, ShopperWallet, parse_bip21
from settlement.chains.bitcoin_core import btc_to_sat

CHAINS = ("sandbox", "core")
# An address nobody watches: where double spends send the shopper's coins.
ELSEWHERE = classify(p2wpkh_script(pubkey_of(bytes(31) + b"\x09")))[1] or ""
# The shopper's coinbases are mature by this many blocks more than the deepest reorg (6), so
# a reorg never makes a payment's input immature (that would evict it: another scenario).
SHOPPER_COINBASES = 10
MINER_BLOCKS_AFTER_FUNDING = 120
EXTRA_FEE_SAT = 20_000  # what a fee bump or a double spend adds: beats every RBF rule


def btc(sat: int) -> str:
    """Satoshi as the exact BTC decimal text Core's RPCs accept."""
    return f"{sat // 100_000_000}.{sat % 100_000_000:08d}"


@dataclass
class Sent:
    """What the shopper remembers of a transaction it made (as a wallet would)."""

    coins: list[tuple[str, int, int]]  # (txid, vout, sat) spent
    outputs: list[tuple[str, int]]  # (address, sat) paid, change excluded
    fee_sat: int
    hex: str

    @property
    def value_in(self) -> int:
        return sum(coin[2] for coin in self.coins)


class Chain(abc.ABC):
    """One regtest node plus its shopper and miner, whatever the implementation."""

    kind: str

    def __init__(self) -> None:
        self.sent: dict[str, Sent] = {}
        self.wallet_loaded = True

    # --- the node ------------------------------------------------------------------------
    @property
    @abc.abstractmethod
    def url(self) -> str:
        """BITCOIN_RPC_URL of the node (stays the same across restarts)."""

    @property
    @abc.abstractmethod
    def zmq_url(self) -> str:
        """The node's -zmqpubsequence endpoint."""

    @abc.abstractmethod
    def rpc(self, method: str, *params: Any) -> Any:
        """A node (not wallet) RPC; raises RpcError with the node's code."""

    @abc.abstractmethod
    def stop(self) -> None:
        """Stop the node as bitcoind stops (its mempool is saved to disk)."""

    @abc.abstractmethod
    def start(self, persist_mempool: bool = True, load_wallet: bool = True) -> None:
        """Start it again on the same ports and datadir; optionally without the saved
        mempool (gone for good) and without loading the shopper's wallet."""

    @abc.abstractmethod
    def load_wallet(self) -> None:
        """Load the shopper's wallet; like Core it resubmits its unconfirmed transactions."""

    def restart(self, persist_mempool: bool = True, load_wallet: bool = True) -> None:
        self.stop()
        self.start(persist_mempool, load_wallet)

    # --- faults (the node's own process) ------------------------------------------------------
    def process(self) -> subprocess.Popen[bytes]:
        """The node's process; only a node that runs as its own process has one."""
        raise NotImplementedError(f"the {self.kind} node runs in this process")

    def terminate(self) -> None:
        """SIGTERM: a clean shutdown, as an init system stops it (the mempool is saved)."""
        self.stop()

    def kill(self) -> None:
        """SIGKILL: no shutdown at all; what was not on disk (the mempool) is gone."""
        process = self.process()
        process.kill()
        process.wait(30)

    def pause(self) -> None:
        """SIGSTOP: the node hangs; its sockets accept connections that are never answered."""
        self.process().send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.process().send_signal(signal.SIGCONT)

    def close(self) -> None:
        self.stop()

    def tip(self) -> int:
        return int(self.rpc("getblockcount"))

    def in_mempool(self, txid: str) -> bool:
        return txid in self.rpc("getrawmempool")

    def send_raw(self, raw_hex: str) -> str:
        return str(self.rpc("sendrawtransaction", raw_hex))

    def raw_tx(self, txid: str) -> str:
        """The signed transaction as the shopper saved it (to broadcast again later)."""
        return self.sent[txid].hex

    def prune(self, height: int) -> int:
        """pruneblockchain; returns the height of the last pruned block."""
        return int(self.rpc("pruneblockchain", height))

    # --- the miner -----------------------------------------------------------------------
    def mine(self, n: int = 1, to: str | None = None) -> list[str]:
        """Mine n blocks from the mempool, paying `to` (default: a miner nobody watches)."""
        hashes: list[str] = self.rpc("generatetoaddress", n, to or MINER_ADDRESS)
        return hashes

    def mine_block(self, txs: list[str], to: str | None = None) -> str:
        """generateblock: exactly these raw transactions or mempool txids, nothing else."""
        return str(self.rpc("generateblock", to or MINER_ADDRESS, txs)["hash"])

    def reorg(self, depth: int, remine: bool) -> list[str]:
        """Replace the last `depth` blocks by a longer chain of depth + 1 empty blocks.

        remine=True: their transactions go back to the mempool, so the next `mine()` confirms
        them in the new chain. remine=False: they are gone from the node for good (it restarts
        without its mempool and without the shopper's wallet, so nobody rebroadcasts them).
        """
        first = self.rpc("getblockhash", self.tip() - depth + 1)
        self.rpc("invalidateblock", first)
        if not remine:
            self.restart(persist_mempool=False, load_wallet=False)
        return [self.mine_block([]) for _ in range(depth + 1)]

    # --- the shopper ---------------------------------------------------------------------
    @abc.abstractmethod
    def pay(self, address: str, amount_sat: int) -> str:
        """An RBF-signalling wallet payment; returns its txid."""

    def pay_uri(self, uri: str) -> str:
        request = parse_bip21(uri)
        return self.pay(request.address, request.amount)

    @abc.abstractmethod
    def bump_fee(self, txid: str) -> str:
        """Replace `txid` by the same payment with a higher fee (less change)."""

    @abc.abstractmethod
    def conflicting_tx(self, txid: str, to: str = ELSEWHERE) -> str:
        """A signed transaction spending `txid`'s coins to `to` instead (not broadcast)."""

    def double_spend(self, txid: str, to: str = ELSEWHERE) -> str:
        """Broadcast the conflicting transaction (full RBF replaces `txid`); its txid."""
        return self.send_raw(self.conflicting_tx(txid, to))

    @abc.abstractmethod
    def raw_payment(self, outputs: list[tuple[str, int]]) -> str:
        """A signed transaction with exactly these (address, sat) outputs plus change, not
        broadcast: outputs no wallet would make (zero value, dust) for `mine_block`."""

    def txid_of(self, raw_hex: str) -> str:
        return str(self.rpc("decoderawtransaction", raw_hex)["txid"])


class SandboxChain(Chain):
    """Our stand-in node (sandbox.bitcoin), run like bitcoind without -txindex."""

    kind = "sandbox"

    def __init__(self, datadir: Path, prune: bool = False, process: bool = False) -> None:
        super().__init__()
        self.datadir = datadir
        self.pruning = prune
        self.own_process = process  # a process of its own (drills) or a thread of this one
        self._zmq_url = f"tcp://127.0.0.1:{free_port()}"
        self.node = self._start_node(0)
        self.port = self.node.port
        self.wallet_dir = datadir / "shopper"
        shopper = self._wallet()
        self.mine(SHOPPER_COINBASES, shopper.address)
        self.mine(MINER_BLOCKS_AFTER_FUNDING)

    def _start_node(self, port: int) -> Any:
        if self.own_process:
            return NodeProcess.start(self.datadir / "node", port, self._zmq_url, self.pruning)
        return start_node(
            self.datadir / "node",
            rpcport=port,
            zmqpubsequence=self._zmq_url,
            txindex=False,
            prune=self.pruning,
        )

    def process(self) -> subprocess.Popen[bytes]:
        if not isinstance(self.node, NodeProcess):
            return super().process()
        return self.node.process

    def terminate(self) -> None:
        self.stop()  # the node process stops cleanly on SIGTERM

    @property
    def url(self) -> str:
        return f"http://{DEFAULT_USER}:{DEFAULT_PASSWORD}@127.0.0.1:{self.port}"

    @property
    def zmq_url(self) -> str:
        return self._zmq_url

    def rpc(self, method: str, *params: Any) -> Any:
        return JsonRpc(self.port, DEFAULT_USER, DEFAULT_PASSWORD)(method, *params)

    def stop(self) -> None:
        self.node.stop()

    def start(self, persist_mempool: bool = True, load_wallet: bool = True) -> None:
        if not persist_mempool:
            (self.datadir / "node" / "mempool.json").unlink(missing_ok=True)
        self.node = self._start_node(self.port)
        self.wallet_loaded = False
        if load_wallet:
            self.load_wallet()

    def load_wallet(self) -> None:
        self.wallet_loaded = True
        for sent in self.sent.values():  # Core resubmits every unconfirmed wallet tx
            # Mined, replaced or conflicted ones are refused; Core's resubmission skips them.
            with contextlib.suppress(RpcError):
                self.send_raw(sent.hex)

    def prune(self, height: int) -> int:
        self._wallet().refresh()  # Core's wallet follows every block as it connects
        return super().prune(height)

    def _wallet(self) -> ShopperWallet:
        if not self.wallet_loaded:
            raise RuntimeError("the shopper's wallet is not loaded (call load_wallet)")
        return ShopperWallet(self.wallet_dir, RPC(self.url))

    def _send(
        self,
        wallet: ShopperWallet,
        coins: list[tuple[str, int, int]],
        outputs: list[tuple[str, int]],
        min_fee: int = 0,
    ) -> str:
        scripts = [(address_to_script(address), sat) for address, sat in outputs]
        txid, tx, fee = wallet.send(coins, scripts, min_fee=min_fee)
        self.sent[txid] = Sent(coins, outputs, fee, tx.serialize().hex())
        return txid

    def pay(self, address: str, amount_sat: int) -> str:
        wallet = self._wallet()
        coins = wallet.coins_for(amount_sat + 2_000)
        return self._send(wallet, coins, [(address, amount_sat)])

    def bump_fee(self, txid: str) -> str:
        sent = self.sent[txid]
        return self._send(
            self._wallet(), sent.coins, sent.outputs, min_fee=sent.fee_sat + EXTRA_FEE_SAT
        )

    def conflicting_tx(self, txid: str, to: str = ELSEWHERE) -> str:
        sent = self.sent[txid]
        fee = sent.fee_sat + EXTRA_FEE_SAT
        tx = self._wallet().build(sent.coins, [(address_to_script(to), sent.value_in - fee)], fee)
        return str(tx.serialize().hex())

    def raw_payment(self, outputs: list[tuple[str, int]]) -> str:
        wallet = self._wallet()
        fee = 10_000
        coins = wallet.coins_for(sum(sat for _a, sat in outputs) + fee)
        tx = wallet.build(coins, [(address_to_script(a), sat) for a, sat in outputs], fee)
        raw = str(tx.serialize().hex())
        txid = self.txid_of(raw)
        # Keep the wallet from spending these coins again before the block is mined.
        for coin in coins:
            wallet.data["coins"].pop(f"{coin[0]}:{coin[1]}", None)
        for n, out in enumerate(tx.vout):
            if bytes(out.scriptPubKey) == wallet.spk:
                wallet.data["coins"][f"{txid}:{n}"] = {"value": out.nValue, "local": True}
        wallet.save()
        self.sent[txid] = Sent(coins, outputs, fee, raw)
        return raw


class CoreChain(Chain):
    """A real regtest bitcoind (no -txindex, like most merchants' nodes) and its wallet."""

    kind = "core"
    WALLET = "shopper"

    def __init__(self, datadir: Path, prune: bool = False, binary: Path | None = None) -> None:
        super().__init__()
        extra = ["-prune=1", "-fastprune"] if prune else []
        self.node = Bitcoind(binary or core_binary(), datadir, extra)
        self.node.start()
        try:
            # Not loaded on startup: a restart leaves it unloaded until load_wallet().
            self.rpc("createwallet", self.WALLET, False, False, "", False, True, False)
            self.mine(SHOPPER_COINBASES, self.wallet("getnewaddress"))
            self.mine(MINER_BLOCKS_AFTER_FUNDING)
        except BaseException:
            self.node.kill()
            raise

    @property
    def url(self) -> str:
        return self.node.url

    @property
    def zmq_url(self) -> str:
        return self.node.zmq_url

    def rpc(self, method: str, *params: Any) -> Any:
        return self.node.rpc(method, *params)

    def wallet(self, method: str, *params: Any) -> Any:
        return self.node.rpc(method, *params, wallet=self.WALLET)

    def stop(self) -> None:
        self.node.stop()

    def start(self, persist_mempool: bool = True, load_wallet: bool = True) -> None:
        self.node.start(persist_mempool)
        self.wallet_loaded = False
        if load_wallet:
            self.load_wallet()

    def load_wallet(self) -> None:
        self.rpc("loadwallet", self.WALLET)
        self.wallet_loaded = True

    def close(self) -> None:
        try:
            self.node.stop()
        finally:
            self.node.kill()

    def process(self) -> subprocess.Popen[bytes]:
        if self.node.process is None:
            raise RuntimeError("bitcoind is not running")
        return self.node.process

    def terminate(self) -> None:
        self.node.terminate()

    def kill(self) -> None:
        # A node that has run for a while has flushed its chainstate; a fresh regtest node has
        # not, and a SIGKILL would lose its whole chain (it has no peers to fetch it from).
        # gettxoutsetinfo flushes it, so the kill loses what a real one loses: the mempool.
        self.rpc("gettxoutsetinfo", "none")
        self.node.kill()

    def _remember(self, txid: str, outputs: list[tuple[str, int]]) -> str:
        info = self.wallet("gettransaction", txid, True, True)
        coins = []
        for vin in info["decoded"]["vin"]:
            previous = self.wallet("gettransaction", vin["txid"], True, True)["decoded"]
            coins.append(
                (vin["txid"], vin["vout"], btc_to_sat(previous["vout"][vin["vout"]]["value"]))
            )
        self.sent[txid] = Sent(coins, outputs, -btc_to_sat(info["fee"]), info["hex"])
        return txid

    def pay(self, address: str, amount_sat: int) -> str:
        # sendtoaddress address amount comment comment_to subtractfeefromamount replaceable
        txid = self.wallet("sendtoaddress", address, btc(amount_sat), "", "", False, True)
        return self._remember(str(txid), [(address, amount_sat)])

    def bump_fee(self, txid: str) -> str:
        sent = self.sent[txid]
        vsize = int(self.rpc("getmempoolentry", txid)["vsize"])
        rate = sent.fee_sat // vsize + EXTRA_FEE_SAT // vsize  # sat/vB
        bumped = self.wallet("bumpfee", txid, {"fee_rate": rate})["txid"]
        return self._remember(str(bumped), sent.outputs)

    def _sign(self, raw: str, coins: list[tuple[str, int, int]]) -> str:
        # The coins' scripts and amounts are given, so signing works even while another
        # transaction (the one being double-spent) spends them in the mempool.
        previous = []
        for txid, vout, sat in coins:
            tx = self.wallet("gettransaction", txid, True, True)["decoded"]
            script = tx["vout"][vout]["scriptPubKey"]["hex"]
            previous.append(
                {"txid": txid, "vout": vout, "scriptPubKey": script, "amount": btc(sat)}
            )
        signed = self.wallet("signrawtransactionwithwallet", raw, previous)
        if not signed["complete"]:
            raise RuntimeError(f"the wallet could not sign: {signed.get('errors')}")
        return str(signed["hex"])

    def conflicting_tx(self, txid: str, to: str = ELSEWHERE) -> str:
        sent = self.sent[txid]
        inputs = [{"txid": t, "vout": n, "sequence": 0xFFFFFFFD} for t, n, _v in sent.coins]
        amount = sent.value_in - sent.fee_sat - EXTRA_FEE_SAT
        raw = self.rpc("createrawtransaction", inputs, [{to: btc(amount)}])
        return self._sign(str(raw), sent.coins)

    def raw_payment(self, outputs: list[tuple[str, int]]) -> str:
        fee = 10_000
        unspent = self.wallet("listunspent", 1)
        coin = max(unspent, key=lambda u: u["amount"])
        value = btc_to_sat(coin["amount"])
        change = value - sum(sat for _a, sat in outputs) - fee
        raw = self.rpc(
            "createrawtransaction",
            [{"txid": coin["txid"], "vout": coin["vout"], "sequence": 0xFFFFFFFD}],
            [{address: btc(sat)} for address, sat in outputs]
            + [{self.wallet("getrawchangeaddress"): btc(change)}],
        )
        coins = [(str(coin["txid"]), int(coin["vout"]), value)]
        signed = self._sign(str(raw), coins)
        # Keep the wallet from spending this coin again before the block is mined.
        self.wallet("lockunspent", False, [{"txid": coin["txid"], "vout": coin["vout"]}])
        self.sent[self.txid_of(signed)] = Sent(coins, outputs, fee, signed)
        return signed


def make_chain(kind: str, datadir: Path, prune: bool = False, process: bool = False) -> Chain:
    """A driver of that kind; `process`: the sandbox node in a process of its own."""
    if kind == "core":
        return CoreChain(datadir, prune=prune)
    return SandboxChain(datadir, prune=prune, process=process)
