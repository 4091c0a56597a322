"""What the drills do to the stack as its users: create invoices over the REST API, pay them as
a shopper would, mine blocks — and remember every invoice and payment for the audit."""

from __future__ import annotations

import http.client
import json
import random
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import update

from drills.stack import Stack
from pos.models import Invoice
from pos.states import PaymentMethod
from sandbox.solana.wallet import pay_uri

API_RETRY_SECONDS = 60.0  # a create is retried (same Idempotency-Key) this long, then given up
API_TIMEOUT_SECONDS = 15.0


@dataclass
class Record:
    """One invoice a drill created, and what the shopper did with it."""

    drill: str
    invoice_id: str
    method: PaymentMethod
    uri: str
    expires_at: datetime
    txids: list[str] = field(default_factory=list)  # what the shopper broadcast for it
    paid_at: datetime | None = None  # when the first payment was accepted by the node


@dataclass
class Book:
    """Every record, and per drill the HTTP 5xx answers and notes (thread-safe)."""

    records: list[Record] = field(default_factory=list)
    server_errors: Counter[str] = field(default_factory=Counter)
    notes: dict[str, list[str]] = field(default_factory=dict)
    api_latency: list[float] = field(default_factory=list)  # seconds, the load drill's
    # Checks a drill made along the way that failed (counted as wrong states).
    failed_checks: dict[str, list[str]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, record: Record) -> None:
        with self.lock:
            self.records.append(record)

    def note(self, drill: str, text: str) -> None:
        with self.lock:
            self.notes.setdefault(drill, []).append(text)

    def fail(self, drill: str, what: str) -> None:
        with self.lock:
            self.failed_checks.setdefault(drill, []).append(what)
        print(f"  CHECK FAILED in {drill}: {what}", flush=True)

    def five_xx(self, drill: str) -> None:
        with self.lock:
            self.server_errors[drill] += 1


class Api:
    """The REST API as an integrator uses it: bearer key, Idempotency-Key, retry on 5xx."""

    def __init__(self, stack: Stack, book: Book) -> None:
        parts = urlsplit(stack.web_url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.token = stack.api_token
        self.book = book

    def create(
        self, drill: str, method: PaymentMethod, price_tiyn: int, timed: bool = False
    ) -> Record | None:
        """A new invoice, or None if the API refused it for API_RETRY_SECONDS."""
        body = json.dumps({"price_tiyn": price_tiyn, "method": method.value}).encode()
        headers = {
            "Authorization": f"Bearer {self.token}",
            "Content-Type": "application/json",
            "Idempotency-Key": uuid.uuid4().hex,  # a retry never makes a second invoice
        }
        deadline = time.monotonic() + API_RETRY_SECONDS
        while time.monotonic() < deadline:
            started = time.monotonic()
            try:
                status, data = self._post("/api/v1/invoices", body, headers)
            except (OSError, http.client.HTTPException):
                time.sleep(0.5)  # the web tier is restarting or overloaded: try again
                continue
            if timed:
                with self.book.lock:
                    self.book.api_latency.append(time.monotonic() - started)
            if status == 201:
                record = Record(
                    drill,
                    str(data["id"]),
                    method,
                    str(data["payment_uri"]),
                    aware(datetime.fromisoformat(str(data["expires_at"]))),
                )
                self.book.add(record)
                return record
            if status >= 500:
                self.book.five_xx(drill)
            elif status != 429:
                raise RuntimeError(f"the API refused an invoice: {status} {data}")
            time.sleep(0.5)
        self.book.note(drill, f"an invoice create was refused for {API_RETRY_SECONDS:.0f} s")
        return None

    def _post(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, Any]:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=API_TIMEOUT_SECONDS)
        try:
            conn.request("POST", path, body, headers)
            response = conn.getresponse()
            raw = response.read()
        finally:
            conn.close()
        try:
            return response.status, json.loads(raw or b"{}")
        except ValueError:
            return response.status, {"raw": raw[:200].decode(errors="replace")}


class Shopper:
    """Pays invoices' URIs: the Bitcoin driver's wallet, the sandbox Solana wallet."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack

    def pay(self, record: Record) -> bool:
        """Pay what the URI asks; False if the node refused (the drill notes it)."""
        try:
            if record.method is PaymentMethod.BTC:
                with self.stack.btc_lock:
                    txid = self.stack.btc.pay_uri(record.uri)
            else:
                validator = self.stack.solana
                with self.stack.kzte_lock:
                    (txid, *_rest) = pay_uri(
                        record.uri,
                        rpc_url=validator.rpc_url,
                        wallet_dir=self.stack.root / "kzte-shopper",
                        faucet_data_dir=validator.data_dir,
                    )
        except Exception as exc:  # a node down or hung: this payment is simply not made
            print(f"  payment of {record.invoice_id} not made: {type(exc).__name__}: {exc}")
            return False
        record.txids.append(txid)
        if record.paid_at is None:
            record.paid_at = datetime.now(UTC)
        return True


class Miner:
    """Mines a block every `interval` seconds while enabled (a node that is down is skipped)."""

    def __init__(self, stack: Stack, interval: float) -> None:
        self.stack = stack
        self.interval = interval
        self.enabled = threading.Event()
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, name="miner", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stopped.wait(self.interval):
            if not self.enabled.is_set():
                continue
            try:
                with self.stack.btc_lock:
                    self.stack.btc.mine(1)
            except Exception:  # the node is being restarted by a drill: next time
                continue

    def close(self) -> None:
        self.stopped.set()
        self.thread.join(10)


def aware(moment: datetime) -> datetime:
    """UTC-aware (SQLite gives naive datetimes back; they are UTC)."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def price() -> int:
    """A price in tiyn between 500 and 9,000 tenge."""
    return random.randrange(500_00, 9_000_00, 100)


def set_expiry(stack: Stack, record: Record, seconds: float) -> None:
    """Move an invoice's expiry close (an integrator's short window, without waiting 15 min)."""
    expires_at = datetime.now(UTC) + timedelta(seconds=seconds)
    with stack.runtime.session_factory.begin() as session:
        session.execute(
            update(Invoice).where(Invoice.id == record.invoice_id).values(expires_at=expires_at)
        )
    record.expires_at = expires_at


class Flow:
    """Invoices created and paid in the background (methods in turn) until stopped or `limit`."""

    def __init__(
        self,
        drill: str,
        api: Api,
        shopper: Shopper,
        every: float,
        limit: int | None = None,
        methods: tuple[PaymentMethod, ...] = (PaymentMethod.BTC, PaymentMethod.KZTE),
    ) -> None:
        self.drill, self.api, self.shopper = drill, api, shopper
        self.every, self.limit, self.methods = every, limit, methods
        self.count = 0
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, name=f"flow-{drill}", daemon=True)

    @property
    def running(self) -> bool:
        return self.thread.is_alive()

    def __enter__(self) -> Flow:
        self.thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stopped.set()
        self.thread.join(API_RETRY_SECONDS + 30)

    def _run(self) -> None:
        try:
            while not self.stopped.is_set() and (self.limit is None or self.count < self.limit):
                method = self.methods[self.count % len(self.methods)]
                record = self.api.create(self.drill, method, price())
                if record is not None:
                    self.shopper.pay(record)
                self.count += 1
                self.stopped.wait(self.every)
        except Exception as exc:  # a refused create is the drill's own failure: count it
            self.api.book.fail(self.drill, f"the payment flow stopped: {exc!r}")
