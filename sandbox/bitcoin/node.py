"""Programmatic start/stop of the regtest node stand-in (HTTP server in a thread)."""

from __future__ import annotations

import hashlib
import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path

from .keys import p2wpkh_script, pubkey_of
from .scripts import classify
from .server import RPCServer, serve_in_thread
from .state import NodeState

log = logging.getLogger(__name__)

DEFAULT_RPCPORT = 18443
DEFAULT_USER = "cryptocity"
DEFAULT_PASSWORD = "cryptocity"
# Interval mining pays a fixed sandbox-owned key so nothing depends on a wallet.
MINER_SECRET = hashlib.sha256(b"cryptocity-sandbox-miner").digest()
MINER_SPK = p2wpkh_script(pubkey_of(MINER_SECRET))
MINER_ADDRESS = classify(MINER_SPK)[1] or ""


@dataclass
class RunningNode:
    """A node serving JSON-RPC on 127.0.0.1; call :meth:`stop` when done."""

    state: NodeState
    server: RPCServer
    rpcuser: str
    rpcpassword: str
    _threads: list[threading.Thread] = field(default_factory=list)
    _stopping: threading.Event = field(default_factory=threading.Event)
    stopped: threading.Event = field(default_factory=threading.Event)

    @property
    def port(self) -> int:
        """The TCP port the RPC server listens on."""
        return int(self.server.server_address[1])

    @property
    def url(self) -> str:
        """``http://user:pass@127.0.0.1:PORT`` (what bitcoin.rpc.Proxy wants)."""
        return f"http://{self.rpcuser}:{self.rpcpassword}@127.0.0.1:{self.port}"

    def stop(self) -> None:
        """Stop serving, stop the miner, close the datadir (idempotent)."""
        if self._stopping.is_set():
            self.stopped.wait(10)
            return
        self._stopping.set()
        self.server.shutdown()
        self.server.close_connections()
        self.server.server_close()
        for t in self._threads:
            if t is not threading.current_thread():
                t.join(5)
        self.state.close()
        self.stopped.set()

    def _mine_loop(self, interval: float) -> None:
        while not self._stopping.wait(interval):
            try:
                self.state.mine(1, MINER_SPK)
            except Exception:  # keep the sandbox alive; report and carry on
                log.exception("interval mining failed")


def start_node(
    datadir: Path,
    rpcport: int = 0,
    rpcuser: str = DEFAULT_USER,
    rpcpassword: str = DEFAULT_PASSWORD,
    mine_interval: float = 0,
    zmqpubsequence: str | None = None,
    zmqpubhashblock: str | None = None,
    zmqpubrawtx: str | None = None,
    txindex: bool = True,
    prune: bool = False,
) -> RunningNode:
    """Open (or create) the chain in ``datadir`` and serve JSON-RPC in a background thread.

    ``rpcport=0`` picks a free port (see ``RunningNode.port``). ``mine_interval`` > 0 mines
    a block every that many seconds to a sandbox-owned address. ``txindex=False`` behaves
    like bitcoind without ``-txindex`` (getrawtransaction finds mined transactions only with
    a block hash); ``prune=True`` like ``-prune=1`` (manual ``pruneblockchain``).
    """
    endpoints = {"sequence": zmqpubsequence, "hashblock": zmqpubhashblock, "rawtx": zmqpubrawtx}
    state = NodeState(Path(datadir), endpoints, txindex=txindex, prune=prune)
    try:
        server = RPCServer(rpcport, state, rpcuser, rpcpassword)
    except OSError:
        state.close()
        raise
    node = RunningNode(state, server, rpcuser, rpcpassword)
    node._threads.append(serve_in_thread(server))
    state.stop_hooks.append(node.stop)
    if mine_interval > 0:
        miner = threading.Thread(
            target=node._mine_loop, args=(mine_interval,), name="btc-sandbox-miner", daemon=True
        )
        miner.start()
        node._threads.append(miner)
    return node
