"""Every page of every role, looked at in a real browser: five screen sizes, three languages.

Debian's Chromium driven by Playwright, the portal served by werkzeug on 127.0.0.1 (port 0),
as in test_e2e_terminal.py. The pages come from the access matrix (tests/portal: PAGES in
test_portal_access.py, the ids from route_catalog.route_ids), so a new page is looked at as
soon as it has its access entry. On each page, at each size and in each language:

- nothing is wider than the screen (`scrollWidth <= innerWidth`): tables scroll inside their
  card or stack, the header wraps;
- no visible text is a raw status identifier (the values of the status enums in pos/ and
  settlement/, and the invoice flags) unless the language's catalogue renders it so;
- in Russian and Kazakh, no visible text is an English msgid whose translation differs;
- the terminal's keypad and Charge button are on screen without scrolling on a 1024 x 768 and a
  768 x 1024 tablet.

Screenshots: test-artifacts/pages/<role>-<page>-<width>-<lang>.png (CI keeps test-artifacts/).
Every problem is collected and reported at the end of a role's test, not just the first one.
"""

from __future__ import annotations

import re
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any

import pytest
from babel.messages.pofile import read_po
from werkzeug.serving import make_server

from pos import invoices
from pos.db import utcnow
from pos.integrations import DeliveryStatus
from pos.models import Invoice, MerchantStatus, Payment, PaymentStatus, Role
from pos.runtime import Runtime
from pos.states import InvoiceStatus, PaymentMethod
from settlement.ledger.models import FeeInvoiceStatus, PayoutStatus, RefundStatus

import factories

# The access matrix lives beside the portal tests (their directory is not a package).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "portal"))
from route_catalog import route_ids
from test_portal_access import PAGES

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "test-artifacts" / "pages"
TRANSLATIONS = ROOT / "merchant_portal" / "translations"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--hide-scrollbars"]
SSE_LIFETIME_S = 2
LANGS = ("en", "ru", "kk")
SHOT_SECONDS = [0.0]


@dataclass(frozen=True)
class Screen:
    name: str
    width: int
    height: int
    shot: bool  # the three sizes are kept as screenshots; the others only checked


SCREENS = (
    Screen("1280", 1280, 900, True),
    Screen("1024", 1024, 768, True),
    Screen("768", 768, 1024, False),
    Screen("390", 390, 844, True),
    Screen("360", 360, 740, False),
)
TABLETS = ("1024", "768")  # where the terminal's keypad and Charge must fit without scrolling

# Seen by the browser but not pages: CSV downloads, the live event stream (never ends), JSON
# polling answers, QR images, and the health and metrics probes (text for machines).
# Images, stylesheets and the terminal's JSON quote are fetched by pages, never shown alone.
NOT_A_PAGE = re.compile(
    r"(\.csv|\.json|\.svg|\.webp|\.css|/events)$|^/(healthz|metrics|terminal/quote)$"
)

USERS = {
    "owner": "owner@a.test",
    "cashier": "cashier@a.test",
    "other_owner": "owner@b.test",
    "other_cashier": "cashier@b.test",
    "operator": "ops@zone.test",
}
ROLES = ("public", "cashier", "owner", "operator")
WHO = {"public": "anon", "cashier": "cashier", "owner": "owner", "operator": "operator"}
HOME = {"cashier": "**/terminal/", "owner": "**/merchant/**", "operator": "**/operator/**"}

# Extra public pages: the checkout in its exceptional states (the matrix has a fresh invoice).
EXTRA_PUBLIC = ("/i/{partial}", "/i/{overpaid}", "/i/{settled}", "/i/{expired}")


def _status_values() -> set[str]:
    """Every state identifier a page could leak: the status enums and the invoice flags."""
    enums: tuple[type[StrEnum], ...] = (
        InvoiceStatus,
        PaymentStatus,
        PayoutStatus,
        RefundStatus,
        FeeInvoiceStatus,
        DeliveryStatus,
        MerchantStatus,
    )
    return {member.value for enum in enums for member in enum} | set(invoices.FLAG_EVENTS)


@dataclass
class Catalogue:
    """What each language shows for each msgid (English: the msgid itself)."""

    rendered: dict[str, set[str]] = field(default_factory=dict)  # lang -> translated texts
    untranslated: dict[str, set[str]] = field(default_factory=dict)  # lang -> English msgids
    patterns: dict[str, list[tuple[re.Pattern[str], str]]] = field(default_factory=dict)
    english: set[str] = field(default_factory=set)  # every msgid
    vocabulary: set[str] = field(default_factory=set)  # the msgids' words, lower case


PLACEHOLDER = re.compile(r"%\([a-z_]+\)[sd]|%[sd]")
CYRILLIC = re.compile("[\u0400-\u04ff]")
ENGLISH_WORD = re.compile(r"^\(?([A-Za-z]?[a-z]+|[a-z]+'[a-z]+)[,.;:)!?]*$")


def _load_catalogue() -> Catalogue:
    catalogue = Catalogue()
    english: set[str] = set()
    for lang in ("ru", "kk"):
        with (TRANSLATIONS / lang / "LC_MESSAGES" / "messages.po").open("rb") as po:
            messages = read_po(po, locale=lang)
        texts: set[str] = set()
        missing: set[str] = set()
        patterns: list[tuple[re.Pattern[str], str]] = []
        for message in messages:
            msgid = str(message.id[0] if isinstance(message.id, tuple) else message.id)
            translated = str(
                message.string[0] if isinstance(message.string, tuple) else message.string or ""
            )
            if not msgid:
                continue
            english.add(msgid)
            texts.add(_normal(translated))
            if translated == msgid:
                continue  # the same in both languages (a brand, a unit)
            if PLACEHOLDER.search(msgid):
                literal = PLACEHOLDER.sub("", msgid)
                if len(re.sub(r"\W", "", literal)) >= 4:  # enough words to be recognisable
                    # The text around each placeholder as written, spaces included: 'merchant
                    # %(id)s' is 'merchant 7', never the identifier 'merchant.active'.
                    parts = [re.escape(re.sub(r"\s+", " ", p)) for p in PLACEHOLDER.split(msgid)]
                    patterns.append((re.compile("^" + ".+?".join(parts).strip() + "$"), msgid))
            else:
                missing.add(_normal(msgid))
        catalogue.rendered[lang] = texts
        catalogue.untranslated[lang] = missing
        catalogue.patterns[lang] = patterns
    catalogue.english = {_normal(m) for m in english}
    catalogue.vocabulary = {
        w.lower() for m in english for w in re.findall(r"[A-Za-z]{3,}", PLACEHOLDER.sub("", m))
    }
    catalogue.rendered["en"] = catalogue.english
    catalogue.untranslated["en"] = set()
    catalogue.patterns["en"] = []
    return catalogue


def _normal(text: str) -> str:
    return " ".join(text.split())


# Visible text nodes of the page, whitespace collapsed (hidden elements and templates skipped).
VISIBLE_TEXTS = """() => {
  const out = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const text = node.nodeValue.replace(/\\s+/g, ' ').trim();
    const parent = node.parentElement;
    // Codes shown as codes (account codes, txids, action names in monospace) are not prose.
    if (!text || !parent || parent.closest('script, style, template, noscript')) continue;
    if (parent.closest('code, kbd, samp, .mono')) continue;
    const shown = parent.tagName === 'OPTION' ? parent.closest('select').checkVisibility()
                                              : parent.checkVisibility();
    if (shown) out.push(text);
  }
  return out;
}"""
WIDTH = "() => [document.documentElement.scrollWidth, window.innerWidth]"
# What sticks out (for the message): visible elements past the right edge that are not inside
# something that scrolls or clips them (a table scrolling inside its card is fine).
STICKING_OUT = """() => {
  const clipped = (el) => {
    for (let up = el.parentElement; up && up !== document.body; up = up.parentElement) {
      if (getComputedStyle(up).overflowX !== 'visible') return true;
    }
    return false;
  };
  const out = [];
  for (const el of document.body.querySelectorAll('*')) {
    const box = el.getBoundingClientRect();
    if (box.right > window.innerWidth + 0.5 && el.checkVisibility() && !clipped(el)) {
      const cls = typeof el.className === 'string' && el.className
        ? '.' + el.className.split(' ')[0] : '';
      const id = el.id ? '#' + el.id : '';
      out.push(el.tagName.toLowerCase() + id + cls + ' ' + Math.round(box.right));
    }
  }
  return out.slice(-3);
}"""


@dataclass
class Stack:
    base_url: str
    runtime: Runtime
    ids: dict[str, str]


def _invoice(runtime: Runtime, merchant_id: int, price_tiyn: int, description: str) -> str:
    with runtime.session_factory() as session:
        invoice = invoices.create_invoice(
            session,
            runtime.settings,
            runtime.rates,
            invoices.InvoiceRequest(merchant_id, price_tiyn, PaymentMethod.KZTE, description),
        )
        session.commit()
        invoices.publish_after_commit(runtime.session_factory, runtime.coordinator, session)
        return invoice.id


def _pay(runtime: Runtime, invoice_id: str, share: float, status: InvoiceStatus | None) -> None:
    """Record a payment of `share` of the amount due (a real row, the service's events)."""
    with runtime.session_factory() as session:
        invoice = session.get(Invoice, invoice_id)
        assert invoice is not None
        paid = int(invoice.amount_due_atomic * share)
        session.add(
            Payment(
                invoice_id=invoice_id,
                chain="solana",
                txid=f"sig-{invoice_id}",
                amount_atomic=paid,
                status=PaymentStatus.FINAL
                if status is InvoiceStatus.SETTLED
                else PaymentStatus.SEEN,
            )
        )
        invoices.set_amount_paid(session, invoice, paid)
        if share < 1:
            invoices.set_flag(session, invoice, "paid_partial")
        if share > 1:
            invoices.set_flag(session, invoice, "paid_over")
        if status is not None:
            invoices.change_status(session, invoice, status)
        session.commit()
        invoices.publish_after_commit(runtime.session_factory, runtime.coordinator, session)


def _seed(runtime: Runtime, app: Any) -> dict[str, str]:
    """Two shops with their people and an operator (as tests/portal's `world`), the matrix's
    objects, and invoices in every state so the tables and the checkout have something to show."""
    with runtime.session_factory.begin() as session:
        shop = factories.merchant(session, runtime.settings, "Dastarkhan Café", "a")
        other = factories.merchant(session, runtime.settings, "Shop B", "b")
        world = {"shop": shop.id, "other": other.id}
        for key, email in USERS.items():
            merchant_id = None
            if key != "operator":
                merchant_id = other.id if key.startswith("other") else shop.id
            role = Role.OPERATOR if key == "operator" else Role(key.removeprefix("other_"))
            world[key] = factories.user(session, email, role, merchant_id).id

    def make_invoice(merchant_id: int, price_tiyn: int = 250_000, **_: Any) -> str:
        return _invoice(runtime, merchant_id, price_tiyn, "")

    ids: dict[str, str] = route_ids(app, runtime, world, make_invoice)
    states = {
        "settled": (1.0, InvoiceStatus.SETTLED),
        "processing": (1.0, InvoiceStatus.PROCESSING),
        "partial": (0.4, None),
        "overpaid": (1.5, InvoiceStatus.SETTLED),
    }
    for table, (name, (share, status)) in enumerate(states.items(), start=1):
        ids[name] = _invoice(runtime, world["shop"], 1_234_500, f"Палау, {table}-үстел")
        _pay(runtime, ids[name], share, status)
    ids["expired"] = _invoice(runtime, world["shop"], 99_000, "coffee")
    with runtime.session_factory() as session:
        invoice = session.get(Invoice, ids["expired"])
        assert invoice is not None
        invoices.expire_one(session, invoice, utcnow() + timedelta(days=1))
        session.commit()
    return ids


@pytest.fixture
def stack(runtime: Runtime) -> Iterator[Stack]:
    from merchant_portal import create_app

    app = create_app(runtime=runtime, test_config={"SSE_LIFETIME_SECONDS": SSE_LIFETIME_S})
    ids = _seed(runtime, app)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    serving = threading.Thread(target=server.serve_forever, name="e2e-pages", daemon=True)
    serving.start()
    try:
        yield Stack(f"http://127.0.0.1:{server.server_port}", runtime, ids)
    finally:
        time.sleep(SSE_LIFETIME_S + 1)  # the checkout pages' event streams end by themselves
        server.shutdown()
        server.server_close()
        serving.join(10)


@pytest.fixture(scope="module")
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


@pytest.fixture(scope="module")
def catalogue() -> Catalogue:
    return _load_catalogue()


def pages_of(role: str) -> list[str]:
    """The role's pages from the access matrix: those it may open (200) and that are HTML.
    Pages every role opens (the shopper's) are looked at once, as `public`."""
    who = WHO[role]
    paths = [
        path
        for path, expected in PAGES
        if expected[who] == 200
        and not NOT_A_PAGE.search(path.split("?")[0])
        and (role == "public" or set(expected.values()) != {200})
    ]
    return paths + list(EXTRA_PUBLIC) if role == "public" else paths


def _slug(path: str) -> str:
    """`/terminal/invoices/{mine}` -> `terminal-invoices-mine` (a file name for the page)."""
    return re.sub(r"[^a-z0-9]+", "-", path.lower()).strip("-") or "root"


def _sign_in(context: Any, stack: Stack, role: str) -> None:
    if role == "public":
        return
    email = USERS[role]
    page = context.new_page()
    page.goto(f"{stack.base_url}/login")
    page.fill('input[name="email"]', email)
    page.fill('input[name="password"]', factories.PASSWORD)
    page.click('#login-form button[type="submit"]')
    if role == "operator":
        from pos import totp

        page.wait_for_url("**/login/2fa")
        page.fill('input[name="code"]', totp.code_at(factories.TOTP_SECRET))
        page.click('#second-factor-form button[type="submit"]')
    page.wait_for_url(HOME[role])
    page.close()


def _set_language(context: Any, stack: Stack, lang: str) -> None:
    context.add_cookies([{"name": "lang", "value": lang, "url": stack.base_url}])


def _look_at(
    page: Any, role: str, slug: str, lang: str, catalogue: Catalogue, problems: list[str]
) -> None:
    """Every screen size for the page loaded in `page`; problems are appended."""
    statuses = _status_values() - catalogue.rendered[lang]
    for screen in SCREENS:
        page.set_viewport_size({"width": screen.width, "height": screen.height})
        where = f"{role} {slug} {screen.name} {lang}"
        scroll_width, inner_width = page.evaluate(WIDTH)
        too_wide = scroll_width > inner_width
        if too_wide:
            problems.append(
                f"{where}: {scroll_width} px wide on a {inner_width} px screen"
                f" (sticking out: {', '.join(page.evaluate(STICKING_OUT))})"
            )
        if screen.shot or too_wide:
            name = f"{role}-{slug}-{screen.name}-{lang}.png"
            shot_started = time.monotonic()
            page.screenshot(path=str(SHOTS / name), full_page=True)
            SHOT_SECONDS[0] += time.monotonic() - shot_started
        if screen is SCREENS[0]:  # the text is the same at every size
            for text in page.evaluate(VISIBLE_TEXTS):
                problems.extend(
                    f"{where}: {p}" for p in _text_problems(text, lang, statuses, catalogue)
                )


def _text_problems(text: str, lang: str, statuses: set[str], catalogue: Catalogue) -> list[str]:
    found = []
    segments = {text, *(s.strip(" :") for s in re.split(r"[·→|,()]", text))}
    words = {
        w for w in re.findall(r"(?<![\w.])[a-z]+(?:_[a-z]+)+(?![\w.])", text)
    }  # paid_partial, not invoice.paid_partial (an API event name)
    for raw in sorted((segments | words) & statuses):
        found.append(f"raw status {raw!r} in {text!r}")
    if text in catalogue.untranslated[lang] or text.strip(" :") in catalogue.untranslated[lang]:
        found.append(f"untranslated {text!r}")
    elif text not in catalogue.english:  # an msgid itself is not an instance of another one
        for pattern, msgid in catalogue.patterns[lang]:
            if pattern.match(text):
                found.append(f"untranslated {text!r} (msgid {msgid!r})")
                break
        else:
            if lang != "en" and _looks_english(text, catalogue):
                found.append(f"English outside the catalogue {text!r}")
    return found


def _looks_english(text: str, catalogue: Catalogue) -> bool:
    """A hard-coded English phrase (never wrapped in _(), so not in the catalogue): no Cyrillic,
    and at least two words, most of them words the catalogue's English uses. Names, ids,
    addresses and brands (one word, or words the catalogue never uses) do not look so."""
    if CYRILLIC.search(text) or text in catalogue.english:
        return False
    tokens = text.split()
    # Words, not identifiers: `user.created`, `zone:bank`, `BTC/KZT` and JSON are not prose.
    words = [m.group(1).lower() for t in tokens if (m := ENGLISH_WORD.match(t))]
    known = sum(w in catalogue.vocabulary for w in words)
    return known >= 2 and len(words) >= 0.75 * len(tokens)


def _check_terminal_fits(page: Any, lang: str, problems: list[str]) -> None:
    """On a tablet the cashier keys the amount and charges without scrolling."""
    for screen in SCREENS:
        if screen.name not in TABLETS:
            continue
        page.set_viewport_size({"width": screen.width, "height": screen.height})
        page.evaluate("() => window.scrollTo(0, 0)")
        for what, selector in (("keypad", "#keypad"), ("Charge", ".methods button.primary")):
            box = page.locator(selector).first.bounding_box()
            if box is not None:
                print(
                    f"terminal {screen.width}x{screen.height} {lang}: {what} ends at"
                    f" {round(box['y'] + box['height'])} px",
                    flush=True,
                )
            if box is None:
                problems.append(f"terminal {screen.name} {lang}: {what} is not shown")
            elif box["y"] < 0 or box["y"] + box["height"] > screen.height:
                bottom = round(box["y"] + box["height"])
                problems.append(
                    f"terminal {screen.width}x{screen.height} {lang}: {what} ends at {bottom} px,"
                    " below the fold"
                )


@pytest.mark.parametrize("role", ROLES)
def test_every_page_fits_and_speaks_the_language(
    stack: Stack, browser: Any, catalogue: Catalogue, role: str
) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    for stale in SHOTS.glob(f"{role}-*.png"):  # an earlier run's overflow shots would mislead
        stale.unlink()
    paths = pages_of(role)
    assert paths, f"the access matrix gives {role} no page"
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-US")
    problems: list[str] = []
    started = time.monotonic()
    SHOT_SECONDS[0] = 0.0
    try:
        _sign_in(context, stack, role)
        page = context.new_page()
        for lang in LANGS:
            _set_language(context, stack, lang)
            for path in paths:
                slug = _slug(path.split("?")[0])
                url = stack.base_url + path.format_map(stack.ids)
                page.set_viewport_size({"width": 1280, "height": 900})
                response = page.goto(url)
                assert response is not None and response.status == 200, (
                    f"{role} {path} ({lang}): {response.status if response else 'no answer'}"
                )
                kind = response.headers.get("content-type", "")
                assert kind.startswith("text/html"), (
                    f"{path} answers {kind}: add it to NOT_A_PAGE if it is not a page"
                )
                assert page.get_attribute("html", "lang") == lang
                _look_at(page, role, slug, lang, catalogue, problems)
                if path == "/terminal/":
                    _check_terminal_fits(page, lang, problems)
            print(
                f"{role} {lang}: {len(paths)} pages x {len(SCREENS)} sizes,"
                f" {time.monotonic() - started:.0f} s (screenshots {SHOT_SECONDS[0]:.0f} s)",
                flush=True,
            )
    finally:
        context.close()
    assert not problems, f"{len(problems)} problem(s):\n" + "\n".join(problems)


def test_the_matrix_gives_every_role_its_pages() -> None:
    """The page list is derived, not written here: it must not come out empty or shrink to a
    role's home page only (a renamed role or a changed matrix would otherwise pass silently)."""
    assert "/terminal/" in pages_of("cashier")
    assert {"/merchant/", "/merchant/invoices/", "/merchant/integrations/"} <= set(
        pages_of("owner")
    )
    assert {"/operator/", "/reports/zone", "/operator/merchants"} <= set(pages_of("operator"))
    assert "/i/{mine}" in pages_of("public") and "/i/{mine}" not in pages_of("owner")
