"""The operator's audit log: sentences, filters (who, what, merchant, Almaty days), pages, CSV."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from csv_support import runnable_cells
from flask.testing import FlaskClient
from sqlalchemy import update

from merchant_portal import audit_log
from pos import accounts
from pos.models import AuditLog, Merchant
from pos.runtime import Runtime

from portal_helpers import csrf_from


@pytest.fixture
def operator(as_user: Callable[[str | None], FlaskClient]) -> FlaskClient:
    return as_user("operator")


def _suspend(client: FlaskClient, merchant_id: int, reason: str) -> None:
    token = csrf_from(client, "/operator/merchants")
    response = client.post(
        f"/operator/merchants/{merchant_id}/suspend", data={"csrf_token": token, "reason": reason}
    )
    assert response.status_code == 302


def _csv(client: FlaskClient, query: str = "") -> list[dict[str, str]]:
    response = client.get(f"/operator/audit.csv{query}")
    assert response.status_code == 200 and response.mimetype == "text/csv"
    text = response.get_data(as_text=True)
    assert runnable_cells(text) == []
    return list(csv.DictReader(io.StringIO(text)))


def test_a_suspension_reads_as_a_sentence_on_the_overview_and_the_log(
    operator: FlaskClient, world: dict[str, int]
) -> None:
    _suspend(operator, world["other"], "unpaid fees")
    overview = operator.get("/operator/").get_data(as_text=True)
    assert "ops@zone.test suspended Shop B: unpaid fees" in overview
    assert "merchant.suspended" not in overview  # the action's name is not the text
    page = operator.get("/operator/audit")
    assert page.status_code == 200
    assert "ops@zone.test suspended Shop B: unpaid fees" in page.get_data(as_text=True)


def test_sentences_are_translated(operator: FlaskClient, world: dict[str, int]) -> None:
    _suspend(operator, world["other"], "долги")
    operator.set_cookie("lang", "ru")
    page = operator.get("/operator/audit").get_data(as_text=True)
    assert "ops@zone.test приостановил(а) магазин Shop B: долги" in page  # noqa: RUF001 - Russian


def test_filters_by_actor_action_merchant_and_almaty_days(
    operator: FlaskClient, runtime: Runtime, world: dict[str, int]
) -> None:
    _suspend(operator, world["other"], "fraud")
    with runtime.session_factory.begin() as session:
        # 19:30 UTC on 1 March is 00:30 on 2 March in Almaty.
        row = accounts.audit(
            session,
            "merchant.payout_hold",
            actor_user_id=world["owner"],
            merchant_id=world["shop"],
            detail={"from": 24, "to": 48},
        )
        session.flush()
        session.execute(
            update(AuditLog)
            .where(AuditLog.id == row.id)
            .values(at=datetime(2026, 3, 1, 19, 30, tzinfo=UTC))
        )
    by_merchant = _csv(operator, f"?merchant={world['other']}&action=merchant.suspended")
    assert [r["sentence"] for r in by_merchant] == ["ops@zone.test suspended Shop B: fraud"]
    assert by_merchant[0]["merchant_id"] == str(world["other"])
    by_actor = _csv(operator, f"?actor={world['owner']}")
    assert [r["action"] for r in by_actor] == ["merchant.payout_hold"]
    assert by_actor[0]["sentence"] == (
        "owner@a.test changed the payout hold of Shop A from 24 h to 48 h"
    )
    assert by_actor[0]["at"] == "2026-03-02T00:30:00+05:00"
    assert len(_csv(operator, "?from=2026-03-02&to=2026-03-02")) == 1
    assert _csv(operator, "?from=2026-03-01&to=2026-03-01") == []
    page = operator.get(f"/operator/audit?actor={world['owner']}").get_data(as_text=True)
    assert "changed the payout hold of Shop A" in page and "suspended Shop B" not in page
    assert f"/operator/audit.csv?actor={world['owner']}" in page  # the export keeps the filter


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("?from=2026-02-30", "from"),
        ("?to=9999-12-31", "to"),
        ("?actor=²", "actor"),
        ("?merchant=99999999999999999999", "merchant"),
        ("?from=2026-03-05&to=2026-03-01", "from"),
    ],
)
def test_a_bad_filter_is_a_field_error_not_a_500(
    operator: FlaskClient, world: dict[str, int], query: str, field: str
) -> None:
    response = operator.get(f"/operator/audit{query}")
    assert response.status_code == 400
    assert f'id="{field}-error"' in response.get_data(as_text=True)
    assert operator.get(f"/operator/audit.csv{query}").status_code == 400


def test_the_log_is_paged(operator: FlaskClient, runtime: Runtime, world: dict[str, int]) -> None:
    with runtime.session_factory.begin() as session:
        for n in range(audit_log.PAGE_SIZE + 5):
            accounts.audit(
                session, "refund.cancelled", merchant_id=world["shop"], detail={"refund_id": n}
            )
    first = operator.get("/operator/audit?action=refund.cancelled").get_data(as_text=True)
    second = operator.get("/operator/audit?action=refund.cancelled&page=2").get_data(as_text=True)
    assert first.count("cancelled refund #") == audit_log.PAGE_SIZE
    assert second.count("cancelled refund #") == 5
    assert "The system cancelled refund #0 of Shop A" in second  # the oldest, last
    assert "page=2" in first and "1 / 2" in first


def test_hostile_text_stays_text_on_the_page_and_in_the_csv(
    operator: FlaskClient, runtime: Runtime, world: dict[str, int]
) -> None:
    with runtime.session_factory.begin() as session:
        merchant = session.get(Merchant, world["other"])
        assert merchant is not None
        merchant.name = '=HYPERLINK("http://evil.test")'
    _suspend(operator, world["other"], "<script>alert(1)</script>")
    page = operator.get("/operator/audit").get_data(as_text=True)
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;" in page
    _csv(operator)  # runnable_cells() == [] is checked there


def test_an_unknown_action_or_missing_field_still_reads(
    operator: FlaskClient, runtime: Runtime, world: dict[str, int]
) -> None:
    with runtime.session_factory.begin() as session:
        accounts.audit(session, "something.new", merchant_id=world["shop"])
        accounts.audit(session, "merchant.settlement_mode", merchant_id=world["shop"])
    rows = _csv(operator, f"?merchant={world['shop']}")
    sentences = {r["action"]: r["sentence"] for r in rows}
    assert sentences["something.new"] == "The system: something.new"
    assert sentences["merchant.settlement_mode"] == (
        "The system changed the settlement of Shop A from ? to ?"
    )


def test_every_recorded_action_has_a_sentence() -> None:
    """The actions the code records (listed here by hand from pos, merchant_portal, settlement)
    each have a template, so none reads as its internal name."""
    recorded = {
        "merchant.created",
        "merchant.active",
        "merchant.suspended",
        "merchant.pending",
        "merchant.profile_changed",
        "merchant.btc_xpub_set",
        "merchant.solana_wallet_set",
        "merchant.shop_domains_set",
        "merchant.settlement_mode",
        "merchant.payout_hold",
        "merchant.bank_details",
        "merchant.policies_changed",
        "user.created",
        "user.password_changed",
        "user.password_reset",
        "user.enabled",
        "user.disabled",
        "user.2fa_enabled",
        "user.2fa_disabled",
        "user.recovery_code_used",
        "auth.login",
        "auth.login_failed",
        "auth.2fa_failed",
        "api_key.created",
        "api_key.revoked",
        "webhook.created",
        "webhook.updated",
        "webhook.deleted",
        "webhook.redeliver",
        "invoice.marked",
        "payout.rebuilt",
        "payout.marked_paid",
        "fee_invoice.issued",
        "fee_invoice.paid",
        "refund.created",
        "refund.claimed",
        "refund.sent",
        "refund.cancelled",
        "conversion.recorded",
        "kzte.finality_timeout",
        "rates.alarm_raised",
        "rates.alarm_cleared",
    }
    assert recorded <= set(audit_log.TEMPLATES)


def test_the_overview_links_read_as_words(operator: FlaskClient, world: dict[str, int]) -> None:
    page = operator.get("/operator/").get_data(as_text=True)
    for label in (
        "Zone dashboard: volume, fees, timings",
        "Reconciliation with the chains",
        "Balances of every ledger account",
        "Merchant statements",
    ):
        assert label in page
    assert ".csv" not in page.split('id="zone-reports"')[1].split("</section>")[0]
