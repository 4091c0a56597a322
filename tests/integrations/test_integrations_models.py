"""The integrations schema and services without Flask: migration, keys, idempotency, signing."""

from __future__ import annotations

import hashlib
import hmac
from datetime import timedelta
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from pos import integrations
from pos.db import Base, utcnow
from pos.errors import ValidationError
from pos.integrations import ApiAuthError, IdempotencyKey, sign_payload, verify_signature
from pos.settings import Settings

import factories

OUR_TABLES = {
    "api_keys",
    "idempotency_keys",
    "api_invoice_extras",
    "webhooks",
    "webhook_deliveries",
}


def _table_of(diff: Any) -> str:
    if isinstance(diff, list):  # modify_* diffs come grouped per column
        return str(diff[0][2])
    item = diff[1]
    if isinstance(item, str | type(None)):  # add_column / remove_column: (op, schema, table, col)
        return str(diff[2])
    for attr in ("table", "parent"):
        owner = getattr(item, attr, None)
        if owner is not None and hasattr(owner, "name"):
            return str(owner.name)
    return str(item.name)


def test_migration_matches_the_models(engine: Engine) -> None:
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        diff = [d for d in compare_metadata(context, Base.metadata) if _table_of(d) in OUR_TABLES]
    assert diff == []


def test_keys_are_stored_hashed_and_parse_strictly(session: Session, settings: Settings) -> None:
    merchant = factories.merchant(session, settings)
    key, token = integrations.create_api_key(session, merchant.id, "till", ["invoices:read"])
    assert key.secret_sha256 == hashlib.sha256(token.encode()).hexdigest()
    assert integrations.authenticate_bearer(session, f"Bearer {token}").id == key.id
    assert integrations.authenticate_bearer(session, f"bearer   {token}  ").id == key.id
    for header in ("", "Bearer", f"Token {token}", "Bearer cck_zz_zz", f"Bearer {token}x"):
        with pytest.raises(ApiAuthError):
            integrations.authenticate_bearer(session, header)
    with pytest.raises(ValidationError):
        integrations.create_api_key(session, merchant.id, "t", ["admin"])
    with pytest.raises(ValidationError):
        integrations.create_api_key(session, merchant.id, "t", ["invoices:read"], 0)


def test_idempotency_keys_are_kept_a_day_then_purged(session: Session, settings: Settings) -> None:
    merchant = factories.merchant(session, settings)
    now = utcnow()
    for key, age in (("fresh", timedelta(hours=23)), ("old", timedelta(hours=25))):
        session.add(
            IdempotencyKey(
                merchant_id=merchant.id,
                key=key,
                request_sha256="0" * 64,
                response_status=201,
                response_body={},
                created_at=now - age,
            )
        )
    session.flush()
    assert integrations.purge_idempotency_keys(session, now) == 1
    assert session.scalars(select(IdempotencyKey.key)).all() == ["fresh"]


def test_signature_is_hmac_sha256_over_timestamp_dot_body() -> None:
    body = b'{"id":"e1"}'
    header = sign_payload("whsec_s", 1_700_000_000, body)
    expected = hmac.new(b"whsec_s", b"1700000000." + body, hashlib.sha256).hexdigest()
    assert header == f"t=1700000000,v1={expected}"
    assert verify_signature("whsec_s", header, body, now=1_700_000_100)
    assert not verify_signature("whsec_s", header, body, now=1_700_000_000 + 301)
    assert not verify_signature("whsec_s", "garbage", body, now=1_700_000_000)
    assert not verify_signature("whsec_s", "t=x,v1=00", body, now=1_700_000_000)


def test_webhook_urls_and_event_types_are_checked(
    session: Session, settings: Settings, fake_dns: dict[str, list[str]]
) -> None:
    fake_dns["x.test"] = ["93.184.215.14"]  # a public address (a mock of DNS: none here)
    merchant = factories.merchant(session, settings)
    for url in ("ftp://x.test/", "http://", "http://u:p@x.test/", "http://[::1", "x" * 600):
        with pytest.raises(ValidationError):
            integrations.create_webhook(session, settings, merchant.id, url, ["invoice.created"])
    with pytest.raises(ValidationError):
        integrations.create_webhook(session, settings, merchant.id, "http://x.test/", ["nope"])
    production = settings.with_overrides(mode=settings.mode.PRODUCTION)
    with pytest.raises(ValidationError, match="https"):
        integrations.check_webhook_url(production, "http://x.test/")
    assert integrations.check_webhook_url(production, "https://x.test/h") == "https://x.test/h"
    assert "invoice.payment_seen" not in integrations.WEBHOOK_EVENT_TYPES
