"""Postings follow payments (DESIGN §7, issue #14): each case against balances computed here.

Every expected number below is computed in this file from the invoice's locked rate with plain
Decimal arithmetic, not with the posting module's functions.
"""

from __future__ import annotations

import threading
import time
from decimal import ROUND_FLOOR, Decimal

import pytest
from ledger_support import MakeInvoice, pay, unbalanced_transactions
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from pos import accounts, chart, invoices
from pos.db import utcnow
from pos.demo_wallets import demo_solana_wallet
from pos.models import Invoice, LedgerQueue, Merchant, PaymentStatus, SettlementMode
from pos.runtime import Runtime
from pos.states import InvoiceStatus, PaymentMethod
from settlement.ledger.balances import balance_map, ledger_balances
from settlement.ledger.booking import drain_queue
from settlement.ledger.errors import UnknownAccountError
from settlement.ledger.models import LedgerTransaction, Side, TransactionKind
from settlement.ledger.posting import Leg, Posting, write_posting
from settlement.payments import Observation, observe_payment, reevaluate_safely

pytestmark = pytest.mark.db
FEE_BP = 100  # the zone default in the test settings


def value(invoice: Invoice, atomic: int) -> int:
    """Tiyn worth of `atomic` at the invoice's locked rate, rounded down."""
    if invoice.method is PaymentMethod.KZTE:
        return atomic // 10_000  # 6 decimals: 10^6 base units = 100 tiyn
    tiyn = Decimal(atomic) * invoice.rate * 100 / Decimal(100_000_000)
    return int(tiyn.to_integral_value(rounding=ROUND_FLOOR))


def fee(price: int) -> int:
    return (price * FEE_BP + 5_000) // 10_000


def book(runtime: Runtime, session: Session) -> dict[str, tuple[int, int | None]]:
    drain_queue(runtime.session_factory, runtime.settings)
    session.commit()
    assert unbalanced_transactions(session) == []
    assert ledger_balances(session)
    return balance_map(session)


def nonzero(balances: dict[str, tuple[int, int | None]]) -> dict[str, tuple[int, int | None]]:
    return {k: v for k, v in balances.items() if v[0] or v[1]}


def tenge_expect(
    invoice: Invoice, *, received: list[int], allocated: bool, owed_back: int
) -> dict[str, tuple[int, int | None]]:
    """The balances of a `tenge` invoice from first principles."""
    method = invoice.method.value
    got_tiyn = sum(value(invoice, a) for a in received)
    out: dict[str, tuple[int, int | None]] = {}
    if received:
        out[f"zone:clearing:{method}"] = (got_tiyn, sum(received))
    unallocated = got_tiyn
    if allocated:
        alloc = min(value(invoice, invoice.amount_due_atomic), got_tiyn)
        owed = min(invoice.price_tiyn, alloc)
        out[f"merchant:{invoice.merchant_id}:payable"] = (owed - fee(invoice.price_tiyn), None)
        out["zone:fees"] = (fee(invoice.price_tiyn), None)
        if alloc - owed:
            out["zone:rounding"] = (alloc - owed, None)
        unallocated -= alloc
    if owed_back:
        out["zone:refunds_due"] = (owed_back, None)
        unallocated -= owed_back
    if unallocated:
        out["zone:unallocated"] = (unallocated, None)
    return out


def test_an_exact_btc_payment_books_the_satoshi_ceiling_as_rounding_not_a_refund(
    runtime: Runtime, session: Session, make_invoice: MakeInvoice
) -> None:
    invoice = make_invoice(price_tiyn=250_000, method=PaymentMethod.BTC)
    assert invoice.settlement_mode is SettlementMode.TENGE
    pay(session, invoice, invoice.amount_due_atomic)
    assert invoice.status is InvoiceStatus.SETTLED
    balances = nonzero(book(runtime, session))
    assert balances == tenge_expect(
        invoice, received=[invoice.amount_due_atomic], allocated=True, owed_back=0
    )
    assert "zone:refunds_due" not in balances
    assert balances.get("zone:rounding", (0, None))[0] == (
        value(invoice, invoice.amount_due_atomic) - invoice.price_tiyn
    )


def test_overpaid_twice_and_after_settlement_each_lands_in_refunds_due(
    runtime: Runtime, session: Session, make_invoice: MakeInvoice
) -> None:
    invoice = make_invoice(price_tiyn=100_000)  # KZTE, 1 000 ₸
    due = invoice.amount_due_atomic  # 1 000 ₸ at 6 decimals = 1 000 000 000 base units
    pay(session, invoice, due + 5_000_000, txid="first")  # 5 ₸ over
    book(runtime, session)
    pay(session, invoice, 20_000_000, txid="second")  # 20 ₸ more, after it settled
    balances = nonzero(book(runtime, session))
    received = [due + 5_000_000, 20_000_000]
    assert balances == tenge_expect(invoice, received=received, allocated=True, owed_back=2_500)
    # The second payment has its own receipt; nothing was reversed to take it in...
    kinds = [t.kind for t in session.scalars(select(LedgerTransaction))]
    assert kinds.count(TransactionKind.RECEIPT) == 2
    assert kinds.count(TransactionKind.SETTLEMENT) == 1
    # ...except the owed-back amount, re-booked once as it grew (500 -> 2 500 tiyn).
    assert kinds.count(TransactionKind.REVERSAL) == 1


def test_partial_then_expired_is_owed_back_and_a_late_completion_takes_it_back(
    runtime: Runtime, session: Session, make_invoice: MakeInvoice
) -> None:
    invoice = make_invoice(price_tiyn=100_000)
    pay(session, invoice, 400_000_000, txid="part")  # 400 ₸ of 1 000
    assert book(runtime, session).get("zone:unallocated") == (40_000, None)
    assert invoices.expire_one(session, invoice, invoice.expires_at)
    session.commit()
    balances = nonzero(book(runtime, session))
    assert balances == tenge_expect(
        invoice, received=[400_000_000], allocated=False, owed_back=40_000
    )
    # Within the late window the rest arrives: the invoice settles, nothing is owed back.
    pay(session, invoice, 600_000_000, txid="rest")
    assert invoice.status is InvoiceStatus.SETTLED
    balances = nonzero(book(runtime, session))
    assert balances == tenge_expect(
        invoice, received=[400_000_000, 600_000_000], allocated=True, owed_back=0
    )


def test_a_reorg_after_settlement_reverses_exactly_that_payments_postings(
    runtime: Runtime, session: Session, make_invoice: MakeInvoice
) -> None:
    invoice = make_invoice(price_tiyn=250_000, method=PaymentMethod.BTC)
    pay(session, invoice, invoice.amount_due_atomic)
    settled = book(runtime, session)
    pay(session, invoice, invoice.amount_due_atomic, PaymentStatus.REORGED)
    assert invoice.status is InvoiceStatus.PROCESSING
    assert nonzero(book(runtime, session)) == {}
    reversed_kinds = [
        session.get(LedgerTransaction, t.reverses_id).kind  # type: ignore[union-attr]
        for t in session.scalars(
            select(LedgerTransaction).where(LedgerTransaction.kind == TransactionKind.REVERSAL)
        )
    ]
    assert sorted(reversed_kinds) == [TransactionKind.RECEIPT, TransactionKind.SETTLEMENT]
    # Mined again: booked again, to the same balances, under new keys.
    pay(session, invoice, invoice.amount_due_atomic)
    assert book(runtime, session) == settled


def test_an_unconfirmed_second_payment_is_never_booked_and_its_double_spend_changes_nothing(
    runtime: Runtime, session: Session, make_invoice: MakeInvoice
) -> None:
    invoice = make_invoice(price_tiyn=100_000)
    due = invoice.amount_due_atomic
    pay(session, invoice, due, txid="final")
    pay(session, invoice, 30_000_000, PaymentStatus.SEEN, txid="unconfirmed")
    assert (
        invoice.status is InvoiceStatus.SETTLED and invoice.amount_paid_atomic == due + 30_000_000
    )
    expected = tenge_expect(invoice, received=[due], allocated=True, owed_back=0)
    assert nonzero(book(runtime, session)) == expected
    pay(session, invoice, 30_000_000, PaymentStatus.REPLACED, txid="unconfirmed")
    assert nonzero(book(runtime, session)) == expected


def test_a_marked_settlement_books_the_amount_paid_at_the_mark(
    runtime: Runtime, session: Session, make_invoice: MakeInvoice
) -> None:
    invoice = make_invoice(price_tiyn=100_000)
    pay(session, invoice, 900_000_000, txid="most")  # 900 ₸ of 1 000, final
    invoices.mark(session, invoice, InvoiceStatus.SETTLED, "paid the rest in cash", None)
    session.commit()
    first = nonzero(book(runtime, session))
    assert first[f"merchant:{invoice.merchant_id}:payable"] == (90_000 - fee(100_000), None)
    pay(session, invoice, 100_000_000, txid="later")  # arrives after the mark
    balances = nonzero(book(runtime, session))
    assert (
        balances[f"merchant:{invoice.merchant_id}:payable"]
        == first[f"merchant:{invoice.merchant_id}:payable"]
    )
    assert balances["zone:refunds_due"] == (10_000, None)  # not the merchant's: owed back


def test_direct_merchants_get_a_memorandum_and_owe_the_fee_never_a_payable(
    runtime: Runtime, session: Session
) -> None:
    merchant = accounts.create_merchant(
        session,
        runtime.settings,
        "Direct Books",
        solana_wallet=demo_solana_wallet("direct books"),
        settlement_mode=SettlementMode.DIRECT,
    )
    session.commit()
    invoice = invoices.create_invoice(
        session,
        runtime.settings,
        runtime.rates,
        invoices.InvoiceRequest(merchant.id, 100_000, PaymentMethod.KZTE),
    )
    session.commit()
    assert invoice.kzte_recipient == merchant.solana_wallet
    pay(session, invoice, invoice.amount_due_atomic + 10_000_000)  # 10 ₸ over
    m = merchant.id
    assert nonzero(book(runtime, session)) == {
        f"merchant:{m}:crypto_received:kzte": (101_000, invoice.amount_due_atomic + 10_000_000),
        f"merchant:{m}:sales": (100_000, None),
        f"merchant:{m}:refunds_owed": (1_000, None),
        f"merchant:{m}:fees_due": (fee(100_000), None),
        "zone:fees": (fee(100_000), None),
    }


def test_tenge_invoices_pay_the_zone_and_a_mode_change_applies_to_new_invoices_only(
    runtime: Runtime, session: Session, shop: Merchant, make_invoice: MakeInvoice
) -> None:
    before = make_invoice(method=PaymentMethod.BTC)
    kzte_before = make_invoice(method=PaymentMethod.KZTE)
    assert kzte_before.kzte_recipient == runtime.settings.zone_kzte_wallet
    accounts.set_settlement_mode(session, shop, SettlementMode.DIRECT)
    session.commit()
    after = make_invoice(method=PaymentMethod.BTC)
    assert before.settlement_mode is SettlementMode.TENGE
    assert after.settlement_mode is SettlementMode.DIRECT
    from pos.methods import bitcoin

    assert before.btc_address == bitcoin.derive_address(
        runtime.settings.zone_btc_xpub or "", 0, runtime.settings.bitcoin_network
    )
    assert after.btc_address == bitcoin.derive_address(
        shop.btc_xpub or "", 0, runtime.settings.bitcoin_network
    )


def test_booking_twice_changes_nothing_and_the_queue_empties(
    runtime: Runtime, session: Session, make_invoice: MakeInvoice
) -> None:
    invoice = make_invoice()
    pay(session, invoice, invoice.amount_due_atomic)
    assert session.get(LedgerQueue, invoice.id) is not None
    book(runtime, session)
    count = len(session.scalars(select(LedgerTransaction)).all())
    assert session.scalar(select(LedgerQueue)) is None
    from pos import ledger_queue

    ledger_queue.enqueue(session, invoice.id)
    session.commit()
    book(runtime, session)
    assert len(session.scalars(select(LedgerTransaction)).all()) == count


def test_a_posting_to_an_account_outside_the_chart_is_refused(session: Session) -> None:
    posting = Posting(
        key="test:unknown",
        kind=TransactionKind.CONVERSION,
        legs=[Leg(chart.BANK, Side.DEBIT, 100), Leg("zone:typo", Side.CREDIT, 100)],
        effective_at=utcnow(),
    )
    with pytest.raises(UnknownAccountError, match="zone:typo"):
        write_posting(session, posting)


def test_a_watcher_and_the_booker_wait_for_each_other_on_one_invoice_instead_of_deadlocking(
    runtime: Runtime, session: Session, make_invoice: MakeInvoice
) -> None:
    # CI's soak on PostgreSQL: a watcher upserted the queue row and then bumped the invoice,
    # while the booker held the invoice and deleted the row: a deadlock, one side aborted.
    invoice = make_invoice()
    pay(session, invoice, invoice.amount_due_atomic, PaymentStatus.SEEN, txid="tx-lock")
    invoice_id, due = invoice.id, invoice.amount_due_atomic
    assert session.get(LedgerQueue, invoice_id) is not None
    factory = runtime.session_factory
    booker = factory()
    token = booker.scalar(select(LedgerQueue.queued_at).where(LedgerQueue.invoice_id == invoice_id))
    booker.scalar(select(Invoice).where(Invoice.id == invoice_id).with_for_update())
    failures: list[BaseException] = []

    def watcher() -> None:
        try:
            with factory() as watching:
                seen = Observation("solana", "tx-lock", 0, due, PaymentStatus.FINAL, 32)
                observe_payment(watching, watching.get_one(Invoice, invoice_id), seen)
                reevaluate_safely(watching, invoice_id)
                watching.commit()
        except BaseException as error:  # reported by the assertion below
            failures.append(error)

    thread = threading.Thread(target=watcher)
    thread.start()
    try:
        time.sleep(1.5)  # past PostgreSQL's deadlock_timeout (1 s), had the watcher made a cycle
        booker.execute(
            delete(LedgerQueue).where(
                LedgerQueue.invoice_id == invoice_id, LedgerQueue.queued_at == token
            )
        )
        booker.commit()
    finally:
        booker.close()
    thread.join(30)
    assert not thread.is_alive() and failures == []
    session.expire_all()
    # The watcher's change is waiting for the booker; the request the booker took is gone.
    assert session.get_one(Invoice, invoice_id).status is InvoiceStatus.SETTLED
    queued = session.get(LedgerQueue, invoice_id)
    assert queued is not None and queued.queued_at != token
