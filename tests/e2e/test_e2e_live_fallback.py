"""In a real browser: a checkout page whose live stream is refused (429, over the per-address
cap) keeps following the invoice by polling status.json, and shows "paid" once it is.

Debian's Chromium driven by Playwright, the portal served by werkzeug on 127.0.0.1 (port 0).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from werkzeug.serving import make_server

from pos import invoices
from pos.models import Invoice
from pos.runtime import Runtime
from pos.states import InvoiceStatus, PaymentMethod

import factories

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run"]


@pytest.fixture
def refusing_server(runtime: Runtime) -> Iterator[str]:
    from merchant_portal import create_app

    # No live stream for anyone: every /events answers 429 (the cap a flood would reach).
    runtime.settings = runtime.settings.with_overrides(live_streams_per_ip=0)
    app = create_app(runtime=runtime, test_config={"SSE_LIFETIME_SECONDS": 3})
    server = make_server("127.0.0.1", 0, app, threaded=True)
    serving = threading.Thread(target=server.serve_forever, name="e2e-web", daemon=True)
    serving.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        serving.join(10)


def _invoice(runtime: Runtime) -> str:
    with runtime.session_factory.begin() as session:
        shop = factories.merchant(session, runtime.settings, "Fallback Shop", "f")
        merchant_id = shop.id
    with runtime.session_factory() as session:
        invoice = invoices.create_invoice(
            session,
            runtime.settings,
            runtime.rates,
            invoices.InvoiceRequest(merchant_id, 250_000, PaymentMethod.KZTE),
        )
        session.commit()
        invoices.publish_after_commit(runtime.session_factory, runtime.coordinator, session)
        return invoice.id


def _pay(runtime: Runtime, invoice_id: str) -> None:
    with runtime.session_factory() as session:
        invoice = session.get(Invoice, invoice_id)
        assert invoice is not None
        invoices.set_amount_paid(session, invoice, invoice.amount_due_atomic)
        invoices.change_status(session, invoice, InvoiceStatus.PROCESSING)
        session.commit()
        invoices.publish_after_commit(runtime.session_factory, runtime.coordinator, session)


def test_a_refused_live_stream_falls_back_to_polling(
    runtime: Runtime, refusing_server: str
) -> None:
    from playwright.sync_api import sync_playwright

    invoice_id = _invoice(runtime)
    statuses: dict[str, list[int]] = {"events": [], "status": []}
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        try:
            page = chromium.new_page()

            def seen(response: Any) -> None:
                for kind in statuses:
                    if response.url.split("?")[0].endswith(
                        f"/{kind}" if kind == "events" else "/status.json"
                    ):
                        statuses[kind].append(response.status)

            page.on("response", seen)
            page.goto(f"{refusing_server}/i/{invoice_id}")
            page.locator("#pay-block").wait_for(state="visible")  # (no eval: the CSP forbids it)
            page.wait_for_timeout(500)  # the refused stream has been tried by now
            _pay(runtime, invoice_id)
            # Polling every 2.5 s: the page shows the payment within a few rounds.
            page.locator("#paid-block").wait_for(state="visible", timeout=15_000)
        finally:
            chromium.close()
    assert 429 in statuses["events"]  # the stream was refused…
    assert 200 in statuses["status"]  # …and the page polled instead
