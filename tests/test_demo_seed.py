"""The demo's seed: products with pictures and a month of history, booked so the ledger
balances, through the real services on the real (migrated) database; and only once."""

from __future__ import annotations

import pytest
from sqlalchemy import case, func, select
from sqlalchemy.orm import Session, sessionmaker

from pos import branding, catalog, demo, demo_history
from pos.models import Invoice, Merchant
from pos.settings import Settings
from pos.states import InvoiceStatus, PaymentMethod
from settlement.ledger.balances import ledger_balances
from settlement.ledger.models import LedgerEntry, Refund, RefundStatus, Side


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


def test_the_demo_seed_shows_the_product_and_runs_once(
    settings: Settings,
    session_factory: sessionmaker[Session],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(demo_history, "DAYS", 8)  # the full month is measured in the report
    demo.seed_demo_data(settings)
    lines: list[str] = []
    first = demo.seed_demo_history(settings, progress=lines.append)
    assert set(first) == {"coffee", "books"} and lines
    with session_factory() as session:
        assert ledger_balances(session) and _unbalanced_transactions(session) == 0
        for slug, counts in first.items():
            shop = session.scalars(
                select(Merchant).where(
                    Merchant.name.like("Alatau%" if slug == "coffee" else "Qazaq%")
                )
            ).one()
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
        partial = _count(
            session, Invoice.status == InvoiceStatus.EXPIRED, Invoice.amount_paid_atomic > 0
        )
        assert partial > 0
        confirmed = session.scalar(
            select(func.count()).select_from(Refund).where(Refund.status == RefundStatus.CONFIRMED)
        )
        assert confirmed and confirmed == sum(c.refunds for c in first.values())
        total, products = _count(session), _products(session)
    again = demo.seed_demo_history(settings)
    demo.seed_demo_data(settings)
    with session_factory() as session:
        assert all(c.invoices == 0 for c in again.values())
        assert _count(session) == total
        assert _products(session) == products
