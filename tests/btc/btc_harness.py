"""Harness for watcher tests: a sandbox node, a merchant, the worker's duties, a shopper."""

from __future__ import annotations

import json
import time
import urllib.request
from base64 import b64encode
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.orm import selectinload

from pos import invoices
from pos.invoice_view import payment_uri
from pos.models import Invoice, Merchant
from pos.runtime import Runtime
from pos.states import PaymentMethod
from sandbox.bitcoin.keys import p2wpkh_script, pubkey_of
from sandbox.bitcoin.node import MINER_ADDRESS, RunningNode
from sandbox.bitcoin.wallet import RPC, ShopperWallet, pay_uri
from settlement.chains.bitcoin_core import btc_to_sat
from settlement.worker import Duty, WorkerState, all_duties, run_pass


def rpc(node: RunningNode, method: str, *params: Any) -> Any:
    parts = urlsplit(node.url)
    request = urllib.request.Request(
        f"http://{parts.hostname}:{parts.port}/",
        data=json.dumps(
            {"jsonrpc": "1.0", "id": 1, "method": method, "params": list(params)}
        ).encode(),
        headers={
            "Authorization": "Basic "
            + b64encode(f"{parts.username}:{parts.password}".encode()).decode()
        },
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read(), parse_float=Decimal)["result"]


@dataclass
class World:
    runtime: Runtime
    node: RunningNode
    merchant_id: int
    wallet_dir: Path
    duties: list[Duty]
    state: WorkerState

    def invoice(self, price_tiyn: int = 250_000) -> str:
        with self.runtime.session_factory() as session:
            created = invoices.create_invoice(
                session,
                self.runtime.settings,
                self.runtime.rates,
                invoices.InvoiceRequest(self.merchant_id, price_tiyn, PaymentMethod.BTC),
            )
            session.commit()
            invoices.publish_after_commit(
                self.runtime.session_factory, self.runtime.coordinator, session
            )
            return created.id

    def load(self, invoice_id: str) -> Invoice:
        with self.runtime.session_factory() as session:
            invoice = session.scalars(
                select(Invoice)
                .where(Invoice.id == invoice_id)
                .options(selectinload(Invoice.payments), selectinload(Invoice.events))
            ).one()
        return invoice

    def uri(self, invoice_id: str) -> str:
        with self.runtime.session_factory() as session:
            invoice = invoices.get_invoice(session, invoice_id)
            return payment_uri(invoice, self.runtime.settings, "Test Shop")

    def pay(self, invoice_id: str, **drills: Any) -> list[str]:
        return pay_uri(
            self.uri(invoice_id), rpc_url=self.node.url, wallet_dir=self.wallet_dir, **drills
        )

    def mine(self, blocks: int = 1) -> list[str]:
        hashes: list[str] = rpc(self.node, "generatetoaddress", blocks, MINER_ADDRESS)
        return hashes

    def close(self) -> None:
        for duty in self.duties:
            if duty.close is not None:
                duty.close()

    def tick(self) -> dict[str, int]:
        return run_pass(self.runtime, self.duties, self.state, force=True)

    def until(
        self, invoice_id: str, ready: Callable[[Invoice], bool], timeout: float = 30.0
    ) -> Invoice:
        """Run worker passes until the invoice satisfies `ready` (bounded; fails loudly)."""
        deadline = time.monotonic() + timeout
        while True:
            self.tick()
            invoice = self.load(invoice_id)
            if ready(invoice):
                return invoice
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"invoice {invoice_id} stuck at {invoice.status} {invoice.flags}, "
                    f"paid {invoice.amount_paid_atomic}/{invoice.amount_due_atomic}"
                )
            time.sleep(0.05)


def coins_of(world: World, txid: str) -> list[tuple[str, int, int]]:
    """The (txid, vout, satoshi) coins a transaction spends."""
    coins = []
    for vin in rpc(world.node, "getrawtransaction", txid, True)["vin"]:
        previous = rpc(world.node, "getrawtransaction", vin["txid"], True)
        coins.append((vin["txid"], vin["vout"], btc_to_sat(previous["vout"][vin["vout"]]["value"])))
    return coins


def double_spend(world: World, txid: str, fee_sat: int = 20_000) -> str:
    """Replace `txid` by a higher-fee transaction sending the same coins to another key."""
    wallet = ShopperWallet(world.wallet_dir, RPC(world.node.url))
    coins = coins_of(world, txid)
    elsewhere = p2wpkh_script(pubkey_of(bytes(31) + b"\x09"))
    new_txid, _tx, _fee = wallet.send(
        coins, [(elsewhere, sum(c[2] for c in coins) - fee_sat)], min_fee=fee_sat
    )
    return new_txid


def make_world(runtime: Runtime, node: RunningNode, tmp_path: Path, merchant: Merchant) -> World:
    runtime.settings = runtime.settings.with_overrides(bitcoin_rpc_url=node.url)
    world = World(
        runtime,
        node,
        merchant.id,
        tmp_path / "shopper",
        all_duties(runtime.settings),
        WorkerState(),
    )
    world.tick()  # first pass: rebuild the live state, checkpoint at the tip
    return world
