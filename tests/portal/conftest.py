"""Fixtures for the portal tests: two merchants with their people, and signed-in clients."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from flask import Flask
from flask.testing import FlaskClient

import pos.catalog  # noqa: F401 - the catalog table, for the per-test cleanup
from pos import invoices
from pos.models import Role
from pos.runtime import Runtime
from pos.states import PaymentMethod

import factories
from portal_helpers import login

USERS = {
    "owner": "owner@a.test",
    "cashier": "cashier@a.test",
    "other_owner": "owner@b.test",
    "other_cashier": "cashier@b.test",
    "operator": "ops@zone.test",
}


@pytest.fixture
def world(runtime: Runtime) -> dict[str, int]:
    """Shop A (ours) and shop B (someone else's), each with an owner and a cashier."""
    with runtime.session_factory.begin() as session:
        shop = factories.merchant(session, runtime.settings, "Shop A", "a")
        other = factories.merchant(session, runtime.settings, "Shop B", "b")
        ids = {"shop": shop.id, "other": other.id}
        for key, email in USERS.items():
            merchant_id = None
            if key != "operator":
                merchant_id = other.id if key.startswith("other") else shop.id
            role = Role.OPERATOR if key == "operator" else Role(key.removeprefix("other_"))
            ids[key] = factories.user(session, email, role, merchant_id).id
        return ids


@pytest.fixture
def as_user(app: Flask, world: dict[str, int]) -> Callable[[str | None], FlaskClient]:
    """A fresh client signed in as one of USERS (None: anonymous)."""

    def make(who: str | None) -> FlaskClient:
        client = app.test_client()
        if who is not None:
            login(client, USERS[who], factories.PASSWORD)
        return client

    return make


InvoiceMaker = Callable[..., str]


@pytest.fixture
def make_invoice(runtime: Runtime) -> InvoiceMaker:
    """Make an invoice through the real service, committed and published; returns its id."""

    def make(
        merchant_id: int,
        price_tiyn: int = 250_000,
        method: PaymentMethod = PaymentMethod.KZTE,
        description: str = "",
    ) -> str:
        with runtime.session_factory() as session:
            invoice = invoices.create_invoice(
                session,
                runtime.settings,
                runtime.rates,
                invoices.InvoiceRequest(merchant_id, price_tiyn, method, description),
            )
            session.commit()
            invoices.publish_after_commit(runtime.session_factory, runtime.coordinator, session)
            return invoice.id

    return make
