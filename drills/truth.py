"""Reading the truth for the audit: the chains' own view of each payment, the database's view
of each invoice, and what the webhook receiver got."""

from __future__ import annotations

import json
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import case, func, select

from drills.audit import Event, InvoiceFacts, Truth
from drills.chains import Chain
from drills.core_node import RpcError
from pos.integrations import Webhook, verify_signature
from pos.models import Invoice, InvoiceEvent, Payment
from pos.runtime import Runtime
from settlement.ledger.models import LedgerEntry, LedgerTransaction, Side, TransactionKind

_IN_CHUNK = 400
_STATUSES_PER_CALL = 256


class BtcTruth:
    """The best chain from a height on, read block by block (cached by hash) plus the mempool."""

    def __init__(self, chain: Chain, from_height: int) -> None:
        self.chain = chain
        self.from_height = from_height
        self.blocks: dict[str, tuple[set[str], dict[str, str]]] = {}  # hash -> (txids, spends)

    def judge(self, txids: Iterable[str]) -> dict[str, Truth]:
        mined: set[str] = set()
        spent_by: dict[str, str] = {}  # "txid:vout" -> the transaction spending it
        for height in range(self.from_height + 1, self.chain.tip() + 1):
            block_hash = str(self.chain.rpc("getblockhash", height))
            if block_hash not in self.blocks:
                block = self.chain.rpc("getblock", block_hash, 2)
                spends = {
                    f"{vin['txid']}:{vin['vout']}": tx["txid"]
                    for tx in block["tx"]
                    for vin in tx["vin"]
                    if "txid" in vin
                }
                self.blocks[block_hash] = ({tx["txid"] for tx in block["tx"]}, spends)
            block_txids, block_spends = self.blocks[block_hash]
            mined |= block_txids
            spent_by.update(block_spends)
        mempool = set(self.chain.rpc("getrawmempool"))
        out: dict[str, Truth] = {}
        for txid in txids:
            if txid in mined:
                out[txid] = Truth.FINAL  # the merchant's policy: one block
            elif txid in mempool:
                out[txid] = Truth.PENDING
            elif any(
                spent_by.get(f"{c_txid}:{c_vout}", txid) != txid
                for c_txid, c_vout, _sat in self.chain.sent[txid].coins
            ):
                out[txid] = Truth.CONFLICTED
            else:
                out[txid] = Truth.GONE
        return out

    def mempool_has_any(self, txids: Collection[str]) -> bool:
        try:
            return bool(set(self.chain.rpc("getrawmempool")) & set(txids))
        except (OSError, RpcError):
            return True  # cannot tell yet


def kzte_truth(rpc_url: str, signatures: Collection[str]) -> dict[str, Truth]:
    """getSignatureStatuses over the whole history, straight from the validator."""
    ordered = sorted(signatures)
    out: dict[str, Truth] = {}
    for start in range(0, len(ordered), _STATUSES_PER_CALL):
        batch = ordered[start : start + _STATUSES_PER_CALL]
        body = json.dumps(
            {
                "jsonrpc": "2.0",
                "id": 1,
                "method": "getSignatureStatuses",
                "params": [batch, {"searchTransactionHistory": True}],
            }
        ).encode()
        request = urllib.request.Request(rpc_url, body, {"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as answer:
            values = json.loads(answer.read())["result"]["value"]
        for signature, status in zip(batch, values, strict=True):
            if status is None or status.get("err") is not None:
                out[signature] = Truth.GONE
            elif status.get("confirmationStatus") == "finalized":
                out[signature] = Truth.FINAL
            else:
                out[signature] = Truth.PENDING
    return out


def load_facts(rt: Runtime, invoice_ids: Collection[str]) -> dict[str, InvoiceFacts]:
    """Status, payments, events and ledger postings of each invoice, in a few queries."""
    ids = sorted(invoice_ids)
    facts: dict[str, InvoiceFacts] = {}
    signed = case((LedgerEntry.side == Side.DEBIT, LedgerEntry.amount_tiyn), else_=0) - case(
        (LedgerEntry.side == Side.CREDIT, LedgerEntry.amount_tiyn), else_=0
    )
    with rt.session_factory() as session:
        for start in range(0, len(ids), _IN_CHUNK):
            chunk = ids[start : start + _IN_CHUNK]
            for invoice_id, status in session.execute(
                select(Invoice.id, Invoice.status).where(Invoice.id.in_(chunk))
            ):
                facts[invoice_id] = InvoiceFacts(status)
            for p in session.execute(
                select(Payment.invoice_id, Payment.txid, Payment.output_index, Payment.status)
                .where(Payment.invoice_id.in_(chunk))
                .order_by(Payment.id)
            ):
                facts[p.invoice_id].payments.append((p.txid, p.output_index, p.status.value))
            for e in session.execute(
                select(InvoiceEvent)
                .where(InvoiceEvent.invoice_id.in_(chunk))
                .order_by(InvoiceEvent.invoice_id, InvoiceEvent.invoice_version)
            ).scalars():
                facts[e.invoice_id].events.append(
                    Event(e.type, e.from_status, e.to_status, e.created_at)
                )
            for txn in session.execute(
                select(LedgerTransaction.invoice_id, LedgerTransaction.kind).where(
                    LedgerTransaction.invoice_id.in_(chunk),
                    LedgerTransaction.fact == "allocation",  # the sale, not its receipts
                )
            ):
                if txn.kind is TransactionKind.SETTLEMENT:
                    facts[txn.invoice_id].settlements += 1
                elif txn.kind is TransactionKind.REVERSAL:
                    facts[txn.invoice_id].reversals += 1
            for owner, _txn_id in session.execute(
                select(LedgerTransaction.invoice_id, LedgerTransaction.id)
                .join(LedgerEntry, LedgerEntry.transaction_id == LedgerTransaction.id)
                .where(LedgerTransaction.invoice_id.in_(chunk))
                .group_by(LedgerTransaction.invoice_id, LedgerTransaction.id)
                .having(func.sum(signed) != 0)
            ):
                if owner is not None:
                    facts[owner].unbalanced_postings += 1
    return facts


@dataclass
class Whole:
    """Checks of the whole database, beyond the drills' own invoices."""

    invoices: int = 0
    strangers: list[str] = field(default_factory=list)  # invoices no drill created
    unbalanced_transactions: int = 0  # any ledger transaction, with or without an invoice
    ledger_sum_tiyn: int = 0  # all debits minus all credits: 0 when every one balances


def whole_database(rt: Runtime, known: Collection[str]) -> Whole:
    signed = case((LedgerEntry.side == Side.DEBIT, LedgerEntry.amount_tiyn), else_=0) - case(
        (LedgerEntry.side == Side.CREDIT, LedgerEntry.amount_tiyn), else_=0
    )
    with rt.session_factory() as session:
        ids = set(session.scalars(select(Invoice.id)).all())
        unbalanced = session.execute(
            select(LedgerEntry.transaction_id)
            .group_by(LedgerEntry.transaction_id)
            .having(func.sum(signed) != 0)
        ).all()
        total = session.scalar(select(func.coalesce(func.sum(signed), 0)))
    return Whole(len(ids), sorted(ids - set(known)), len(unbalanced), int(total or 0))


@dataclass
class Deliveries:
    """The webhook receiver's log against the database's events."""

    events: int = 0  # events the webhook subscribes to, since it was created
    received: int = 0  # POSTs the receiver acknowledged
    undelivered: list[str] = field(default_factory=list)  # event ids never received
    repeats: int = 0  # second and later receipts of an id (at-least-once allows them)
    changed_bodies: int = 0  # an id received with different bytes (ids must be stable)
    bad_signatures: int = 0
    lag_seconds: list[float] = field(default_factory=list)  # first receipt - event time


def webhook_deliveries(rt: Runtime, log_path: Path, secret: str) -> Deliveries:
    received: dict[str, list[tuple[float, str]]] = defaultdict(list)
    out = Deliveries()
    lines = log_path.read_text().splitlines() if log_path.exists() else []
    for line in lines:
        item: dict[str, Any] = json.loads(line)
        body = str(item["body"]).encode()
        out.received += 1
        if not verify_signature(secret, item["signature"] or "", body, int(item["at"])):
            out.bad_signatures += 1
        event_id = str(item["id"])
        if json.loads(body).get("id") != event_id:
            out.bad_signatures += 1  # the header and the body disagree
        received[event_id].append((float(item["at"]), str(item["body"])))
    with rt.session_factory() as session:
        hook = session.scalars(select(Webhook)).one()
        events = session.execute(
            select(InvoiceEvent.id, InvoiceEvent.created_at)
            .join(Invoice, Invoice.id == InvoiceEvent.invoice_id)
            .where(
                Invoice.merchant_id == hook.merchant_id,
                InvoiceEvent.type.in_(hook.event_type_list),
                InvoiceEvent.created_at >= hook.deliver_from,
            )
        ).all()
    out.events = len(events)
    for event_id, created_at in events:
        got = received.get(event_id)
        if not got:
            out.undelivered.append(event_id)
            continue
        out.repeats += len(got) - 1
        out.changed_bodies += int(len(Counter(body for _at, body in got)) > 1)
        first = min(at for at, _body in got)
        out.lag_seconds.append(first - created_at.astimezone(UTC).timestamp())
    return out


def now() -> datetime:
    return datetime.now(UTC)
