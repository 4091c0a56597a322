"""The JSON shapes of the API, declared once: views parse with them, the OpenAPI document
describes them."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from merchant_portal.api.errors import ApiError
from merchant_portal.api.schema import Field, Response, Schema, check_text
from pos.states import InvoiceStatus, PaymentMethod

MAX_METADATA_KEYS = 50
MAX_METADATA_KEY_LENGTH = 40
MAX_METADATA_VALUE_LENGTH = 500


def check_redirect_url(value: str, where: str) -> str:
    """Where the checkout page may send the shopper back: an absolute http(s) URL."""
    try:
        parts = urlsplit(value)
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise ApiError(400, "invalid_value", f"{where} must be an http(s) URL", where)
    return value


def check_metadata(value: dict[str, Any], where: str) -> dict[str, str]:
    """A flat object of short strings: the client's own references, returned as given."""
    if len(value) > MAX_METADATA_KEYS:
        raise ApiError(400, "invalid_value", f"{where} allows {MAX_METADATA_KEYS} keys", where)
    for key, item in value.items():
        check_text(key, f"{where} key")
        if not 1 <= len(key) <= MAX_METADATA_KEY_LENGTH:
            raise ApiError(
                400,
                "invalid_value",
                f"{where} keys need 1 to {MAX_METADATA_KEY_LENGTH} characters",
                where,
            )
        if not isinstance(item, str):
            raise ApiError(400, "invalid_type", f"{where} values must be strings", where)
        check_text(item, f"{where} value")
        if len(item) > MAX_METADATA_VALUE_LENGTH:
            raise ApiError(
                400,
                "invalid_value",
                f"{where} values allow {MAX_METADATA_VALUE_LENGTH} characters",
                where,
            )
    return dict(value)


INVOICE_CREATE = Schema(
    "InvoiceCreate",
    (
        Field(
            "price_tiyn",
            "integer",
            "The price in tiyn, an integer (1 ₸ = 100 tiyn): 150000 is 1,500.00 ₸.",
            required=True,
            minimum=1,
        ),
        Field(
            "method", "string", "How the shopper pays.", required=True, enum=tuple(PaymentMethod)
        ),
        Field("order_id", "string", "Your order reference.", nullable=True, max_length=64),
        Field("description", "string", "Shown to the shopper.", max_length=200),
        Field(
            "metadata",
            "object",
            f"Your own string values (≤ {MAX_METADATA_KEYS} keys of ≤ {MAX_METADATA_KEY_LENGTH} "
            f"characters, values ≤ {MAX_METADATA_VALUE_LENGTH}); returned and sent in webhooks.",
            extra={
                "additionalProperties": {"type": "string", "maxLength": MAX_METADATA_VALUE_LENGTH},
                "maxProperties": MAX_METADATA_KEYS,
            },
            check=check_metadata,
        ),
        Field(
            "redirect_url",
            "string",
            "Where the checkout's “Return to the shop” link leads once paid: an https URL on "
            "one of the merchant's shop domains (or a subdomain), else 422.",
            nullable=True,
            max_length=500,
            format="uri",
            check=check_redirect_url,
        ),
    ),
    "A new invoice. Unknown fields are refused.",
)

INVOICE_MARK = Schema(
    "InvoiceMark",
    (
        Field("status", "string", "The new status.", required=True, enum=("settled", "invalid")),
        Field(
            "reason", "string", "Why (kept in the audit log).", True, min_length=1, max_length=500
        ),
    ),
)

_NULLABLE_TEXT = ("order_id", "btc_address", "kzte_recipient", "kzte_mint", "kzte_reference")
_QUOTE = {
    "pair": {"type": "string", "description": "BTC/KZT, KZTE/KZT, or a leg's: BTC/USDT, USD/KZT."},
    "rate": {"type": "string", "description": "Quote currency per 1 unit of the base (decimal)."},
    "source": {"type": "string", "description": "e.g. exmo:BTC_KZT, binance:BTCUSDT, nbk:USD."},
    "as_of": {"type": "string", "format": "date-time"},
}
_LEG = {"type": "object", "properties": _QUOTE, "additionalProperties": True}
RATE_COMPONENTS = Field(
    "rate_components",
    "object",
    "What the locked rate was made of: the fresh sources (`legs`) with their values and times "
    "(a cross of an exchange's BTC/USDT and the official USD/KZT has both as its own `legs`), "
    "their spread (or KZTE's depeg) in basis points, and the sources left out with the reason. "
    "Empty for invoices made before it was recorded.",
    required=True,
    extra={
        "properties": {
            **_QUOTE,
            "legs": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {**_QUOTE, "legs": {"type": "array", "items": _LEG}},
                    "additionalProperties": True,
                },
            },
            "spread_bp": {"type": "integer"},
            "depeg_bp": {"type": "integer"},
            "ignored": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"source": {"type": "string"}, "reason": {"type": "string"}},
                },
            },
        },
        "additionalProperties": True,
    },
)
INVOICE = Schema(
    "Invoice",
    (
        Field("id", "string", required=True),
        Field("merchant_id", "integer", required=True),
        Field("status", "string", required=True, enum=tuple(InvoiceStatus)),
        Field(
            "flags",
            "array",
            "paid_partial, paid_over, paid_late, marked",
            required=True,
            extra={"items": {"type": "string"}},
        ),
        Field("method", "string", required=True, enum=tuple(PaymentMethod)),
        Field("price_tiyn", "integer", required=True),
        Field("amount_due_atomic", "integer", "Satoshi (BTC) or base units (KZTE).", True),
        Field("amount_paid_atomic", "integer", required=True),
        Field("rate_kzt", "string", "KZT per 1 BTC or KZTE, locked at creation.", True),
        Field("rate_source", "string", "Where the locked rate came from.", True),
        Field("rate_as_of", "string", "When the locked rate was quoted.", True, format="date-time"),
        RATE_COMPONENTS,
        Field("payment_uri", "string", "BIP21 or Solana Pay URI for the QR.", True),
        Field("checkout_url", "string", "The hosted checkout page.", True),
        Field("description", "string", required=True),
        *(Field(name, "string", required=True, nullable=True) for name in _NULLABLE_TEXT),
        Field("metadata", "object", required=True, extra={"additionalProperties": True}),
        Field("redirect_url", "string", required=True, nullable=True),
        Field("created_at", "string", required=True, format="date-time"),
        Field("expires_at", "string", required=True, format="date-time"),
        Field("version", "integer", "Bumped by every event.", True),
    ),
    "An invoice. More fields may be added; ignore the ones you do not know.",
    closed=False,
)

INVOICE_LIST = Schema(
    "InvoiceList",
    (
        Field(
            "data",
            "array",
            required=True,
            extra={"items": {"$ref": "#/components/schemas/Invoice"}},
        ),
        Field("next_cursor", "string", "Pass as `cursor` for the next page.", True, True),
    ),
    closed=False,
)

MERCHANT = Schema(
    "Merchant",
    (
        Field("id", "integer", required=True),
        Field("name", "string", required=True),
        Field("status", "string", required=True, enum=("pending", "active", "suspended")),
        Field(
            "methods",
            "array",
            "Methods ready to invoice.",
            True,
            extra={"items": {"type": "string"}},
        ),
        Field("confirmations_required", "integer", required=True),
        Field("expiry_minutes", "integer", required=True),
        Field("tolerance_bp", "integer", required=True),
        Field("created_at", "string", required=True, format="date-time"),
    ),
    closed=False,
)

ERROR = Schema(
    "Error",
    (
        Field(
            "error",
            "object",
            required=True,
            extra={
                "properties": {
                    "code": {"type": "string", "description": "Stable; branch on it."},
                    "message": {"type": "string", "description": "For people."},
                    "field": {"type": "string", "description": "The field to fix, if any."},
                },
                "required": ["code", "message"],
            },
        ),
    ),
    closed=False,
)

ERROR_RESPONSES: dict[int, Response] = {
    400: Response("The request is malformed or breaks a rule.", ERROR),
    401: Response("No key, an unknown key or a revoked key.", ERROR),
    403: Response("The key lacks the scope, or the merchant is not active.", ERROR),
    404: Response("No such object for this merchant.", ERROR),
    409: Response("Conflicts with the current state or an Idempotency-Key.", ERROR),
    413: Response("The body is larger than 1 MiB.", ERROR),
    422: Response("Well-formed but refused, e.g. a redirect_url off the shop's domains.", ERROR),
    429: Response("Rate limited; retry after `Retry-After` seconds.", ERROR, ("Retry-After",)),
    503: Response("A dependency is briefly down; retry.", ERROR),
}
