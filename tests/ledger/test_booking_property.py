"""Issue #14: over random sequences of payments, confirmations, reorgs, double spends, expiries,
conversions and payouts, every balance equals an independent model and every tiyn received is
allocated, owed back or reversed.

The operations go through the real services (observe_payment + reevaluate as a watcher does,
expire_one as the expiry duty, conversions.record, run_payouts + mark_paid) on the test
database; the booking runs as the worker's duty does. Examples share one database, so the model
works on each example's changes from a snapshot of the balances taken at its start.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from sqlalchemy.orm import Session

from pos import accounts, business_day, invoices
from pos.demo_wallets import demo_account_xpub, demo_solana_wallet
from pos.models import Invoice, Payment, PaymentStatus, SettlementMode
from pos.runtime import Runtime
from pos.states import InvoiceStatus, PaymentMethod
from settlement.ledger import conversions, payouts
from settlement.ledger.balances import balance_map, ledger_balances
from settlement.ledger.booking import drain_queue
from settlement.ledger.models import LedgerTransaction, Side
from settlement.payments import Observation, observe_payment, reevaluate

pytestmark = pytest.mark.db
_txids = itertools.count()
_days = itertools.count(1)

Balances = dict[str, tuple[int, int | None]]


def value(invoice: Invoice, atomic: int) -> int:
    if invoice.method is PaymentMethod.KZTE:
        return atomic // 10_000
    return int(atomic * invoice.rate / 1_000_000)  # Decimal -> int truncates: floor here


def invoice_books(invoice: Invoice) -> tuple[dict[str, int], dict[str, int]]:
    """What one invoice's payments and status put on the books (tiyn, atomic per account)."""
    tiyn: dict[str, int] = defaultdict(int)
    atomic: dict[str, int] = defaultdict(int)
    direct = invoice.settlement_mode is SettlementMode.DIRECT
    m, method = invoice.merchant_id, invoice.method.value
    held = f"merchant:{m}:crypto_received:{method}" if direct else f"zone:clearing:{method}"
    unalloc = f"merchant:{m}:sales_unallocated" if direct else "zone:unallocated"
    final = [p.amount_atomic for p in invoice.payments if p.status is PaymentStatus.FINAL]
    values = [value(invoice, a) for a in final if value(invoice, a) > 0]
    booked_atomic = [a for a in final if value(invoice, a) > 0]
    tiyn[held] += sum(values)
    atomic[held] += sum(booked_atomic)
    tiyn[unalloc] += sum(values)
    allocated = 0
    if invoice.status is InvoiceStatus.SETTLED:
        allocated = min(
            value(invoice, min(sum(booked_atomic), invoice.amount_due_atomic)), sum(values)
        )
        owed = min(invoice.price_tiyn, allocated)
        fee = min((invoice.price_tiyn * 100 + 5_000) // 10_000, owed)
        tiyn[unalloc] -= allocated
        tiyn["zone:fees"] += fee
        if direct:
            tiyn[f"merchant:{m}:sales"] += allocated
            tiyn[f"merchant:{m}:fees_due"] += fee
        else:
            tiyn[f"merchant:{m}:payable"] += owed - fee
            tiyn["zone:rounding"] += allocated - owed
    closed = invoice.status in (InvoiceStatus.SETTLED, InvoiceStatus.EXPIRED, InvoiceStatus.INVALID)
    if closed and sum(values) > allocated:
        back = sum(values) - allocated
        tiyn[unalloc] -= back
        tiyn[f"merchant:{m}:refunds_owed" if direct else "zone:refunds_due"] += back
    return tiyn, atomic


NEW = st.tuples(
    st.just("new"),
    st.sampled_from(["tenge", "direct"]),
    st.sampled_from(["btc", "kzte"]),
    st.integers(100_000, 900_000),
)
OPS = st.lists(
    st.one_of(
        st.tuples(
            st.just("new"),
            st.sampled_from(["tenge", "direct"]),
            st.sampled_from(["btc", "kzte"]),
            st.integers(100_000, 900_000),
        ),
        st.tuples(
            st.just("pay"),
            st.integers(0, 9),
            st.integers(1, 130),
            st.sampled_from(["seen", "final"]),
        ),
        st.tuples(st.just("final"), st.integers(0, 9), st.integers(0, 3)),
        st.tuples(st.just("reorg"), st.integers(0, 9), st.integers(0, 3)),
        st.tuples(st.just("replace"), st.integers(0, 9), st.integers(0, 3)),
        st.tuples(st.just("expire"), st.integers(0, 9)),
        st.tuples(
            st.just("convert"),
            st.sampled_from(["btc", "kzte"]),
            st.integers(1, 100),
            st.integers(-5_000, 5_000),
        ),
        st.tuples(st.just("payout")),
    ),
    min_size=1,
    max_size=30,
)


@pytest.fixture
def shops(runtime: Runtime, session: Session) -> dict[str, int]:
    made = {}
    for mode in ("tenge", "direct"):
        merchant = accounts.create_merchant(
            session,
            runtime.settings,
            f"{mode} property shop",
            btc_xpub=demo_account_xpub(f"property {mode}", runtime.settings.bitcoin_network),
            solana_wallet=demo_solana_wallet(f"property {mode}"),
            settlement_mode=SettlementMode(mode),
        )
        merchant.payout_hold_hours = 0
        made[mode] = merchant.id
    session.commit()
    return made


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(new=st.lists(NEW, min_size=1, max_size=4), ops=OPS)
def test_random_histories_keep_the_books_equal_to_the_model(
    runtime: Runtime,
    session: Session,
    shops: dict[str, int],
    new: list[tuple[object, ...]],
    ops: list[tuple[object, ...]],
) -> None:
    session.expire_all()
    start = balance_map(session)
    made: list[str] = []
    moved: defaultdict[str, int] = defaultdict(int)  # conversions and payouts, this example
    moved_atomic: defaultdict[str, int] = defaultdict(int)

    def payments_of(index: int) -> list[Payment]:
        invoice = session.get(Invoice, made[index % len(made)])
        assert invoice is not None
        return list(invoice.payments)

    def set_status(index: int, which: int, status: PaymentStatus) -> None:
        if not made:
            return
        found = payments_of(index)
        if not found:
            return
        payment = found[which % len(found)]
        invoice = payment.invoice
        seen = Observation(
            payment.chain, payment.txid, 0, payment.amount_atomic, status,
            replaced_by="other" if status is PaymentStatus.REPLACED else None,
        )  # fmt: skip
        observe_payment(session, invoice, seen)
        reevaluate(session, invoice)

    for op in [*new, *ops]:
        kind = op[0]
        if kind == "new":
            _k, mode, method, price = op
            created = invoices.create_invoice(
                session,
                runtime.settings,
                runtime.rates,
                invoices.InvoiceRequest(shops[str(mode)], int(price), PaymentMethod(str(method))),
            )
            made.append(created.id)
        elif kind == "pay" and made:
            _k, index, pct, status = op
            invoice = session.get(Invoice, made[int(index) % len(made)])
            assert invoice is not None
            amount = max(invoice.amount_due_atomic * int(pct) // 100, 1)
            chain = "bitcoin" if invoice.method is PaymentMethod.BTC else "solana"
            seen = Observation(chain, f"prop-{next(_txids)}", 0, amount, PaymentStatus(str(status)))
            observe_payment(session, invoice, seen)
            reevaluate(session, invoice)
        elif kind == "final":
            set_status(int(op[1]), int(op[2]), PaymentStatus.FINAL)
        elif kind == "reorg":
            set_status(int(op[1]), int(op[2]), PaymentStatus.REORGED)
        elif kind == "replace":
            set_status(int(op[1]), int(op[2]), PaymentStatus.REPLACED)
        elif kind == "expire" and made:
            invoice = session.get(Invoice, made[int(op[1]) % len(made)])
            assert invoice is not None
            if invoice.status is InvoiceStatus.NEW:
                invoices.expire_one(session, invoice, invoice.expires_at)
        session.commit()
        drain_queue(runtime.session_factory, runtime.settings)
        session.expire_all()
        if kind == "convert":
            _k, method, pct, delta = op
            method_ = PaymentMethod(str(method))
            tiyn_held, atomic_held = balance_map(session)[f"zone:clearing:{method_.value}"]
            amount = (atomic_held or 0) * int(pct) // 100
            if amount > 0:
                if amount == atomic_held:
                    book = tiyn_held
                else:
                    book = (2 * tiyn_held * amount + (atomic_held or 0)) // (2 * (atomic_held or 1))
                if book > 0:
                    proceeds = max(book + int(delta), 0)
                    conversions.record(
                        session, conversions.ConversionRequest(method_, amount, proceeds)
                    )
                    session.commit()
                    code = f"zone:clearing:{method_.value}"
                    moved[code] -= book
                    moved_atomic[code] -= amount
                    moved["zone:bank"] += proceeds
                    moved["zone:fx_result"] += proceeds - book
        elif kind == "payout":
            payable = balance_map(session)[f"merchant:{shops['tenge']}:payable"][0]
            # A new business day each run (one payout per merchant and day).
            day = business_day.today() + timedelta(days=next(_days))
            created_payouts = payouts.run_payouts(session, day)
            for payout in created_payouts:
                payouts.mark_paid(session, payout.id, f"bank-{payout.id}")
            session.commit()
            paid = sum(p.amount_tiyn for p in created_payouts)
            assert paid == max(payable, 0), (payable, paid)  # all of a positive payable, never more
            assert {p.merchant_id for p in created_payouts} <= {shops["tenge"]}  # never `direct`
            moved[f"merchant:{shops['tenge']}:payable"] -= paid
            moved["zone:bank"] -= paid
        # The model: every invoice of this example from its payments, plus what moved.
        expected: defaultdict[str, int] = defaultdict(int)
        expected_atomic: defaultdict[str, int] = defaultdict(int)
        for invoice_id in made:
            invoice = session.get(Invoice, invoice_id)
            assert invoice is not None
            tiyn, atomic = invoice_books(invoice)
            for code, amount in tiyn.items():
                expected[code] += amount
            for code, amount in atomic.items():
                expected_atomic[code] += amount
        now = balance_map(session)
        for code, (tiyn_now, atomic_now) in now.items():
            tiyn_start, atomic_start = start.get(code, (0, None))
            assert tiyn_now - tiyn_start == expected[code] + moved[code], (code, op)
            if atomic_now is not None:
                assert (
                    atomic_now - (atomic_start or 0) == expected_atomic[code] + moved_atomic[code]
                ), (code, op)
        assert ledger_balances(session)
    # Every tiyn received is allocated, owed back or reversed: a closed invoice leaves nothing
    # in unallocated.
    for invoice_id in made:
        invoice = session.get(Invoice, invoice_id)
        assert invoice is not None
        if invoice.status in (InvoiceStatus.SETTLED, InvoiceStatus.EXPIRED, InvoiceStatus.INVALID):
            unallocated = ("zone:unallocated", f"merchant:{invoice.merchant_id}:sales_unallocated")
            left = 0
            for txn in session.scalars(
                select(LedgerTransaction).where(LedgerTransaction.invoice_id == invoice_id)
            ):
                for entry in txn.entries:
                    if entry.account in unallocated:
                        left += (
                            entry.amount_tiyn if entry.side is Side.CREDIT else -entry.amount_tiyn
                        )
            assert left == 0, invoice_id
