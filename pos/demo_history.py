"""Thirty days of past sales for the demo shops, so the dashboards and charts start full.

Every invoice goes through the real services at its own past moment: `create_invoice` (rate of
that instant from the sandbox feed), a watcher's `observe_payment` + `reevaluate`, `expire_one`,
the ledger's `book_invoice`, and refunds through create → claim → send → confirm. So the
ledger holds exactly what the live system would have booked, and balances.

Then what the operator would have done since: the `tenge` shop's daily payouts, each built once
its day is past the shop's hold (`run_payouts`) and marked paid with a bank reference; the
`direct` shop's fee invoice for every ended (Asia/Almaty) month the history reaches
(`issue_month`, on the next month's first morning), the older ones marked paid and the newest
left for the owner to pay.

The payments are invented (no chain saw them; their ids are hashes of the invoice id), final
from the start, so no watcher ever looks at them again. A shop that already has history (an
invoice with an `order_id` starting with ORDER_PREFIX) is skipped: re-running adds nothing.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from pos import business_day, catalog, invoice_lines, invoices
from pos.business_day import ZONE_TZ
from pos.db import utcnow
from pos.demo_wallets import demo_account_xpub, demo_solana_wallet
from pos.methods.bitcoin import derive_address
from pos.models import Invoice, LedgerQueue, Merchant, PaymentStatus, SettlementMode
from pos.rate_config import rate_book
from pos.settings import Settings
from pos.states import InvoiceStatus, PaymentMethod

ORDER_PREFIX = "demo-history-"
DAYS = 30
SALES_PER_DAY = {"coffee": (5, 9), "books": (2, 5)}  # a range per demo shop slug
# Business hours in the zone (UTC+5): the first and last sale of a day.
OPEN_HOUR, CLOSE_HOUR = 8, 21
# When the operator's back office acts, after the moment it first could: a payout is marked
# paid an hour after it is built; a fee invoice is issued at 09:00 on the next month's first
# day and paid by the merchant five days later.
PAYOUT_PAID_AFTER = timedelta(hours=1)
FEE_INVOICE_HOUR = 9
FEE_PAID_AFTER = timedelta(days=5)

Progress = Callable[[str], None]


@dataclass
class HistoryCounts:
    settled: int = 0
    overpaid: int = 0
    partial: int = 0
    expired: int = 0
    refunds: int = 0
    by_method: dict[str, int] = field(default_factory=dict)
    payouts: int = 0  # paid, `tenge` shops
    fee_invoices: int = 0  # issued (paid or not), `direct` shops

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


def _cart(rng: random.Random, items: list[catalog.CatalogItem]) -> list[catalog.CartLine]:
    picked = rng.sample(items, k=min(len(items), rng.choice((1, 1, 2, 2, 3))))
    return [
        catalog.CartLine(item.id, item.name, rng.choice((1, 1, 1, 2)), item.price_tiyn)
        for item in picked
    ]


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


def _pay_out(
    session: Session, merchant_id: int, days: list[date], hold_hours: int, now: datetime
) -> int:
    """Each day's payout, built once the day is past the hold and marked paid; how many.

    A day whose hold has not passed by `now` stays unpaid: its sales are the payable balance.
    """
    from settlement.ledger import payouts

    paid = 0
    for day in days:
        built_at = business_day.day_start(day + timedelta(days=1)) + timedelta(hours=hold_hours)
        if built_at > now:
            break
        for payout in payouts.run_payouts(session, day, now=built_at, merchant_id=merchant_id):
            reference = f"DEMO-{day:%Y%m%d}-{payout.id}"
            payouts.mark_paid(
                session, payout.id, reference, now=min(built_at + PAYOUT_PAID_AFTER, now)
            )
            paid += 1
    return paid


def _month_after(first: date) -> date:
    return date(first.year + first.month // 12, first.month % 12 + 1, 1)


def _bill_fees(session: Session, merchant_id: int, first_day: date, now: datetime) -> int:
    """A fee invoice for every ended month from `first_day`'s on, issued as `cryptocity fees
    invoice` would on the next month's first morning; all but the newest paid; how many.

    A month the history reaches only in part is billed for that part (what accrued by its
    end); a month with nothing accrued gets no bill.
    """
    from settlement.ledger import fee_invoices

    bills = []
    month = first_day.replace(day=1)
    this_month = business_day.today(now).replace(day=1)
    while month < this_month:
        following = _month_after(month)
        issued_at = min(business_day.day_start(following) + timedelta(hours=FEE_INVOICE_HOUR), now)
        bills += fee_invoices.issue_month(
            session, f"{month:%Y-%m}", now=issued_at, merchant_id=merchant_id
        )
        month = following
    for bill in bills[:-1]:  # the newest stays open: the owner's bill to pay
        paid_at = min(bill.issued_at + FEE_PAID_AFTER, now)
        reference = f"DEMO-FEE-{bill.month}-{bill.id}"
        fee_invoices.mark_paid(session, bill.id, reference, merchant_id=merchant_id, now=paid_at)
    return len(bills)


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
    # The object is expunged after each day: what is needed of it is read now.
    merchant_id, name, mode = merchant.id, merchant.name, merchant.settlement_mode
    hold_hours = merchant.payout_hold_hours
    rates = rate_book(settings, lambda _pair, _name: None)  # demo feeds are local: no Redis
    methods = [PaymentMethod.BTC] if settings.kzte_mint is None else list(PaymentMethod)
    rng = random.Random(f"cryptocity-demo-{slug}")
    low, high = SALES_PER_DAY.get(slug, (3, 6))
    today = now.astimezone(ZONE_TZ).date()
    days = [today - timedelta(days=days_ago) for days_ago in range(DAYS, 0, -1)]
    for days_ago, day in zip(range(DAYS, 0, -1), days, strict=True):
        opening = datetime(day.year, day.month, day.day, OPEN_HOUR, tzinfo=ZONE_TZ)
        for number, at in enumerate(_sale_times(rng, opening, rng.randint(low, high))):
            lines = _cart(rng, items)
            price_tiyn = sum(line.total_tiyn for line in lines)
            method = rng.choice(methods)
            request = invoices.InvoiceRequest(
                merchant_id,
                max(price_tiyn, settings.min_invoice_tiyn),
                method,
                catalog.cart_description(lines),
                order_id=f"{ORDER_PREFIX}{day.isoformat()}-{number}",
                created_by_user_id=cashier_id,
            )
            invoice = invoices.create_invoice(session, settings, rates, request, now=at)
            if price_tiyn == invoice.price_tiyn:  # a cart raised to the minimum is no cart
                invoice_lines.record_lines(session, invoice.id, lines)  # sales per product
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
    # The back office's part, after the sales: payouts and bills read the ledger as of their
    # own (past) moment, so doing them last books what doing them day by day would have.
    if mode is SettlementMode.TENGE:
        counts.payouts = _pay_out(session, merchant_id, days, hold_hours, now)
    else:
        counts.fee_invoices = _bill_fees(session, merchant_id, days[0], now)
    session.flush()
    return counts
