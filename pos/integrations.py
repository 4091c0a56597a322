"""Integrations: API keys, idempotency keys, API invoice extras, webhooks and their deliveries.

Models and services (take a Session, never commit). API keys are shown once and stored as a
SHA-256 of a 256-bit random token: a fast hash is enough for a secret nobody can guess, unlike a
password. Webhook secrets must be kept in clear to sign with them. The invoice events table is
the webhook outbox: `settlement.webhooks` turns new events into delivery rows.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import ForeignKey, Index, String, UniqueConstraint, delete, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from pos import network_policy
from pos.accounts import audit
from pos.db import Base, enum_column, utcnow
from pos.errors import NotFoundError, PosError, ValidationError
from pos.i18n import N_
from pos.settings import Settings
from pos.states import EventType


class Scope(StrEnum):
    INVOICES_READ = "invoices:read"
    INVOICES_WRITE = "invoices:write"
    REPORTS_READ = "reports:read"


class DeliveryStatus(StrEnum):
    PENDING = "pending"  # due at next_attempt_at
    DELIVERED = "delivered"  # the receiver answered 2xx
    FAILED = "failed"  # retried for the whole window without a 2xx; redeliver by hand


# What a webhook may subscribe to (payment_seen is chatter; pages use the live stream for it;
# payment_rejected is for the owner's timeline, not part of the API yet).
WEBHOOK_EVENT_TYPES: tuple[str, ...] = tuple(
    e.value for e in EventType if e not in (EventType.PAYMENT_SEEN, EventType.PAYMENT_REJECTED)
)
TOKEN_PREFIX = "cck"
DEFAULT_RATE_LIMIT_PER_MINUTE = 120
MAX_RATE_LIMIT_PER_MINUTE = 10_000
IDEMPOTENCY_KEEP = timedelta(hours=24)
DELIVERY_RETRY_WINDOW = timedelta(hours=25)  # retries last at least 24 h
_TOKEN = re.compile(r"^cck_([0-9a-f]{12})_([A-Za-z0-9_-]{20,100})$")


class ApiAuthError(PosError):
    """A request's API key is missing, unknown or revoked (HTTP 401); `code` says which."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(primary_key=True)
    merchant_id: Mapped[int] = mapped_column(ForeignKey("merchants.id"), index=True)
    name: Mapped[str] = mapped_column(String(80))
    prefix: Mapped[str] = mapped_column(String(16), unique=True)  # public part, finds the row
    secret_sha256: Mapped[str] = mapped_column(String(64))
    scopes: Mapped[str] = mapped_column(String(100))  # space-separated Scope values
    rate_limit_per_minute: Mapped[int] = mapped_column(default=DEFAULT_RATE_LIMIT_PER_MINUTE)
    created_by_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(default=None)
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)

    @property
    def scope_set(self) -> frozenset[str]:
        return frozenset(self.scopes.split())


class IdempotencyKey(Base):
    """The stored answer to an API create, replayed for a retry with the same key and body."""

    __tablename__ = "idempotency_keys"
    __table_args__ = (UniqueConstraint("merchant_id", "key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    merchant_id: Mapped[int] = mapped_column(ForeignKey("merchants.id"))
    key: Mapped[str] = mapped_column(String(255))
    request_sha256: Mapped[str] = mapped_column(String(64))
    response_status: Mapped[int]
    response_body: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class ApiInvoiceExtra(Base):
    """What an API client attached to an invoice beyond the core fields."""

    __tablename__ = "api_invoice_extras"

    invoice_id: Mapped[str] = mapped_column(ForeignKey("invoices.id"), primary_key=True)
    api_key_id: Mapped[int | None] = mapped_column(ForeignKey("api_keys.id"))
    meta: Mapped[dict[str, Any]] = mapped_column(default=dict)
    redirect_url: Mapped[str | None] = mapped_column(String(500))


class Webhook(Base):
    __tablename__ = "webhooks"

    id: Mapped[int] = mapped_column(primary_key=True)
    merchant_id: Mapped[int] = mapped_column(ForeignKey("merchants.id"), index=True)
    url: Mapped[str] = mapped_column(String(500))
    secret: Mapped[str] = mapped_column(String(100))
    event_types: Mapped[str] = mapped_column(String(400))  # space-separated event types
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Events older than this are never sent (set on creation and on re-activation).
    deliver_from: Mapped[datetime] = mapped_column(default=utcnow)
    # The outbox scan has looked at every event up to here (minus a grace for late commits).
    scanned_until: Mapped[datetime] = mapped_column(default=utcnow)

    @property
    def event_type_list(self) -> list[str]:
        return self.event_types.split()


class WebhookDelivery(Base):
    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        UniqueConstraint("webhook_id", "event_id"),
        Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    webhook_id: Mapped[int] = mapped_column(ForeignKey("webhooks.id"))
    event_id: Mapped[str] = mapped_column(ForeignKey("invoice_events.id"), index=True)
    status: Mapped[DeliveryStatus] = mapped_column(
        enum_column(DeliveryStatus, "delivery_status"), default=DeliveryStatus.PENDING
    )
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    retry_until: Mapped[datetime]  # retries stop after this; a manual redeliver extends it
    last_status_code: Mapped[int | None] = mapped_column(default=None)
    last_error: Mapped[str | None] = mapped_column(String(500), default=None)
    last_attempt_at: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(default=None)


# --- API keys -------------------------------------------------------------------------------


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def parse_scopes(raw: list[str] | tuple[str, ...]) -> str:
    """Validate scope names; return them space-separated in a stable order."""
    allowed = {s.value for s in Scope}
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise ValidationError(N_("unknown scope %(scope)s"), field="scopes", scope=repr(unknown[0]))
    if not raw:
        raise ValidationError(N_("choose at least one scope"), field="scopes")
    return " ".join(s.value for s in Scope if s.value in raw)


def create_api_key(
    session: Session,
    merchant_id: int,
    name: str,
    scopes: list[str] | tuple[str, ...],
    rate_limit_per_minute: int = DEFAULT_RATE_LIMIT_PER_MINUTE,
    actor_user_id: int | None = None,
) -> tuple[ApiKey, str]:
    """Create a key; return it with its token, which is never shown again."""
    name = name.strip()
    if not 1 <= len(name) <= 80:
        raise ValidationError(N_("the key name needs 1 to 80 characters"), field="name")
    if not 1 <= rate_limit_per_minute <= MAX_RATE_LIMIT_PER_MINUTE:
        raise ValidationError(
            N_("the rate limit must be 1 to %(most)d requests a minute"),
            field="rate_limit_per_minute",
            most=MAX_RATE_LIMIT_PER_MINUTE,
        )
    prefix = secrets.token_hex(6)
    token = f"{TOKEN_PREFIX}_{prefix}_{secrets.token_urlsafe(32)}"
    key = ApiKey(
        merchant_id=merchant_id,
        name=name,
        prefix=prefix,
        secret_sha256=_sha256(token),
        scopes=parse_scopes(scopes),
        rate_limit_per_minute=rate_limit_per_minute,
        created_by_user_id=actor_user_id,
        created_at=utcnow(),
    )
    session.add(key)
    session.flush()
    audit(
        session,
        "api_key.created",
        actor_user_id=actor_user_id,
        merchant_id=merchant_id,
        detail={"api_key_id": key.id, "prefix": prefix, "scopes": key.scopes},
    )
    return key, token


def get_api_key(session: Session, key_id: int, merchant_id: int) -> ApiKey:
    key = session.get(ApiKey, key_id)
    if key is None or key.merchant_id != merchant_id:
        raise NotFoundError(N_("no such API key"))
    return key


def revoke_api_key(session: Session, key: ApiKey, actor_user_id: int | None) -> None:
    """Revoke at once; a revoked key answers 401 from the next request on."""
    if key.revoked_at is None:
        key.revoked_at = utcnow()
        audit(
            session,
            "api_key.revoked",
            actor_user_id=actor_user_id,
            merchant_id=key.merchant_id,
            detail={"api_key_id": key.id, "prefix": key.prefix},
        )


def authenticate_bearer(session: Session, header: str | None) -> ApiKey:
    """The live key named by an `Authorization: Bearer <token>` header, else `ApiAuthError`."""
    if not header:
        raise ApiAuthError(
            N_("send your API key as 'Authorization: Bearer <key>'"), "missing_api_key"
        )
    scheme, _, token = header.strip().partition(" ")
    match = _TOKEN.match(token.strip())
    if scheme.lower() != "bearer" or match is None:
        raise ApiAuthError(
            N_("the Authorization header is not a CryptoCity API key"), "invalid_api_key"
        )
    key = session.scalar(select(ApiKey).where(ApiKey.prefix == match.group(1)))
    if key is None or not hmac.compare_digest(key.secret_sha256, _sha256(token.strip())):
        raise ApiAuthError(N_("this API key is not valid"), "invalid_api_key")
    if key.revoked_at is not None:
        raise ApiAuthError(N_("this API key was revoked"), "api_key_revoked")
    return key


# --- idempotency ----------------------------------------------------------------------------


def find_idempotent(session: Session, merchant_id: int, key: str) -> IdempotencyKey | None:
    return session.scalar(
        select(IdempotencyKey).where(
            IdempotencyKey.merchant_id == merchant_id, IdempotencyKey.key == key
        )
    )


def purge_idempotency_keys(session: Session, now: datetime | None = None) -> int:
    """Forget keys older than the retention (kept at least 24 h)."""
    cutoff = (now or utcnow()) - IDEMPOTENCY_KEEP
    result = session.execute(delete(IdempotencyKey).where(IdempotencyKey.created_at < cutoff))
    return int(result.rowcount)  # type: ignore[attr-defined]


# --- webhooks -------------------------------------------------------------------------------


def check_webhook_url(settings: Settings, url: str) -> str:
    """The URL to store, if the server may send to it (pos.network_policy: https in production,
    a public internet address in every mode); else `AddressRefusedError` on the url field."""
    return network_policy.check_webhook_url(
        url,
        require_https=not settings.is_demo,
        allow_private_networks=settings.webhook_allow_private_networks,
    )


def parse_event_types(raw: list[str] | tuple[str, ...]) -> str:
    unknown = sorted(set(raw) - set(WEBHOOK_EVENT_TYPES))
    if unknown:
        raise ValidationError(
            N_("unknown event type %(event_type)s"),
            field="event_types",
            event_type=repr(unknown[0]),
        )
    if not raw:
        raise ValidationError(N_("choose at least one event type"), field="event_types")
    return " ".join(t for t in WEBHOOK_EVENT_TYPES if t in raw)


def create_webhook(
    session: Session,
    settings: Settings,
    merchant_id: int,
    url: str,
    event_types: list[str] | tuple[str, ...],
    actor_user_id: int | None = None,
) -> Webhook:
    """Register an endpoint with a fresh signing secret; it receives events from now on."""
    now = utcnow()
    webhook = Webhook(
        merchant_id=merchant_id,
        url=check_webhook_url(settings, url),
        secret=f"whsec_{secrets.token_urlsafe(32)}",
        event_types=parse_event_types(event_types),
        active=True,
        created_at=now,
        deliver_from=now,
        scanned_until=now,
    )
    session.add(webhook)
    session.flush()
    audit(
        session,
        "webhook.created",
        actor_user_id=actor_user_id,
        merchant_id=merchant_id,
        detail={"webhook_id": webhook.id, "url": webhook.url},
    )
    return webhook


def get_webhook(session: Session, webhook_id: int, merchant_id: int) -> Webhook:
    webhook = session.get(Webhook, webhook_id)
    if webhook is None or webhook.merchant_id != merchant_id:
        raise NotFoundError(N_("no such webhook"))
    return webhook


def update_webhook(
    session: Session,
    settings: Settings,
    webhook: Webhook,
    url: str,
    event_types: list[str] | tuple[str, ...],
    active: bool,
    actor_user_id: int | None = None,
) -> None:
    webhook.url = check_webhook_url(settings, url)
    webhook.event_types = parse_event_types(event_types)
    if active and not webhook.active:
        # Events that happened while it was off are not sent after the fact.
        webhook.deliver_from = webhook.scanned_until = utcnow()
    webhook.active = active
    audit(
        session,
        "webhook.updated",
        actor_user_id=actor_user_id,
        merchant_id=webhook.merchant_id,
        detail={"webhook_id": webhook.id, "url": webhook.url, "active": active},
    )


def delete_webhook(session: Session, webhook: Webhook, actor_user_id: int | None = None) -> None:
    session.execute(delete(WebhookDelivery).where(WebhookDelivery.webhook_id == webhook.id))
    audit(
        session,
        "webhook.deleted",
        actor_user_id=actor_user_id,
        merchant_id=webhook.merchant_id,
        detail={"webhook_id": webhook.id, "url": webhook.url},
    )
    session.delete(webhook)


def get_delivery(session: Session, delivery_id: int, merchant_id: int) -> WebhookDelivery:
    delivery = session.get(WebhookDelivery, delivery_id)
    webhook = None if delivery is None else session.get(Webhook, delivery.webhook_id)
    if delivery is None or webhook is None or webhook.merchant_id != merchant_id:
        raise NotFoundError(N_("no such delivery"))
    return delivery


def redeliver(
    session: Session,
    delivery: WebhookDelivery,
    merchant_id: int,
    actor_user_id: int | None,
    ip: str | None = None,
) -> None:
    """Queue a delivery again now (same event id), with a fresh retry window."""
    now = utcnow()
    delivery.status = DeliveryStatus.PENDING
    delivery.next_attempt_at = now
    delivery.retry_until = now + DELIVERY_RETRY_WINDOW
    audit(
        session,
        "webhook.redeliver",
        actor_user_id=actor_user_id,
        merchant_id=merchant_id,
        ip=ip,
        detail={"delivery_id": delivery.id, "event_id": delivery.event_id},
    )


def sign_payload(secret: str, timestamp: int, body: bytes) -> str:
    """The `CryptoCity-Signature` header value: HMAC-SHA256 over b"<timestamp>.<body>"."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify_signature(
    secret: str, header: str, body: bytes, now: int, tolerance_seconds: int = 300
) -> bool:
    """What a receiver does (the README shows the same in a few lines)."""
    fields = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    try:
        timestamp = int(fields["t"])
    except (KeyError, ValueError):
        return False
    if abs(now - timestamp) > tolerance_seconds:
        return False
    expected = sign_payload(secret, timestamp, body).split("v1=", 1)[1]
    return hmac.compare_digest(expected, fields.get("v1", ""))
