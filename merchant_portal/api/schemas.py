"""The JSON shapes of the API, declared once: views parse with them, the OpenAPI document
describes them."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from merchant_portal.api.errors import ApiError
from merchant_portal.api.schema import Field, Response, Schema, check_text
from pos.catalog import MAX_NAME_CHARS, MAX_QUANTITY
from pos.states import InvoiceStatus, PaymentMethod

MAX_METADATA_KEYS = 50
MAX_METADATA_KEY_LENGTH = 40
MAX_METADATA_VALUE_LENGTH = 500
MAX_LINES = 100
MAX_ID = 2**63 - 1  # ids are 64-bit: a larger one could never exist (and no driver takes it)


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


LINE_FIELDS = (
    Field(
        "product_id",
        "integer",
        "A product of your catalog (an active one): sold at its name and price now.",
        minimum=1,
        maximum=MAX_ID,
    ),
    Field(
        "name",
        "string",
        "Or a line of no product: its name (with `unit_price_tiyn`).",
        min_length=1,
        max_length=MAX_NAME_CHARS,
    ),
    Field("unit_price_tiyn", "integer", "The free line's unit price in tiyn.", minimum=1),
    Field("quantity", "integer", "How many.", required=True, minimum=1, maximum=MAX_QUANTITY),
)
_LINE_NAMES = {f.name for f in LINE_FIELDS}


def check_lines(value: list[Any], where: str) -> list[dict[str, Any]]:
    """Each line is a product by id, or a free line by name and unit price, with a quantity.

    Only the shape is checked here; whose product it is, is the catalog's rule (the view)."""
    if not 1 <= len(value) <= MAX_LINES:
        raise ApiError(400, "invalid_value", f"{where} takes 1 to {MAX_LINES} lines", where)
    lines: list[dict[str, Any]] = []
    for number, item in enumerate(value):
        at = f"{where}[{number}]"
        if not isinstance(item, dict):
            raise ApiError(400, "invalid_type", f"{at} must be an object", at)
        unknown = sorted(set(item) - _LINE_NAMES)
        if unknown:
            name = check_text(str(unknown[0]), "field name")[:60]
            raise ApiError(400, "unknown_field", f"{at}: unknown field {name!r}", f"{at}.{name}")
        line: dict[str, Any] = {}
        for spec in LINE_FIELDS:
            if spec.name in item:
                line[spec.name] = spec.parse(item[spec.name], f"{at}.{spec.name}")
            elif spec.required:
                where_ = f"{at}.{spec.name}"
                raise ApiError(400, "missing_field", f"{where_} is required", where_)
        free = [name for name in ("name", "unit_price_tiyn") if name in line]
        if "product_id" in line and free:
            raise ApiError(
                400,
                "invalid_value",
                f"{at} takes product_id, or name and unit_price_tiyn; not both",
                f"{at}.{free[0]}",
            )
        if "product_id" not in line and len(free) < 2:
            missing = "product_id" if not free else ({"name", "unit_price_tiyn"} - set(free)).pop()
            raise ApiError(
                400,
                "missing_field",
                f"{at} needs product_id, or name and unit_price_tiyn",
                f"{at}.{missing}",
            )
        lines.append(line)
    return lines


_LINE_ITEM = {
    "type": "object",
    "properties": {f.name: f.json_schema() for f in LINE_FIELDS},
    "required": ["quantity"],
    "additionalProperties": False,
    "oneOf": [{"required": ["product_id"]}, {"required": ["name", "unit_price_tiyn"]}],
}

INVOICE_CREATE = Schema(
    "InvoiceCreate",
    (
        Field(
            "price_tiyn",
            "integer",
            "The price in tiyn, an integer (1 ₸ = 100 tiyn): 150000 is 1,500.00 ₸. Required "
            "without `lines`; with them it may be left out (their total), and if given it must "
            "equal their total.",
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
        Field(
            "lines",
            "array",
            f"What is sold (1 to {MAX_LINES} lines), for the owner's sales per product: each a "
            "`product_id` of your catalog, or a free `name` with its `unit_price_tiyn`, and a "
            f"`quantity` of 1 to {MAX_QUANTITY}. A product of another merchant, or one no "
            "longer sold, is a 400 like an unknown id.",
            extra={"items": _LINE_ITEM, "minItems": 1, "maxItems": MAX_LINES},
            check=check_lines,
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
        Field(
            "lines",
            "array",
            "The lines sold, as they were sold (empty for an invoice made without lines).",
            required=True,
            extra={
                "items": {
                    "type": "object",
                    "properties": {
                        "product_id": {"type": ["integer", "null"]},
                        "name": {"type": "string"},
                        "quantity": {"type": "integer"},
                        "unit_price_tiyn": {"type": "integer"},
                        "total_tiyn": {"type": "integer"},
                    },
                    "required": ["product_id", "name", "quantity", "unit_price_tiyn", "total_tiyn"],
                    "additionalProperties": True,
                }
            },
        ),
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
