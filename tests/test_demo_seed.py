"""The demo's seed: products with pictures and a month of history, booked so the ledger
balances, through the real services on the real (migrated) database; and only once."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import case, func, select
from sqlalchemy.orm import Session, sessionmaker

from pos import branding, business_day, catalog, chart, demo, demo_history
from pos.invoice_lines import InvoiceLine
from pos.models import Invoice, Merchant
from pos.settings import Settings
from pos.states import InvoiceStatus, PaymentMethod
from settlement.ledger.balances import ledger_balances
from settlement.ledger.fee_invoices import accrued_tiyn
from settlement.ledger.models import (
    FeeInvoice,
    FeeInvoiceStatus,
    LedgerEntry,
    LedgerTransaction,
    Payout,
    PayoutLine,
    PayoutStatus,
    Refund,
    RefundStatus,
    Side,
    TransactionKind,
)
from settlement.ledger.payouts import payable_balance

# 17:00 in Almaty on 4 November: the 8 days seeded (27 Oct - 3 Nov) cross a month's end, the
# days up to 2 November are past the coffee shop's 24 h hold, and 3 November is not.
NOW = datetime(2026, 11, 4, 12, 0, tzinfo=UTC)


def _unbalanced_transactions(session: Session) -> int:
    """Transactions whose debits and credits differ (the trial balance could hide two)."""
    debit = LedgerEntry.side == Side.DEBIT
    signed = func.sum(case((debit, LedgerEntry.amount_tiyn), else_=-LedgerEntry.amount_tiyn))
    query = select(LedgerEntry.transaction_id).group_by(LedgerEntry.transaction_id)
    return len(session.scalars(query.having(signed != 0)).all())


def _products(session: Session) -> int:
    return len(session.scalars(select(catalog.CatalogItem)).all())


def _count(session: Session, *where: object) -> int:
    return session.scalar(select(func.count()).select_from(Invoice).where(*where)) or 0


def _shop(session: Session, slug: str) -> Merchant:
    prefix = "Alatau%" if slug == "coffee" else "Qazaq%"
    return session.scalars(select(Merchant).where(Merchant.name.like(prefix))).one()


def _payable_credits(session: Session, merchant_id: int) -> list[tuple[int, int, datetime]]:
    """(entry id, tiyn, effective at) of each sale's credit to the merchant's payable."""
    rows = session.execute(
        select(LedgerEntry.id, LedgerEntry.amount_tiyn, LedgerEntry.effective_at)
        .join(LedgerTransaction, LedgerTransaction.id == LedgerEntry.transaction_id)
        .where(
            LedgerEntry.account == chart.payable(merchant_id),
            LedgerTransaction.kind == TransactionKind.SETTLEMENT,
        )
    ).all()
    return [(entry_id, tiyn, at) for entry_id, tiyn, at in rows]


def _check_payouts(session: Session, shop: Merchant, paid_count: int) -> None:
    """Daily payouts up to the last day past the hold, all paid; the rest is the payable."""
    payouts = session.scalars(select(Payout).where(Payout.merchant_id == shop.id)).all()
    today = business_day.today(NOW)
    past_hold = [today - timedelta(days=n) for n in range(8, 1, -1)]  # 27 Oct - 2 Nov
    assert sorted(p.business_date for p in payouts) == past_hold
    assert len(payouts) == paid_count
    for payout in payouts:
        assert payout.status is PayoutStatus.PAID and payout.bank_reference
        assert payout.paid_at is not None and payout.paid_at <= NOW
        assert payout.transaction_id is not None
    in_payout = set(session.scalars(select(PayoutLine.entry_id)))
    cut = business_day.day_start(today - timedelta(days=1))
    unpaid = 0
    for entry_id, tiyn, at in _payable_credits(session, shop.id):
        # A sale before the last day is paid out; one of the last day (in its hold) is not.
        assert (entry_id in in_payout) == (at < cut), (entry_id, at)
        unpaid += 0 if entry_id in in_payout else tiyn
    assert unpaid > 0 and payable_balance(session, shop.id) == unpaid


def _check_fee_invoices(session: Session, shop: Merchant, issued: int) -> None:
    """One bill, for October (the month that ended), of what accrued by its end; unpaid."""
    [bill] = session.scalars(select(FeeInvoice).where(FeeInvoice.merchant_id == shop.id)).all()
    assert issued == 1 and bill.month == "2026-10"
    end = business_day.day_start(date(2026, 11, 1))
    assert bill.amount_tiyn == accrued_tiyn(session, shop.id, end) > 0
    assert accrued_tiyn(session, shop.id, end + timedelta(days=3)) > bill.amount_tiyn
    assert bill.status is FeeInvoiceStatus.ISSUED and bill.paid_at is None


def test_the_demo_seed_shows_the_product_and_runs_once(
    settings: Settings,
    session_factory: sessionmaker[Session],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(demo_history, "DAYS", 8)  # the full month is measured in the report
    demo.seed_demo_data(settings)
    lines: list[str] = []
    first = demo.seed_demo_history(settings, progress=lines.append, now=NOW)
    assert set(first) == {"coffee", "books"} and lines
    with session_factory() as session:
        assert ledger_balances(session) and _unbalanced_transactions(session) == 0
        for slug, counts in first.items():
            shop = _shop(session, slug)
            items = catalog.list_items(session, shop.id)
            assert len(items) >= 8 and all(item.image_sha256 for item in items)
            assert len(catalog.categories(items)) >= 3
            look = branding.get_branding(session, shop.id)
            assert look.logo_sha256 and look.accent_colour
            mine = Invoice.merchant_id == shop.id
            assert counts.invoices == _count(session, mine) > 8 * 2
            for method in PaymentMethod:
                assert _count(session, mine, Invoice.method == method) > 0, (slug, method)
            assert _count(session, mine, Invoice.status == InvoiceStatus.SETTLED) > 0
            assert _count(session, mine, Invoice.status == InvoiceStatus.EXPIRED) > 0
            # History only: nothing is left open for the watchers.
            assert _count(session, mine, Invoice.status == InvoiceStatus.NEW) == 0
            # Every sale is a cart of the shop's products: the sales per product are full.
            totals = session.execute(
                select(
                    Invoice.price_tiyn, func.sum(InvoiceLine.quantity * InvoiceLine.unit_price_tiyn)
                )
                .join(InvoiceLine, InvoiceLine.invoice_id == Invoice.id)
                .where(mine)
                .group_by(Invoice.id, Invoice.price_tiyn)
            ).all()
            assert len(totals) == counts.invoices and all(p == t for p, t in totals)
        _check_payouts(session, _shop(session, "coffee"), first["coffee"].payouts)
        _check_fee_invoices(session, _shop(session, "books"), first["books"].fee_invoices)
        assert first["coffee"].fee_invoices == first["books"].payouts == 0
        partial = _count(
            session, Invoice.status == InvoiceStatus.EXPIRED, Invoice.amount_paid_atomic > 0
        )
        assert partial > 0
        confirmed = session.scalar(
            select(func.count()).select_from(Refund).where(Refund.status == RefundStatus.CONFIRMED)
        )
        assert confirmed and confirmed == sum(c.refunds for c in first.values())
        total, products = _count(session), _products(session)
        bills = session.scalar(select(func.count()).select_from(FeeInvoice))
        paid_out = session.scalar(select(func.count()).select_from(Payout))
    again = demo.seed_demo_history(settings, now=NOW)
    demo.seed_demo_data(settings)
    with session_factory() as session:
        assert all(c.invoices == 0 for c in again.values())
        assert _count(session) == total
        assert _products(session) == products
        assert session.scalar(select(func.count()).select_from(FeeInvoice)) == bills
        assert session.scalar(select(func.count()).select_from(Payout)) == paid_out


def test_the_demo_bills_each_month_it_reaches_and_the_older_bills_are_paid(
    settings: Settings,
    session_factory: sessionmaker[Session],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # 30 days up to 1 March reach 30-31 January and all of February: two ended months.
    monkeypatch.setattr(demo_history, "SALES_PER_DAY", {"coffee": (1, 1), "books": (3, 3)})
    demo.seed_demo_data(settings)
    made = demo.seed_demo_history(settings, now=datetime(2026, 3, 1, 6, 0, tzinfo=UTC))
    assert made["books"].fee_invoices == 2
    with session_factory() as session:
        shop = _shop(session, "books")
        january, february = session.scalars(
            select(FeeInvoice).where(FeeInvoice.merchant_id == shop.id).order_by(FeeInvoice.month)
        ).all()
        assert (january.month, february.month) == ("2026-01", "2026-02")
        # Each bills its own month: February's is what accrued after January's end.
        feb_end = business_day.day_start(date(2026, 3, 1))
        assert january.amount_tiyn > 0 and february.amount_tiyn > 0
        assert january.amount_tiyn + february.amount_tiyn == accrued_tiyn(session, shop.id, feb_end)
        assert january.status is FeeInvoiceStatus.PAID and january.bank_reference
        assert january.transaction_id is not None
        assert february.status is FeeInvoiceStatus.ISSUED
        # The history ends on 28 February, so the shop owes the zone exactly the open bill.
        debit = LedgerEntry.side == Side.DEBIT
        signed = case((debit, LedgerEntry.amount_tiyn), else_=-LedgerEntry.amount_tiyn)
        owed = session.scalar(
            select(func.sum(signed)).where(LedgerEntry.account == chart.fees_due(shop.id))
        )
        assert owed == february.amount_tiyn
        assert ledger_balances(session) and _unbalanced_transactions(session) == 0
