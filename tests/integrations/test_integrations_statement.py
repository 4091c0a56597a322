"""GET /api/v1/statement: the key's merchant's ledger statement (scope reports:read)."""

from __future__ import annotations

from typing import Any

from flask.testing import FlaskClient

from pos import invoices
from pos.models import PaymentStatus
from pos.runtime import Runtime
from pos.states import PaymentMethod
from settlement.ledger import booking
from settlement.payments import Observation, observe_payment, reevaluate


def _settle(runtime: Runtime, merchant_id: int, txid: str) -> str:
    with runtime.session_factory() as session:
        invoice = invoices.create_invoice(
            session,
            runtime.settings,
            runtime.rates,
            invoices.InvoiceRequest(merchant_id, 250_000, PaymentMethod.KZTE),
        )
        session.commit()
        observe_payment(
            session,
            invoice,
            Observation("solana", txid, 0, invoice.amount_due_atomic, PaymentStatus.FINAL),
        )
        reevaluate(session, invoice)
        session.commit()
        invoices.publish_after_commit(runtime.session_factory, runtime.coordinator, session)
        return invoice.id


def _post_ledger(runtime: Runtime) -> None:
    for duty in booking.duty():
        duty.run(runtime)


def test_statement_shows_the_settlement_and_is_scoped(
    client: FlaskClient, runtime: Runtime, make_key: Any, world: dict[str, int]
) -> None:
    mine = _settle(runtime, world["shop"], "sig-mine")
    _settle(runtime, world["other"], "sig-theirs")
    _post_ledger(runtime)
    reports = {"Authorization": f"Bearer {make_key(world['shop'], ('reports:read',))}"}
    body = client.get("/api/v1/statement", headers=reports).json
    assert body["merchant_id"] == world["shop"] and body["opening_tiyn"] == 0
    assert [line["invoice_id"] for line in body["lines"]] == [mine]  # not the other shop's
    fee = 250_000 * runtime.settings.default_fee_bp // 10_000
    assert body["closing_tiyn"] == body["credits_tiyn"] == 250_000 - fee

    read_only = {"Authorization": f"Bearer {make_key(world['shop'], ('invoices:read',))}"}
    denied = client.get("/api/v1/statement", headers=read_only)
    assert denied.status_code == 403 and denied.json["error"]["code"] == "insufficient_scope"
    bad = client.get("/api/v1/statement?from=yesterday", headers=reports)
    assert bad.status_code == 400 and bad.json["error"]["code"] == "validation_error"
    backwards = client.get("/api/v1/statement?from=2026-11-20&to=2026-11-01", headers=reports)
    assert backwards.status_code == 400


def test_statement_is_in_the_openapi_document(client: FlaskClient) -> None:
    document = client.get("/api/v1/openapi.json").json
    operation = document["paths"]["/statement"]["get"]  # paths are relative to the server
    assert operation["operationId"] == "get_statement"
