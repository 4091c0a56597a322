"""End to end in a real browser: a cashier charges 2,500 ₸ in KZTE and in BTC, the shopper's
sandbox wallet pays the URI shown on the terminal, and the terminal flips to PAID.

Everything is real and local: Debian's Chromium driven by Playwright, the portal served by
werkzeug on 127.0.0.1 (port 0), the settlement worker's duties in a thread, surfpool as the
Solana validator and the Bitcoin regtest stand-in. Screenshots land in test-artifacts/.

The chain watchers that turn payments into `settled` are registered in
`settlement.worker.all_duties`; if none flips the invoice within WATCH_TIMEOUT_S, the test fails
and says so.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker
from werkzeug.serving import make_server

from pos import accounts
from pos.coordination import Coordinator
from pos.demo_wallets import demo_account_xpub, demo_solana_wallet
from pos.errors import CoordinationUnavailableError
from pos.models import Invoice, Role
from pos.runtime import Runtime, make_rate_book
from pos.settings import Settings

pytestmark = pytest.mark.slow

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
WATCH_TIMEOUT_S = 60
SSE_LIFETIME_S = 3
CASHIER_EMAIL = "cashier@e2e.test"
PASSWORD = "correct horse battery"
log = logging.getLogger(__name__)


@dataclass
class Stack:
    base_url: str
    runtime: Runtime
    data_dir: Path
    solana_rpc_url: str
    bitcoin_rpc_url: str


@pytest.fixture
def chains(tmp_path: Path) -> Iterator[tuple[Any, Any]]:
    """A fresh Solana validator (with the KZTE mint) and a Bitcoin regtest node."""
    from sandbox.bitcoin.node import start_node
    from sandbox.solana.validator import start_validator

    validator = start_validator(tmp_path)
    try:
        node = start_node(tmp_path / "bitcoin", rpcport=0)
        try:
            yield validator, node
        finally:
            node.stop()
    finally:
        validator.stop()


def _worker_loop(rt: Runtime, stop: threading.Event) -> None:
    """The settlement worker's duties, as `cryptocity worker` runs them, in a thread."""
    from settlement.worker import WorkerState, all_duties, run_pass

    duties = all_duties(rt.settings)
    state = WorkerState()
    for duty in duties:
        if getattr(duty, "start", None) is not None:
            duty.start(_waker(duty, state))
    try:
        while not stop.is_set():
            try:
                run_pass(rt, duties, state)
            except (CoordinationUnavailableError, OperationalError) as exc:
                log.warning("worker pass failed, retrying: %s", exc)
            stop.wait(0.25)
    finally:
        for duty in duties:
            if getattr(duty, "close", None) is not None:
                duty.close()


def _waker(duty: Any, state: Any) -> Callable[[], None]:
    def wake() -> None:
        duty.woken.set()
        state.tick.set()

    return wake


@pytest.fixture
def stack(
    chains: tuple[Any, Any],
    settings: Settings,
    engine: Engine,
    session_factory: sessionmaker[Session],
    coordinator: Coordinator,
    tmp_path: Path,
) -> Iterator[Stack]:
    from merchant_portal import create_app

    validator, node = chains
    cfg = settings.with_overrides(
        solana_rpc_url=validator.rpc_url,
        solana_ws_url=validator.ws_url,
        kzte_mint=validator.kzte_mint,
        kzte_decimals=6,
        bitcoin_rpc_url=node.url,
        data_dir=tmp_path,
    )
    rt = Runtime(cfg, engine, session_factory, coordinator, make_rate_book(cfg, coordinator), "")
    with session_factory.begin() as session:
        shop = accounts.create_merchant(
            session,
            cfg,
            "Dastarkhan Café",
            btc_xpub=demo_account_xpub("e2e", cfg.bitcoin_network),
            solana_wallet=demo_solana_wallet("e2e"),
        )
        accounts.create_user(
            session, CASHIER_EMAIL, PASSWORD, Role.CASHIER, shop.id, display_name="Aruzhan"
        )
    # Short-lived event streams (the page reconnects by itself) let the teardown drain them.
    app = create_app(runtime=rt, test_config={"SSE_LIFETIME_SECONDS": SSE_LIFETIME_S})
    server = make_server("127.0.0.1", 0, app, threaded=True)
    serving = threading.Thread(target=server.serve_forever, name="e2e-web", daemon=True)
    serving.start()
    stop = threading.Event()
    worker = threading.Thread(target=_worker_loop, args=(rt, stop), name="e2e-worker", daemon=True)
    worker.start()
    try:
        yield Stack(
            f"http://127.0.0.1:{server.server_port}", rt, tmp_path, validator.rpc_url, node.url
        )
    finally:
        stop.set()
        # The browser is gone by now; give its event streams one lifetime to end.
        time.sleep(SSE_LIFETIME_S + 2)
        server.shutdown()
        server.server_close()
        serving.join(10)
        worker.join(30)


@pytest.fixture
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield chromium
        finally:
            chromium.close()


def _in_thread(fn: Callable[[], Any]) -> Any:
    # The wallets run their own asyncio loops; keep them off Playwright's greenlet thread.
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(fn).result(timeout=180)


def _status_of(rt: Runtime, invoice_id: str) -> str:
    with rt.session_factory() as session:
        invoice = session.get(Invoice, invoice_id)
        return "missing" if invoice is None else f"{invoice.status} {invoice.flags}"


def _sell(page: Any, stack: Stack, method: str, shot: str) -> tuple[str, str]:
    """Key 2,500 ₸ on the keypad and charge in `method`; returns (invoice id, payment URI)."""
    page.goto(f"{stack.base_url}/terminal/")
    for key in ("2", "5", "00"):
        page.click(f'#keypad [data-key="{key}"]')
    assert page.input_value("#amount") == "2500"
    if shot:
        page.screenshot(path=str(ARTIFACTS / shot), full_page=True)
    page.click(f"button.method-{method}")
    page.wait_for_url("**/terminal/invoices/*")
    invoice_id = page.url.rsplit("/", 1)[1]
    assert "2,500.00 ₸" in page.inner_text("#price-kzt")
    uri = page.inner_text("#payment-uri").strip()
    page.screenshot(path=str(ARTIFACTS / f"terminal-qr-{method}.png"), full_page=True)
    return invoice_id, uri


def _wait_paid(page: Any, stack: Stack, invoice_id: str, what: str) -> None:
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        page.wait_for_selector("#paid-screen", state="visible", timeout=WATCH_TIMEOUT_S * 1000)
    except PlaywrightTimeout:
        page.screenshot(path=str(ARTIFACTS / f"terminal-not-paid-{what}.png"), full_page=True)
        pytest.fail(
            f"{what}: the shopper paid but no watcher settled invoice {invoice_id} within "
            f"{WATCH_TIMEOUT_S} s (database says: {_status_of(stack.runtime, invoice_id)}). "
            "Is the chain watcher registered in settlement.worker.all_duties?"
        )
    assert "PAID" in page.inner_text("#paid-screen")
    page.screenshot(path=str(ARTIFACTS / f"terminal-paid-{what}.png"), full_page=True)


def _sign_in(browser: Any, stack: Stack) -> Any:
    context = browser.new_context(locale="en-US", viewport={"width": 1024, "height": 1200})
    page = context.new_page()
    page.goto(f"{stack.base_url}/login")
    page.fill('input[name="email"]', CASHIER_EMAIL)
    page.fill('input[name="password"]', PASSWORD)
    page.click('#login-form button[type="submit"]')
    page.wait_for_url("**/terminal/")
    return page


def _checkout_screenshots(browser: Any, stack: Stack, invoice_id: str) -> None:
    expected = {"en": "Open in wallet", "ru": "Открыть в кошельке", "kk": "Әмиянда ашу"}
    for lang, phrase in expected.items():
        context = browser.new_context(locale=lang, viewport={"width": 420, "height": 1100})
        with contextlib.closing(context):
            shopper = context.new_page()
            shopper.goto(f"{stack.base_url}/i/{invoice_id}")
            assert shopper.get_attribute("html", "lang") == lang
            assert phrase in shopper.inner_text("#open-wallet")
            shopper.screenshot(path=str(ARTIFACTS / f"checkout-{lang}.png"), full_page=True)


def test_cashier_charges_kzte_and_the_terminal_flips_to_paid(stack: Stack, browser: Any) -> None:
    from sandbox.solana.wallet import pay_uri

    ARTIFACTS.mkdir(exist_ok=True)
    page = _sign_in(browser, stack)
    invoice_id, uri = _sell(page, stack, "kzte", "terminal.png")
    assert uri.startswith("solana:") and "amount=2500&" in uri
    _checkout_screenshots(browser, stack, invoice_id)
    signatures = _in_thread(
        lambda: pay_uri(
            uri,
            rpc_url=stack.solana_rpc_url,
            wallet_dir=stack.data_dir / "shopper-solana",
            faucet_data_dir=stack.data_dir,
        )
    )
    assert len(signatures) == 1
    _wait_paid(page, stack, invoice_id, "kzte")
    page.goto(f"{stack.base_url}/i/{invoice_id}/receipt?width=80")
    assert signatures[0] in page.inner_text("#receipt")
    page.screenshot(path=str(ARTIFACTS / "receipt.png"), full_page=True)
    page.emulate_media(media="print")
    page.goto(f"{stack.base_url}/i/{invoice_id}/receipt?width=58")
    page.screenshot(path=str(ARTIFACTS / "receipt-58mm-print.png"), full_page=True)


def test_cashier_charges_btc_and_a_block_makes_it_paid(stack: Stack, browser: Any) -> None:
    from sandbox.bitcoin.node import MINER_ADDRESS
    from sandbox.bitcoin.wallet import RPC, pay_uri

    ARTIFACTS.mkdir(exist_ok=True)
    page = _sign_in(browser, stack)
    invoice_id, uri = _sell(page, stack, "btc", "")
    assert uri.startswith("bitcoin:bcrt1")
    txids = _in_thread(
        lambda: pay_uri(
            uri, rpc_url=stack.bitcoin_rpc_url, wallet_dir=stack.data_dir / "shopper-bitcoin"
        )
    )
    assert len(txids) == 1
    _in_thread(lambda: RPC(stack.bitcoin_rpc_url)("generatetoaddress", 1, MINER_ADDRESS))
    _wait_paid(page, stack, invoice_id, "btc")
    page.goto(f"{stack.base_url}/i/{invoice_id}/receipt")
    assert txids[0] in page.inner_text("#receipt")
