"""The shopper's checkout: copy buttons, languages, live status (SSE), partial payments, receipt."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator

import pytest
from flask import Flask
from flask.testing import FlaskClient

from pos import invoices
from pos.coordination import Coordinator, connect
from pos.models import Invoice, Merchant, MerchantStatus, PaymentStatus
from pos.runtime import Runtime
from pos.states import InvoiceStatus, PaymentMethod
from settlement.ledger import refunds
from settlement.payments import Observation, observe_payment, reevaluate


@pytest.fixture
def invoice_id(make_invoice: Callable[..., str], world: dict[str, int]) -> str:
    return make_invoice(world["shop"], 250_000, PaymentMethod.KZTE, "Two coffees")


def _pay(runtime: Runtime, invoice_id: str, amount_atomic: int, txid: str) -> None:
    """What a watcher does when it sees a transfer, through the real services."""
    with runtime.session_factory() as session:
        invoice = session.get(Invoice, invoice_id)
        assert invoice is not None
        seen = Observation("solana", txid, 0, amount_atomic, PaymentStatus.SEEN)
        observe_payment(session, invoice, seen)
        reevaluate(session, invoice)
        session.commit()
        invoices.publish_after_commit(runtime.session_factory, runtime.coordinator, session)


def test_checkout_offers_copy_buttons_and_a_wallet_link(
    client: FlaskClient, invoice_id: str
) -> None:
    page = client.get(f"/i/{invoice_id}").get_data(as_text=True)
    for target in ("copy-address", "copy-amount", "copy-uri"):
        assert f'data-copy="{target}"' in page and f'id="{target}"' in page
    assert re.search(r'id="open-wallet" href="solana:[^"]+reference=', page)
    assert 'id="copy-amount">2500<' in page
    assert "Two coffees" in page and 'data-events-url="/i/' in page


@pytest.mark.parametrize(
    ("header", "lang", "phrase"),
    [
        ("en-US,en;q=0.9", "en", "Open in wallet"),
        ("ru-RU,ru;q=0.9,en;q=0.5", "ru", "Открыть в кошельке"),
        ("kk-KZ,kk;q=0.9,ru;q=0.8", "kk", "Әмиянда ашу"),
        ("de-DE", "en", "Open in wallet"),
    ],
)
def test_language_follows_accept_language(
    client: FlaskClient, invoice_id: str, header: str, lang: str, phrase: str
) -> None:
    page = client.get(f"/i/{invoice_id}", headers={"Accept-Language": header}).get_data(True)
    assert f'<html lang="{lang}">' in page and phrase in page


def test_language_switch_sets_a_cookie_and_returns(client: FlaskClient, invoice_id: str) -> None:
    response = client.get(f"/lang/kk?next=/i/{invoice_id}")
    assert response.status_code == 302 and response.headers["Location"] == f"/i/{invoice_id}"
    assert "lang=kk" in response.headers["Set-Cookie"]
    page = client.get(f"/i/{invoice_id}", headers={"Accept-Language": "ru"}).get_data(True)
    assert '<html lang="kk">' in page and "төлемді күтуде" in page
    # No open redirect, and unknown languages change nothing.
    assert client.get("/lang/ru?next=//evil.example/").headers["Location"] == "/"
    assert "Set-Cookie" not in client.get("/lang/xx?next=/login").headers


def test_partial_payment_asks_for_the_rest(
    client: FlaskClient, runtime: Runtime, invoice_id: str
) -> None:
    _pay(runtime, invoice_id, 1_000_000_000, "sig-part-1")  # 1000 of 2500 KZTE
    page = client.get(f"/i/{invoice_id}").get_data(as_text=True)
    assert 'id="partial-prompt"' in page
    assert "We received 1000 KZTE. Please pay the remaining 1500 KZTE." in page
    assert "amount=1500&amp;" in page  # the URI (and so the QR) asks for the rest only
    status = client.get(f"/i/{invoice_id}/status.json").json
    assert status["paid_atomic"] == 1_000_000_000 and "paid_partial" in status["flags"]


def test_receipt_lists_transaction_ids_and_fits_thermal_paper(
    client: FlaskClient, runtime: Runtime, invoice_id: str
) -> None:
    _pay(runtime, invoice_id, 2_500_000_000, "5igSolanaSignatureOfTheShopper")
    page = client.get(f"/i/{invoice_id}/receipt?width=58").get_data(as_text=True)
    assert "receipt-58" in page and "5igSolanaSignatureOfTheShopper" in page
    assert "2,500.00 ₸" in page and "paid, confirming" in page
    assert "receipt-80" in client.get(f"/i/{invoice_id}/receipt?width=12").get_data(True)
    with client.get("/static/app.css") as response:
        css = response.get_data(as_text=True)
    assert "@media print" in css and "58mm" in css and "80mm" in css
    checkout = client.get(f"/i/{invoice_id}").get_data(as_text=True)
    assert re.search(r'id="paid-block" class="paid-block"\s*>', checkout)  # shown, not hidden
    assert re.search(r'id="pay-block"\s+hidden', checkout)


def _sse(app: Flask, invoice_id: str) -> Iterator[dict[str, object]]:
    response = app.test_client().get(f"/i/{invoice_id}/events", buffered=False)
    assert response.status_code == 200 and response.mimetype == "text/event-stream"
    try:
        for chunk in response.response:
            text = chunk.decode() if isinstance(chunk, bytes) else chunk
            if text.startswith("retry:") or text.startswith(":"):
                continue
            event = re.search(r"^event: (\w+)$", text, re.M).group(1)  # type: ignore[union-attr]
            data = json.loads(re.search(r"^data: (.*)$", text, re.M).group(1))  # type: ignore[union-attr]
            yield {"event": event, **data}
    finally:
        response.close()


def test_sse_pushes_each_change_from_the_redis_stream(
    app: Flask, runtime: Runtime, invoice_id: str
) -> None:
    app.config["SSE_LIFETIME_SECONDS"] = 30
    stream = _sse(app, invoice_id)
    first = next(stream)
    assert first["event"] == "status" and first["status"] == "new" and first["paid_atomic"] == 0
    _pay(runtime, invoice_id, 2_500_000_000, "sig-full")
    update = next(stream)
    assert update["event"] == "status", update  # not a fallback to polling, nor a goodbye
    assert update["status"] == "processing" and update["paid_atomic"] == 2_500_000_000
    with runtime.session_factory() as session:
        invoice = session.get(Invoice, invoice_id)
        assert invoice is not None
        invoices.change_status(session, invoice, InvoiceStatus.SETTLED)
        session.commit()
        invoices.publish_after_commit(runtime.session_factory, runtime.coordinator, session)
    assert next(stream)["status"] == "settled"
    assert next(stream)["event"] == "bye"  # final: the stream ends by itself
    with pytest.raises(StopIteration):
        next(stream)


def test_sse_sends_a_state_once_when_its_events_arrive_one_by_one(
    app: Flask, runtime: Runtime, invoice_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A payment is several stream entries; a reader that takes them in separate batches (a
    busy machine) must not repeat the state: the CI flake of the test above."""
    original = Coordinator.read_events

    def one_at_a_time(self: Coordinator, last_id: str, block_ms: int, count: int) -> object:
        return original(self, last_id, block_ms, count=1)

    monkeypatch.setattr(Coordinator, "read_events", one_at_a_time)
    app.config["SSE_LIFETIME_SECONDS"] = 5
    stream = _sse(app, invoice_id)
    assert next(stream)["status"] == "new"
    _pay(runtime, invoice_id, 2_500_000_000, "sig-one-by-one")
    assert next(stream)["status"] == "processing"
    # Nothing more changes: the stream ends with its goodbye, not a second "processing".
    assert [event["event"] for event in stream] == ["bye"]


def test_sse_lifetime_is_bounded(app: Flask, invoice_id: str) -> None:
    app.config["SSE_LIFETIME_SECONDS"] = 0
    events = [e["event"] for e in _sse(app, invoice_id)]
    assert events == ["status", "bye"]


def test_sse_tells_the_page_to_poll_when_redis_is_gone(runtime: Runtime, invoice_id: str) -> None:
    from merchant_portal import create_app

    runtime.coordinator = Coordinator(connect("redis://127.0.0.1:1/0"))
    app = create_app(runtime=runtime, test_config={"TESTING": True})
    # The page gets the state the database knows, then is told to poll.
    assert [e["event"] for e in _sse(app, invoice_id)] == ["status", "fallback"]
    # The polling fallback still answers from the database.
    assert app.test_client().get(f"/i/{invoice_id}/status.json").json["status"] == "new"


def test_unknown_invoice_has_no_stream_or_receipt(client: FlaskClient) -> None:
    assert client.get("/i/nope/events").status_code == 404
    assert client.get("/i/nope/receipt").status_code == 404


def test_a_new_hub_reader_never_starts_after_an_event_its_page_is_waiting_for(
    runtime: Runtime, invoice_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reader thread of a new hub may be scheduled late (a busy machine): the event
    published between the page's snapshot and that moment must still wake the page."""
    from merchant_portal import live

    original = live.EventHub._read_with

    def late_reader(self: live.EventHub, *args: object) -> None:
        time.sleep(1.0)  # the payment below is published before this thread reads anything
        original(self, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(live.EventHub, "_read_with", late_reader)
    hub = live.EventHub(runtime.coordinator)
    seen = hub.subscribe(invoice_id)  # starts the (late) reader
    try:
        _pay(runtime, invoice_id, 2_500_000_000, "sig-early")
        assert hub.wait(invoice_id, seen, timeout=15.0) != seen
    finally:
        hub.unsubscribe(invoice_id)


def test_partly_paid_header_shows_what_is_left(
    client: FlaskClient, runtime: Runtime, invoice_id: str
) -> None:
    _pay(runtime, invoice_id, 1_000_000_000, "sig-part-head")  # 1000 of 2500 KZTE
    page = client.get(f"/i/{invoice_id}").get_data(as_text=True)
    assert '<h1 class="price" id="remaining-header">Still to pay: 1500 KZTE</h1>' in page
    assert "of 2,500.00 ₸ (2500 KZTE)" in page
    assert re.search(r'<span id="status" class="status status-new">partly paid</span>', page)
    assert '<span data-status="partly_paid">partly paid</span>' in page  # for checkout.js
    ru = client.get(f"/i/{invoice_id}", headers={"Accept-Language": "ru"}).get_data(True)
    assert "частично оплачен" in ru and "Осталось оплатить: 1500 KZTE" in ru


def _pay_final(runtime: Runtime, invoice_id: str, amount_atomic: int, txid: str) -> None:
    with runtime.session_factory() as session:
        invoice = session.get(Invoice, invoice_id)
        assert invoice is not None
        final = Observation("solana", txid, 0, amount_atomic, PaymentStatus.FINAL)
        observe_payment(session, invoice, final)
        reevaluate(session, invoice)
        session.commit()


def test_overpayment_tells_the_shopper_how_the_extra_comes_back(
    client: FlaskClient, runtime: Runtime, invoice_id: str
) -> None:
    _pay_final(runtime, invoice_id, 3_000_000_000, "sig-over")  # 3000 of 2500 KZTE
    page = client.get(f"/i/{invoice_id}").get_data(as_text=True)
    assert "You paid 500 KZTE more than the price. The extra will be refunded to you." in page
    assert "The shop will give you a refund link" in page and "/r/" not in page
    with runtime.session_factory() as session:
        refund = refunds.create(session, runtime.settings, invoice_id)
        session.commit()
        token = refund.token
    page = client.get(f"/i/{invoice_id}").get_data(as_text=True)
    assert f'id="refund-claim-link" href="/r/{token}"' in page
    assert client.get(f"/r/{token}").status_code == 200  # the link leads to the claim page
    kk = client.get(f"/i/{invoice_id}", headers={"Accept-Language": "kk"}).get_data(True)
    assert "Қайтаруды алу" in kk


def test_an_exact_payment_has_no_refund_notice(
    client: FlaskClient, runtime: Runtime, invoice_id: str
) -> None:
    _pay_final(runtime, invoice_id, 2_500_000_000, "sig-exact")
    page = client.get(f"/i/{invoice_id}").get_data(as_text=True)
    assert "Payment received" in page and 'id="refund-notice"' not in page


def test_open_invoice_of_a_suspended_shop_says_so(
    client: FlaskClient, runtime: Runtime, invoice_id: str, world: dict[str, int]
) -> None:
    assert 'id="shop-suspended"' not in client.get(f"/i/{invoice_id}").get_data(True)
    with runtime.session_factory.begin() as session:
        merchant = session.get(Merchant, world["shop"])
        assert merchant is not None
        merchant.status = MerchantStatus.SUSPENDED
    page = client.get(f"/i/{invoice_id}").get_data(as_text=True)
    assert 'id="shop-suspended"' in page and "This shop is suspended" in page
    ru = client.get(f"/i/{invoice_id}", headers={"Accept-Language": "ru"}).get_data(True)
    assert "приостановлен" in ru
    # Once paid there is nothing left to warn about.
    _pay_final(runtime, invoice_id, 2_500_000_000, "sig-suspended")
    assert 'id="shop-suspended"' not in client.get(f"/i/{invoice_id}").get_data(True)
