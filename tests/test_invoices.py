"""Invoice service against the real database and Redis."""

import json
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from pos import accounts, invoices
from pos.coordination import EVENT_STREAM, Coordinator
from pos.demo_wallets import demo_account_xpub
from pos.errors import (
    AllocationCollisionError,
    ConcurrentUpdateError,
    IllegalTransitionError,
    MerchantNotActiveError,
    PaymentMethodUnavailableError,
    RateUnavailableError,
    ValidationError,
)
from pos.invoice_view import amount_to_request, payment_uri, remaining_atomic
from pos.methods import bitcoin, kzte
from pos.models import (
    BtcAccountKey,
    Invoice,
    InvoiceEvent,
    Merchant,
    MerchantStatus,
    SettlementMode,
)
from pos.runtime import Runtime, make_rate_book
from pos.states import InvoiceStatus, PaymentMethod

import factories


def _request(
    merchant_id: int, method: PaymentMethod = PaymentMethod.KZTE, price_tiyn: int = 250_000
) -> invoices.InvoiceRequest:
    return invoices.InvoiceRequest(merchant_id=merchant_id, price_tiyn=price_tiyn, method=method)


@pytest.fixture
def shop(runtime: Runtime) -> Merchant:
    """A `direct` merchant: these tests are about invoices paying the merchant's own keys."""
    with runtime.session_factory.begin() as session:
        return factories.merchant(session, runtime.settings, mode=SettlementMode.DIRECT)


def _create(runtime: Runtime, request: invoices.InvoiceRequest) -> str:
    with runtime.session_factory() as session:
        invoice = invoices.create_invoice(session, runtime.settings, runtime.rates, request)
        session.commit()
        invoices.publish_after_commit(runtime.session_factory, runtime.coordinator, session)
        return invoice.id


def test_kzte_invoice_locks_parity_and_gets_a_reference(runtime: Runtime, shop: Merchant) -> None:
    invoice_id = _create(runtime, _request(shop.id))
    with runtime.session_factory() as session:
        invoice = invoices.get_invoice(session, invoice_id)
        assert invoice.amount_due_atomic == 2_500_000_000
        assert invoice.rate_source == "parity" and invoice.kzte_reference
        assert invoice.expires_at - invoice.created_at == timedelta(minutes=15)
        assert [e.type for e in invoice.events] == ["invoice.created"]
        assert invoice.events[0].published_at is not None
    live = runtime.coordinator.get_live(invoice_id)
    assert live is not None and live["status"] == "new" and live["version"] == "1"
    assert runtime.coordinator.lookup("kzte", [invoice.kzte_reference or ""]) == {
        invoice.kzte_reference: invoice_id
    }


def test_btc_invoice_uses_the_next_address_index(runtime: Runtime, shop: Merchant) -> None:
    first = _create(runtime, _request(shop.id, PaymentMethod.BTC))
    second = _create(runtime, _request(shop.id, PaymentMethod.BTC))
    with runtime.session_factory() as session:
        a, b = invoices.get_invoice(session, first), invoices.get_invoice(session, second)
        assert (a.btc_derivation_index, b.btc_derivation_index) == (0, 1)
        assert a.btc_address != b.btc_address and (a.btc_address or "").startswith("bcrt1q")
        assert a.rate_source == "sandbox"
        assert runtime.coordinator.lookup("btc", [a.btc_address or ""]) == {a.btc_address: a.id}


def test_btc_refused_without_a_fresh_rate_while_kzte_works(
    runtime: Runtime, shop: Merchant, tmp_path: Path
) -> None:
    stale = tmp_path / "rate.json"
    stale.write_text(
        json.dumps(
            {"rate": "45000000", "as_of": (datetime.now(UTC) - timedelta(hours=2)).isoformat()}
        )
    )
    settings = runtime.settings.with_overrides(btc_rate_sources=(f"file:{stale}",))
    runtime.rates = make_rate_book(settings, runtime.coordinator)
    runtime.settings = settings
    with pytest.raises(RateUnavailableError, match="KZTE invoices still work"):
        _create(runtime, _request(shop.id, PaymentMethod.BTC))
    assert _create(runtime, _request(shop.id, PaymentMethod.KZTE))
    with runtime.session_factory() as session:  # the failed BTC attempt left no trace
        key = session.scalars(
            select(BtcAccountKey).where(BtcAccountKey.merchant_id == shop.id)
        ).one()
        assert key.next_index == 0


def test_concurrent_invoices_never_share_an_address(runtime: Runtime, shop: Merchant) -> None:
    ids: list[str] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            for _ in range(5):
                ids.append(_create(runtime, _request(shop.id, PaymentMethod.BTC)))
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    with runtime.session_factory() as session:
        found = [invoices.get_invoice(session, i) for i in ids]
        assert sorted(i.btc_derivation_index for i in found) == list(range(20))  # type: ignore[type-var]
        assert len({i.btc_address for i in found}) == 20


@pytest.mark.parametrize(
    ("price", "message"),
    [
        (0, "more than zero"),
        (-5, "more than zero"),
        (99_99, "smallest invoice"),
        (10**13, "largest invoice"),
    ],
)
def test_bad_amounts_are_refused(
    runtime: Runtime, shop: Merchant, price: int, message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        _create(runtime, _request(shop.id, price_tiyn=price))


def test_suspended_merchant_cannot_invoice(runtime: Runtime, shop: Merchant) -> None:
    with runtime.session_factory.begin() as session:
        session.get(Merchant, shop.id).status = MerchantStatus.SUSPENDED  # type: ignore[union-attr]
    with pytest.raises(MerchantNotActiveError):
        _create(runtime, _request(shop.id))


def test_method_not_set_up_is_refused(runtime: Runtime, shop: Merchant) -> None:
    with runtime.session_factory.begin() as session:
        session.get(Merchant, shop.id).solana_wallet = None  # type: ignore[union-attr]
    with pytest.raises(PaymentMethodUnavailableError, match="KZTE"):
        _create(runtime, _request(shop.id))


def test_transitions_record_events_and_move_redis(runtime: Runtime, shop: Merchant) -> None:
    invoice_id = _create(runtime, _request(shop.id))
    with runtime.session_factory() as session:
        invoice = invoices.get_invoice(session, invoice_id)
        invoices.change_status(session, invoice, InvoiceStatus.PROCESSING)
        invoices.set_flag(session, invoice, "paid_over")
        assert invoices.set_flag(session, invoice, "paid_over") is None  # once only
        invoices.change_status(session, invoice, InvoiceStatus.SETTLED)
        session.commit()
        invoices.publish_after_commit(runtime.session_factory, runtime.coordinator, session)
    live = runtime.coordinator.get_live(invoice_id)
    assert live is not None
    assert (live["status"], live["version"], live["flags"]) == ("settled", "4", "paid_over")
    stream = runtime.coordinator.client.xrange(EVENT_STREAM)
    types = [fields["type"] for _, fields in stream if fields["invoice"] == invoice_id]
    assert types == [
        "invoice.created",
        "invoice.processing",
        "invoice.paid_over",
        "invoice.settled",
    ]


def test_illegal_transition_raises_and_changes_nothing(runtime: Runtime, shop: Merchant) -> None:
    invoice_id = _create(runtime, _request(shop.id))
    with runtime.session_factory() as session:
        invoice = invoices.get_invoice(session, invoice_id)
        invoices.change_status(session, invoice, InvoiceStatus.EXPIRED)
        session.commit()
        with pytest.raises(IllegalTransitionError):
            invoices.change_status(session, invoice, InvoiceStatus.NEW)
        session.rollback()
        assert invoices.get_invoice(session, invoice_id).version == 2


def test_two_writers_one_wins(runtime: Runtime, shop: Merchant) -> None:
    invoice_id = _create(runtime, _request(shop.id))
    factory: sessionmaker[Session] = runtime.session_factory
    with factory() as first, factory() as second:
        a = invoices.get_invoice(first, invoice_id)
        b = invoices.get_invoice(second, invoice_id)
        invoices.change_status(first, a, InvoiceStatus.PROCESSING)
        first.commit()
        with pytest.raises(ConcurrentUpdateError):
            invoices.change_status(second, b, InvoiceStatus.EXPIRED)
        second.rollback()
    with factory() as session:
        assert invoices.get_invoice(session, invoice_id).status is InvoiceStatus.PROCESSING


def test_expire_due_only_expires_unpaid_past_window(runtime: Runtime, shop: Merchant) -> None:
    old = _create(runtime, _request(shop.id))
    fresh = _create(runtime, _request(shop.id))
    with runtime.session_factory() as session:
        invoices.get_invoice(session, old).expires_at = datetime.now(UTC) - timedelta(seconds=1)
        session.commit()
        assert invoices.expire_due(session) == [old]
        session.commit()
        assert invoices.get_invoice(session, old).status is InvoiceStatus.EXPIRED
        assert invoices.get_invoice(session, fresh).status is InvoiceStatus.NEW


def test_mark_needs_a_reason_and_sets_the_flag(runtime: Runtime, shop: Merchant) -> None:
    invoice_id = _create(runtime, _request(shop.id))
    with runtime.session_factory() as session:
        invoice = invoices.get_invoice(session, invoice_id)
        with pytest.raises(ValidationError, match="reason"):
            invoices.mark(session, invoice, InvoiceStatus.SETTLED, " ", None)
        invoices.mark(session, invoice, InvoiceStatus.SETTLED, "paid in cash", None)
        session.commit()
        assert invoice.marked and invoice.status is InvoiceStatus.SETTLED


def test_other_merchants_invoice_is_not_found(runtime: Runtime, shop: Merchant) -> None:
    with runtime.session_factory.begin() as session:
        other = factories.merchant(
            session, runtime.settings, "Other", "other", mode=SettlementMode.DIRECT
        )
    invoice_id = _create(runtime, _request(shop.id))
    from pos.errors import NotFoundError

    with runtime.session_factory() as session, pytest.raises(NotFoundError):
        invoices.get_invoice(session, invoice_id, merchant_id=other.id)


def test_events_survive_redis_being_down_and_are_relayed(
    runtime: Runtime, shop: Merchant, coordinator: Coordinator
) -> None:
    from pos.coordination import connect

    dead = Coordinator(connect("redis://127.0.0.1:1/0"))
    with runtime.session_factory() as session:
        invoice = invoices.create_invoice(
            session, runtime.settings, runtime.rates, _request(shop.id)
        )
        session.commit()
        invoices.publish_after_commit(runtime.session_factory, dead, session)  # logs, no raise
    with runtime.session_factory() as session:
        pending = session.scalars(
            select(InvoiceEvent).where(InvoiceEvent.published_at.is_(None))
        ).all()
        assert [e.invoice_id for e in pending] == [invoice.id]
    assert coordinator.get_live(invoice.id) is None
    assert invoices.relay_unpublished(runtime.session_factory, coordinator) == 1
    assert coordinator.get_live(invoice.id) is not None
    assert invoices.relay_unpublished(runtime.session_factory, coordinator) == 0


def test_unpaid_address_run_counts_from_the_newest(runtime: Runtime, shop: Merchant) -> None:
    ids = [_create(runtime, _request(shop.id, PaymentMethod.BTC)) for _ in range(3)]
    with runtime.session_factory() as session:
        assert invoices.unpaid_address_run(session, shop.id) == 3
        invoices.get_invoice(session, ids[0]).amount_paid_atomic = 1_000
        session.commit()
        assert invoices.unpaid_address_run(session, shop.id) == 2
        invoices.get_invoice(session, ids[2]).amount_paid_atomic = 1_000
        session.commit()
        assert invoices.unpaid_address_run(session, shop.id) == 0


def test_a_new_account_key_starts_at_its_own_first_address(
    runtime: Runtime, shop: Merchant
) -> None:
    # Issue #13.6: after replacing the key, the next address is index 0 of the NEW wallet (the
    # first of the addresses shown for checking), and the old key keeps its own index.
    network = runtime.settings.bitcoin_network
    old_key = shop.btc_xpub or ""
    for _ in range(3):
        _create(runtime, _request(shop.id, PaymentMethod.BTC))
    new_key = demo_account_xpub("replacement", network)
    with runtime.session_factory.begin() as session:
        merchant = session.get_one(Merchant, shop.id)
        accounts.set_btc_account_key(
            session, merchant, bitcoin.parse_account_xpub(new_key, network)
        )
    first = _create(runtime, _request(shop.id, PaymentMethod.BTC))
    with runtime.session_factory() as session:
        invoice = session.get_one(Invoice, first)
        assert invoice.btc_derivation_index == 0
        assert invoice.btc_address == bitcoin.first_addresses(new_key, network)[0]
        assert invoices.unpaid_address_run(session, shop.id) == 1  # the new wallet's run only
    with runtime.session_factory.begin() as session:
        merchant = session.get_one(Merchant, shop.id)
        accounts.set_btc_account_key(
            session, merchant, bitcoin.parse_account_xpub(old_key, network)
        )
    back = _create(runtime, _request(shop.id, PaymentMethod.BTC))
    with runtime.session_factory() as session:
        assert session.get_one(Invoice, back).btc_derivation_index == 3


def test_an_account_key_of_another_merchant_is_refused(runtime: Runtime, shop: Merchant) -> None:
    with runtime.session_factory.begin() as session:
        other = factories.merchant(
            session, runtime.settings, "Other Shop", "other", mode=SettlementMode.DIRECT
        )
        with pytest.raises(ValidationError, match="already registered"):
            accounts.set_btc_account_key(
                session,
                other,
                bitcoin.parse_account_xpub(shop.btc_xpub or "", runtime.settings.bitcoin_network),
            )


def test_a_remainder_below_the_dust_limit_asks_for_the_dust_limit(
    runtime: Runtime, shop: Merchant
) -> None:
    # Issue #13.8: wallets refuse outputs below 294 sat, so a tiny shortfall could never be paid.
    invoice_id = _create(runtime, _request(shop.id, PaymentMethod.BTC))
    with runtime.session_factory.begin() as session:
        invoice = session.get_one(Invoice, invoice_id)
        invoice.amount_paid_atomic = invoice.amount_due_atomic - 100
        uri = payment_uri(invoice, runtime.settings, "Shop")
        assert remaining_atomic(invoice) == 100
        assert amount_to_request(invoice) == bitcoin.DUST_LIMIT_SAT
    assert f"amount={bitcoin.sat_to_btc_text(bitcoin.DUST_LIMIT_SAT)}" in uri


def test_tenge_invoices_share_the_zones_one_address_index(runtime: Runtime) -> None:
    """Issue #14: `tenge` invoices of any merchant pay addresses of the zone's key, from one
    zone-wide index (never twice the same), and KZTE to the zone's wallet with a reference."""
    with runtime.session_factory.begin() as session:
        a = factories.merchant(session, runtime.settings, "Tenge A", "tenge-a").id
        b = factories.merchant(session, runtime.settings, "Tenge B", "tenge-b").id
    made = [_create(runtime, _request(m, PaymentMethod.BTC)) for m in (a, b, a)]
    zone = runtime.settings.zone_btc_xpub or ""
    with runtime.session_factory() as session:
        got = [invoices.get_invoice(session, i) for i in made]
        assert [i.btc_derivation_index for i in got] == [0, 1, 2]
        assert [i.btc_address for i in got] == [
            bitcoin.derive_address(zone, n, runtime.settings.bitcoin_network) for n in range(3)
        ]
        key = session.get_one(BtcAccountKey, got[0].btc_account_key_id)
        assert key.merchant_id is None  # the zone's own key row
        kzte = invoices.get_invoice(session, _create(runtime, _request(b)))
        assert kzte.kzte_recipient == runtime.settings.zone_kzte_wallet
        assert kzte.kzte_reference


def test_tenge_invoices_are_refused_while_the_zone_has_no_destination(runtime: Runtime) -> None:
    with runtime.session_factory.begin() as session:
        merchant = factories.merchant(session, runtime.settings, "Tenge C", "tenge-c").id
    runtime.settings = runtime.settings.with_overrides(zone_btc_xpub=None, zone_kzte_wallet=None)
    with pytest.raises(PaymentMethodUnavailableError, match="ZONE_BTC_XPUB"):
        _create(runtime, _request(merchant, PaymentMethod.BTC))
    with pytest.raises(PaymentMethodUnavailableError, match="ZONE_KZTE_WALLET"):
        _create(runtime, _request(merchant))


def test_a_merchant_cannot_register_the_zones_account_key(runtime: Runtime) -> None:
    with runtime.session_factory.begin() as session:
        merchant = factories.merchant(session, runtime.settings, "Tenge D", "tenge-d")
    _create(runtime, _request(merchant.id, PaymentMethod.BTC))  # the zone's key row exists now
    zone = bitcoin.parse_account_xpub(
        runtime.settings.zone_btc_xpub or "", runtime.settings.bitcoin_network
    )
    with runtime.session_factory() as session, pytest.raises(ValidationError, match="registered"):
        accounts.set_btc_account_key(session, session.get_one(Merchant, merchant.id), zone)


def test_an_address_already_taken_is_skipped_not_a_500(runtime: Runtime, shop: Merchant) -> None:
    first = _create(runtime, _request(shop.id, PaymentMethod.BTC))
    with runtime.session_factory.begin() as session:
        # A key row whose index restarts below addresses earlier invoices hold (a key re-added).
        session.execute(update(BtcAccountKey).values(next_index=0))
    second = _create(runtime, _request(shop.id, PaymentMethod.BTC))
    with runtime.session_factory() as session:
        a, b = invoices.get_invoice(session, first), invoices.get_invoice(session, second)
        assert (a.btc_derivation_index, b.btc_derivation_index) == (0, 1)
        assert a.btc_address != b.btc_address
        events = select(InvoiceEvent).where(InvoiceEvent.invoice_id == b.id)
        assert len(session.scalars(events).all()) == 1


def test_a_reference_taken_is_allocated_again_and_then_refused_clearly(
    runtime: Runtime, shop: Merchant, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = _create(runtime, _request(shop.id))
    with runtime.session_factory() as session:
        taken = invoices.get_invoice(session, first).kzte_reference
    fresh = iter([taken, taken, "Fresh1111111111111111111111111111111111111"])
    # The reference is random (2^-256 to collide): forced here to replay a collision.
    monkeypatch.setattr(kzte, "new_reference", lambda: next(fresh))
    second = _create(runtime, _request(shop.id))
    with runtime.session_factory() as session:
        assert (invoices.get_invoice(session, second).kzte_reference or "").startswith("Fresh")
    monkeypatch.setattr(kzte, "new_reference", lambda: taken)
    with pytest.raises(AllocationCollisionError, match="already in use"):
        _create(runtime, _request(shop.id))
    with runtime.session_factory() as session:
        assert len(session.scalars(select(Invoice)).all()) == 2  # nothing half-made
