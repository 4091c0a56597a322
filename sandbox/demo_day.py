"""`cryptocity sandbox demo-day`: a day of sales in the running demo, paid on the sandbox chains.

For each demo merchant (Alatau Coffee is `tenge`, Qazaq Books `direct`) it creates BTC and KZTE
invoices, pays them with the sandbox shopper wallets — exactly, and one 10 % over — waits until
the worker has settled and booked them, then records the zone's conversions (half its BTC at
0.5 % above book value, all its KZTE 1:1) and prints every account's balance. Demo mode only:
it needs `make demo` (or `cryptocity demo`) running in the same data dir.
"""

from __future__ import annotations

import argparse
import time
from decimal import Decimal

from sqlalchemy import func, select

from pos import invoices
from pos.errors import ConfigError
from pos.invoice_view import payment_uri
from pos.models import Invoice, LedgerQueue, Merchant
from pos.runtime import open_runtime
from pos.settings import Settings
from pos.states import InvoiceStatus, PaymentMethod

SALES = ((250_000, Decimal(1)), (480_000, Decimal(1)), (120_000, Decimal("1.1")))
SETTLE_TIMEOUT_S = 240.0


def run(args: argparse.Namespace, settings: Settings) -> int:
    if not settings.is_demo:
        raise ConfigError("demo-day runs only in demo mode, against the sandbox chains")
    from pos.demo import DEMO_MERCHANTS
    from sandbox.bitcoin.wallet import pay_uri as pay_bitcoin
    from sandbox.solana.wallet import pay_uri as pay_solana
    from settlement.ledger import conversions
    from settlement.ledger.balances import account_balances, ledger_balances
    from settlement.ledger.posting import book_value_tiyn

    rt = open_runtime(settings)
    wallets = settings.sandbox_dir / "shopper"
    made: list[str] = []
    try:
        with rt.session_factory() as session:
            names = [d.name for d in DEMO_MERCHANTS]
            shops = session.scalars(select(Merchant).where(Merchant.name.in_(names)))
            targets = [(m.id, m.name) for m in shops]
        for merchant_id, name in targets:
            for method in (PaymentMethod.BTC, PaymentMethod.KZTE):
                for price, factor in SALES:
                    with rt.session_factory() as session:
                        request = invoices.InvoiceRequest(merchant_id, price, method, "demo day")
                        invoice = invoices.create_invoice(session, settings, rt.rates, request)
                        session.commit()
                        invoices.publish_after_commit(rt.session_factory, rt.coordinator, session)
                        uri = payment_uri(invoice, settings, name)
                        made.append(invoice.id)
                    if method is PaymentMethod.BTC:
                        pay_bitcoin(
                            uri,
                            rpc_url=settings.bitcoin_rpc_url,
                            wallet_dir=wallets / "bitcoin",
                            amount_factor=factor,
                        )
                    else:
                        pay_solana(
                            uri,
                            rpc_url=settings.solana_rpc_url,
                            wallet_dir=wallets / "solana",
                            amount_factor=factor,
                            faucet_data_dir=settings.data_dir,
                        )
                    print(f"  {name}: {method.value} {price / 100:,.2f} KZT x{factor} paid",
                          flush=True)  # fmt: skip
        deadline = time.monotonic() + SETTLE_TIMEOUT_S
        while True:
            with rt.session_factory() as session:
                settled = session.scalar(
                    select(func.count()).where(
                        Invoice.id.in_(made), Invoice.status == InvoiceStatus.SETTLED
                    )
                )
                queued = session.scalar(select(func.count()).select_from(LedgerQueue))
            print(f"  settled {settled}/{len(made)}, ledger queue {queued}", flush=True)
            if settled == len(made) and queued == 0:
                break
            if time.monotonic() > deadline:
                raise ConfigError("the demo's worker did not settle the day; is `make demo` up?")
            time.sleep(5)
        with rt.session_factory() as session:
            btc_tiyn, btc_sat = conversions.clearing_balance(session, PaymentMethod.BTC)
            _kzte_tiyn, kzte_units = conversions.clearing_balance(session, PaymentMethod.KZTE)
            if btc_sat > 1:
                half = btc_sat // 2
                book = book_value_tiyn(btc_tiyn, btc_sat, half)
                request_btc = conversions.ConversionRequest(
                    PaymentMethod.BTC, half, book + book // 200, f"demo-day-btc-{made[0]}"
                )
                conversions.record(session, request_btc)
            if kzte_units > 0:
                value = kzte_units * 100 // 10**settings.kzte_decimals
                request_kzte = conversions.ConversionRequest(
                    PaymentMethod.KZTE, kzte_units, value, f"demo-day-kzte-{made[0]}"
                )
                conversions.record(session, request_kzte)
            session.commit()
            print("\naccount                                   type       balance, KZT   atomic")
            for row in account_balances(session):
                if row.balance_tiyn or row.balance_atomic:
                    atomic = "" if row.balance_atomic is None else str(row.balance_atomic)
                    print(f"{row.code:<41} {row.type.value:<9} {row.balance_tiyn / 100:>13,.2f}"
                          f"   {atomic}")  # fmt: skip
            print(f"debits equal credits: {'yes' if ledger_balances(session) else 'NO'}")
    finally:
        rt.close()
    return 0
