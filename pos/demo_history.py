"""Thirty days of past sales for the demo shops, so the dashboards and charts start full.

Every invoice goes through the real services at its own past moment: `create_invoice` (rate of
that instant from the sandbox feed), a watcher's `observe_payment` + `reevaluate`, `expire_one`,
the ledger's `book_invoice`, and refunds through create → claim → send → confirm. So the
ledger holds exactly what the live system would have booked, and balances.

The payments are invented (no chain saw them; their ids are hashes of the invoice id), final
from the start, so no watcher ever looks at them again. A shop that already has history (an
invoice with an `order_id` starting with ORDER_PREFIX) is skipped: re-running adds nothing.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from pos import catalog, invoices
from pos.business_day import ZONE_TZ
from pos.db import utcnow
from pos.demo_wallets import demo_account_xpub, demo_solana_wallet
from pos.methods.bitcoin import derive_address
from pos.models import Invoice, LedgerQueue, Merchant, PaymentStatus
from pos.rate_config import rate_book
from pos.settings import Settings
from pos.states import InvoiceStatus, PaymentMethod

ORDER_PREFIX = "demo-history-"
DAYS = 30
SALES_PER_DAY = {"coffee": (5, 9), "books": (2, 5)}  # a range per demo shop slug
# Business hours in the zone (UTC+5): the first and last sale of a day.
OPEN_HOUR, CLOSE_HOUR = 8, 21

Progress = Callable[[str], None]


@dataclass
class HistoryCounts:
    settled: int = 0
    overpaid: int = 0
    partial: int = 0
    expired: int = 0
    refunds: int = 0
    by_method: dict[str, int] = field(default_factory=dict)

    @property
    def invoices(self) -> int:
        return self.settled + self.overpaid + self.partial + self.expired


def _digest(*parts: str) -> bytes:
    return hashlib.sha256("|".join(parts).encode()).digest()


def fake_txid(invoice_id: str, method: PaymentMethod, what: str = "pay") -> str:
    """A made-up but well-formed transaction id: 64 hex (BTC) or a base58 signature (Solana)."""
    if method is PaymentMethod.BTC:
        return _digest(invoice_id, what).hex()
    from solders.signature import Signature

    return str(Signature(_digest(invoice_id, what) + _digest(what, invoice_id)))


def has_history(session: Session, merchant_id: int) -> bool:
    return (
        session.scalar(
            select(Invoice.id)
            .where(Invoice.merchant_id == merchant_id, Invoice.order_id.like(f"{ORDER_PREFIX}%"))
            .limit(1)
        )
        is not None
    )


def _cart(rng: random.Random, items: list[catalog.CatalogItem]) -> tuple[int, str]:
    picked = rng.sample(items, k=min(len(items), rng.choice((1, 1, 2, 2, 3))))
    lines = [
        catalog.CartLine(item.id, item.name, rng.choice((1, 1, 1, 2)), item.price_tiyn)
        for item in picked
    ]
    return sum(line.total_tiyn for line in lines), catalog.cart_description(lines)


def _pay(
    session: Session,
    invoice: Invoice,
    amount_atomic: int,
    at: datetime,
) -> None:
    from settlement.payments import Observation, observe_payment, reevaluate

    chain = "bitcoin" if invoice.method is PaymentMethod.BTC else "solana"
    seen = Observation(
        chain,
        fake_txid(invoice.id, invoice.method),
        0,
        amount_atomic,
        PaymentStatus.FINAL,
        confirmations=6 if chain == "bitcoin" else 0,
        seen_at=at,
    )
    observe_payment(session, invoice, seen, now=at)
    reevaluate(session, invoice, now=at)


def _refund(
    session: Session, settings: Settings, invoice: Invoice, at: datetime, owner_id: int | None
) -> bool:
    """Refund what the invoice owes back, all the way to confirmed (False: nothing owed)."""
    from settlement.ledger import refunds

    owed_tiyn, owed_atomic = refunds.available(session, settings, invoice)
    if owed_tiyn <= 0 or owed_atomic <= 0:
        return False
    refund = refunds.create(session, settings, invoice.id, user_id=owner_id, now=at)
    if invoice.method is PaymentMethod.BTC:
        xpub = demo_account_xpub("shopper", settings.bitcoin_network)
        destination = derive_address(xpub, 0, settings.bitcoin_network)
    else:
        destination = demo_solana_wallet("shopper")
    refunds.claim(session, settings, refund.token, destination)
    refunds.record_sent(session, refund.id, fake_txid(invoice.id, invoice.method, "refund"))
    refunds.confirm(session, refund, now=at + timedelta(hours=2))
    return True


def _book(session: Session, settings: Settings, invoice: Invoice, at: datetime) -> None:
    """What the worker's ledger duty does for this invoice, at the moment it would have."""
    from settlement.ledger.booking import book_invoice

    book_invoice(session, settings, invoice, now=at)
    for queued in session.scalars(select(LedgerQueue).where(LedgerQueue.invoice_id == invoice.id)):
        session.delete(queued)


def _sale_times(rng: random.Random, day_start: datetime, count: int) -> list[datetime]:
    minutes = sorted(rng.randrange(0, (CLOSE_HOUR - OPEN_HOUR) * 60) for _ in range(count))
    return [day_start + timedelta(minutes=m, seconds=rng.randrange(60)) for m in minutes]


def seed_history(
    session: Session,
    settings: Settings,
    merchant: Merchant,
    slug: str,
    cashier_id: int | None,
    owner_id: int | None,
    now: datetime | None = None,
    progress: Progress | None = None,
) -> HistoryCounts:
    """Thirty days of sales for one demo shop (nothing if it has history already).

    Per sale: most are paid exactly; some paid 10 % over (the extra refunded), some paid only
    in part and then expired (most refunded, some left for the owner to refund), and some
    simply expired. Both methods; KZTE only when a mint is configured.
    """
    counts = HistoryCounts()
    if has_history(session, merchant.id):
        return counts
    items = catalog.list_items(session, merchant.id)
    if not items:
        return counts
    now = now or utcnow()
    merchant_id, name = merchant.id, merchant.name  # the object is expunged after each day
    rates = rate_book(settings, lambda _pair, _name: None)  # demo feeds are local: no Redis
    methods = [PaymentMethod.BTC] if settings.kzte_mint is None else list(PaymentMethod)
    rng = random.Random(f"cryptocity-demo-{slug}")
    low, high = SALES_PER_DAY.get(slug, (3, 6))
    today = now.astimezone(ZONE_TZ).date()
    for days_ago in range(DAYS, 0, -1):
        day = today - timedelta(days=days_ago)
        opening = datetime(day.year, day.month, day.day, OPEN_HOUR, tzinfo=ZONE_TZ)
        for number, at in enumerate(_sale_times(rng, opening, rng.randint(low, high))):
            price_tiyn, description = _cart(rng, items)
            method = rng.choice(methods)
            request = invoices.InvoiceRequest(
                merchant_id,
                max(price_tiyn, settings.min_invoice_tiyn),
                method,
                description,
                order_id=f"{ORDER_PREFIX}{day.isoformat()}-{number}",
                created_by_user_id=cashier_id,
            )
            invoice = invoices.create_invoice(session, settings, rates, request, now=at)
            counts.by_method[method.value] = counts.by_method.get(method.value, 0) + 1
            paid_at = at + timedelta(seconds=rng.randrange(40, 400))
            roll = rng.random()
            due = invoice.amount_due_atomic
            refund_it = False
            if roll < 0.72:
                _pay(session, invoice, due, paid_at)
                counts.settled += 1
            elif roll < 0.78:
                _pay(session, invoice, due + due // 10, paid_at)
                counts.overpaid += 1
                refund_it = True
            elif roll < 0.87:
                _pay(session, invoice, due * rng.randint(30, 70) // 100, paid_at)
                invoices.expire_one(session, invoice, invoice.expires_at)
                counts.partial += 1
                # The rest stay owed back: the refunds page has work to show.
                refund_it = rng.random() < 0.7
            else:
                invoices.expire_one(session, invoice, invoice.expires_at)
                counts.expired += 1
            closed_at = invoice.expires_at if invoice.status is InvoiceStatus.EXPIRED else paid_at
            _book(session, settings, invoice, closed_at)
            if refund_it:
                counts.refunds += _refund(session, settings, invoice, closed_at, owner_id)
            assert invoice.status in (InvoiceStatus.SETTLED, InvoiceStatus.EXPIRED), invoice.id
        session.flush()
        # A day's rows are written: forget them, so each flush has a small session to check.
        session.expunge_all()
        if progress is not None and days_ago % 5 == 1:
            progress(f"  {name}: {DAYS - days_ago + 1}/{DAYS} days")
    return counts
