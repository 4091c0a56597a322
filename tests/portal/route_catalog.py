"""Every portal route in one place, for the access matrix and the input fuzz.

`route_ids` builds two shops' worth of real objects (invoices, cashiers, products, API keys,
webhooks, refunds, fee invoices, a payout, a choice link) so a path can name ours and theirs.
`rules_of(app)` lists the app's (endpoint, method) pairs; both test modules fail when a rule has
no entry, and print the missing ones so whoever adds a route adds its entries.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import date

from flask import Flask
from sqlalchemy import select

from pos import branding, catalog, integrations
from pos.db import utcnow
from pos.integrations import WebhookDelivery
from pos.models import InvoiceEvent, Role
from pos.runtime import Runtime
from settlement.ledger.models import FeeInvoice, Payout, Refund

import factories
from image_support import png_bytes

# Routes neither test needs to enter, with the reason.
EXEMPT: dict[str, str] = {
    "static": "files from merchant_portal/static; no code, no input",
}
# The REST API has its own schemathesis fuzz and per-key access tests
# (tests/integrations/test_integrations_fuzz.py, test_integrations_api.py).
API_PREFIX = "api."

Rule = tuple[str, str]  # (endpoint, method)


def rules_of(app: Flask) -> set[Rule]:
    """Every (endpoint, method) the app answers, without HEAD/OPTIONS and EXEMPT endpoints."""
    return {
        (rule.endpoint, method)
        for rule in app.url_map.iter_rules()
        if rule.endpoint not in EXEMPT
        for method in (rule.methods or set()) - {"HEAD", "OPTIONS"}
    }


def missing_message(kind: str, missing: set[Rule]) -> str:
    lines = "\n".join(f"  {method} {endpoint}" for endpoint, method in sorted(missing))
    return f"{len(missing)} route(s) without a {kind} entry; add them:\n{lines}"


def route_ids(
    app: Flask,
    runtime: Runtime,
    world: dict[str, int],
    make_invoice: Callable[..., str],
) -> dict[str, str]:
    """Real ids of shop A ("mine") and shop B ("theirs") for the path placeholders."""
    ids = {
        "mine": make_invoice(world["shop"]),
        "theirs": make_invoice(world["other"]),
        "shop": str(world["shop"]),
        "other": str(world["other"]),
        "my_cashier": str(world["cashier"]),
        "their_cashier": str(world["other_cashier"]),
    }
    with runtime.session_factory.begin() as session:
        # A second cashier of ours, for actions that must not lock out the signed-in one.
        ids["spare_cashier"] = str(
            factories.user(session, "spare@a.test", Role.CASHIER, world["shop"]).id
        )
        for who, merchant_id in (("my", world["shop"]), ("their", world["other"])):
            item = catalog.add_item(session, merchant_id, f"{who} coffee", 90_000, "Drinks")
            ids[f"{who}_product"] = str(item.id)
            colour = (200, 40, 40) if who == "my" else (40, 40, 200)
            ids[f"{who}_image"] = catalog.set_image(session, item, png_bytes(colour)).sha256
            ids[f"{who}_logo"] = branding.set_logo(
                session, merchant_id, png_bytes(colour[::-1])
            ).sha256
            key, _token = integrations.create_api_key(
                session, merchant_id, f"{who} key", ["invoices:read"]
            )
            ids[f"{who}_key"] = str(key.id)
            hook = integrations.create_webhook(
                session,
                runtime.settings,
                merchant_id,
                # A public address: no DNS needed (none here), and the SSRF policy passes it.
                "https://93.184.215.14/cc",
                ["invoice.settled"],
            )
            ids[f"{who}_hook"] = str(hook.id)
            invoice_id = ids["mine" if who == "my" else "theirs"]
            event = session.scalars(
                select(InvoiceEvent).where(InvoiceEvent.invoice_id == invoice_id)
            ).first()
            assert event is not None  # the creation event of the invoice
            delivery = WebhookDelivery(webhook_id=hook.id, event_id=event.id, retry_until=utcnow())
            session.add(delivery)
            # Rows the ledger would make after a payment, inserted directly: the pages only
            # look them up by id and merchant, and a real payment per test would cost seconds.
            refund = Refund(
                token=secrets.token_urlsafe(24),
                invoice_id=invoice_id,
                merchant_id=merchant_id,
                method="kzte",
                settlement_mode="zone",
                amount_tiyn=5_000,
                amount_atomic=50_000_000,
            )
            fee = FeeInvoice(merchant_id=merchant_id, month="2026-10", amount_tiyn=1_000)
            payout = Payout(merchant_id=merchant_id, business_date=date(2026, 11, 2), amount_tiyn=1)
            session.add_all([refund, fee, payout])
            session.flush()
            ids[f"{who}_delivery"] = str(delivery.id)
            ids[f"{who}_refund"] = str(refund.id)
            ids[f"{who}_refund_token"] = refund.token
            ids[f"{who}_fee"] = str(fee.id)
            ids[f"{who}_payout"] = str(payout.id)
    from merchant_portal import choice

    with app.app_context():
        ids["my_choice"] = choice.make_token(world["shop"], 250_000, "tea", world["cashier"])
        ids["their_choice"] = choice.make_token(
            world["other"], 250_000, "tea", world["other_cashier"]
        )
    return ids
