"""Regression: the KZTE expiry watermark is per invoice — one invoice the watcher cannot decide
never holds back the expiry of the others (DESIGN §10).

Driven through the real expiry duty of the worker, with the sandbox validator behind a proxy
that makes one invoice's reads fail.
"""

from __future__ import annotations

from datetime import timedelta

from kzte_proxy import rpc_proxy
from kzte_support import Shop
from solders.keypair import Keypair
from sqlalchemy import update

from pos import accounts, invoices
from pos.db import utcnow
from pos.invoices import InvoiceRequest
from pos.models import Invoice, SettlementMode
from pos.states import InvoiceStatus, PaymentMethod
from settlement.kzte_validation import associated_token_address
from settlement.kzte_watcher import KzteWatcher, Schedule
from settlement.worker import make_expire_duty

# Every feed on every pass (the sweep keeps its default pace: it proves nothing extra here).
EVERY_PASS = Schedule(hot_seconds=0.0, open_seconds=0.0, late_seconds=0.0)


def _other_merchant(shop: Shop) -> tuple[int, str]:
    wallet = str(Keypair().pubkey())
    with shop.rt.session_factory() as session:
        merchant = accounts.create_merchant(
            session,
            shop.rt.settings,
            "Stuck Shop",
            solana_wallet=wallet,
            settlement_mode=SettlementMode.DIRECT,  # its own destination, unreadable
        )
        session.commit()
        return merchant.id, wallet


def _invoice_of(shop: Shop, merchant_id: int) -> Invoice:
    with shop.rt.session_factory() as session:
        invoice = invoices.create_invoice(
            session,
            shop.rt.settings,
            shop.rt.rates,
            InvoiceRequest(merchant_id, 500_00, PaymentMethod.KZTE),
        )
        session.commit()
        session.expunge(invoice)
        return invoice


def _expired_minutes_ago(shop: Shop, invoice_id: str, minutes: int) -> None:
    now = utcnow()
    with shop.rt.session_factory() as session:
        session.execute(
            update(Invoice)
            .where(Invoice.id == invoice_id)
            .values(
                created_at=now - timedelta(minutes=20),
                expires_at=now - timedelta(minutes=minutes),
            )
        )
        session.commit()


def test_an_unreadable_invoice_does_not_hold_back_the_others(shop: Shop) -> None:
    stuck_merchant, stuck_wallet = _other_merchant(shop)
    stuck = _invoice_of(shop, stuck_merchant)
    fine = shop.invoice(500_00)
    _expired_minutes_ago(shop, stuck.id, 2)  # the older one is the one nobody can read
    _expired_minutes_ago(shop, fine.id, 1)
    expire = make_expire_duty(frozenset({PaymentMethod.KZTE}))
    mint = shop.validator.kzte_mint
    with rpc_proxy(shop.validator.rpc_url) as proxy:
        # Every read that could show a payment of `stuck` fails; everything else is real.
        proxy.blocked = {stuck.kzte_reference or "", associated_token_address(stuck_wallet, mint)}
        shop.rt.settings = shop.rt.settings.with_overrides(solana_rpc_url=proxy.url)
        watcher = KzteWatcher(EVERY_PASS, timeout_seconds=2.0, attempts=1)
        watcher.run(shop.rt)
        expire.run(shop.rt)
        assert shop.reload(fine.id).status is InvoiceStatus.EXPIRED
        assert shop.reload(stuck.id).status is InvoiceStatus.NEW  # it may have been paid in time

        proxy.blocked.clear()  # the node answers again: seen unpaid, it expires too
        watcher.run(shop.rt)
        expire.run(shop.rt)
        assert shop.reload(stuck.id).status is InvoiceStatus.EXPIRED


def test_an_undecided_payment_holds_only_its_own_invoice(shop: Shop) -> None:
    # Both invoices pay the same token account: one destination feed covers them both.
    paid, unpaid = shop.invoice(300_00), shop.invoice(300_00)
    sigs = shop.pay(shop.uri(paid.id))
    _expired_minutes_ago(shop, paid.id, 1)
    _expired_minutes_ago(shop, unpaid.id, 1)
    expire = make_expire_duty(frozenset({PaymentMethod.KZTE}))
    with rpc_proxy(shop.validator.rpc_url) as proxy:
        # The payment's transaction is read, but its commitment cannot be: it stays undecided.
        proxy.blocked_methods = {"getSignatureStatuses"}
        shop.rt.settings = shop.rt.settings.with_overrides(solana_rpc_url=proxy.url)
        watcher = KzteWatcher(EVERY_PASS, timeout_seconds=2.0, attempts=1)
        watcher.run(shop.rt)
        expire.run(shop.rt)
        assert shop.reload(unpaid.id).status is InvoiceStatus.EXPIRED
        held = shop.reload(paid.id)
        assert held.status is InvoiceStatus.NEW and held.payments == []

        proxy.blocked_methods.clear()
        shop.watcher = watcher
        done = shop.drive_until(paid.id, lambda i: i.status is not InvoiceStatus.NEW, "paid")
        assert [p.txid for p in done.payments] == sigs
        assert done.status is not InvoiceStatus.EXPIRED
