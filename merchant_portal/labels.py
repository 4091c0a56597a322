"""Words and numbers for people: translated labels of stored identifiers, and amounts in the
reader's language.

Pages never print a raw identifier such as `settled` or `paid_over`: `{{ value | label('flag') }}`
looks it up in one table per kind of value (the identifier stays in CSS classes, CSV files and
the API). An identifier missing from its table is shown as it is, and the portal tests fail on it.

Amounts are integers in tiyn and are formatted exactly (through `Decimal`, never `float`) with
the locale's symbols: `2,500.00` in English, `2 500,00` in Russian and Kazakh (a no-break space
groups the thousands, so an amount never wraps).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any, Protocol

from babel.numbers import format_decimal
from flask import Flask, has_request_context
from flask_babel import LazyString, get_locale, gettext
from flask_babel import lazy_gettext as _l
from flask_babel import lazy_pgettext as _lp
from jinja2 import pass_context

from pos import money
from pos.models import MerchantStatus, Role, SettlementMode
from pos.states import InvoiceStatus
from settlement.ledger.models import RefundStatus

# (kind, identifier) -> label; the kind is also the gettext context, because one English word
# ("paid", "pending") is a different Russian or Kazakh word for an invoice, a payout or a bill.
LABELS: Mapping[str, Mapping[str, LazyString]] = {
    "flag": {
        "paid_partial": _lp("flag", "partly paid"),
        "paid_over": _lp("flag", "overpaid"),
        "paid_late": _lp("flag", "paid late"),
        "marked": _lp("flag", "marked by hand"),
    },
    "merchant": {
        "pending": _lp("merchant", "awaiting approval"),
        "active": _lp("merchant", "active"),
        "suspended": _lp("merchant", "suspended"),
    },
    "role": {
        "owner": _lp("role", "owner"),
        "cashier": _lp("role", "cashier"),
        "operator": _lp("role", "operator"),
    },
    "settlement": {
        "tenge": _lp("settlement", "tenge"),
        "direct": _lp("settlement", "direct"),
    },
    "payout": {
        "pending": _lp("payout", "pending"),
        "paid": _lp("payout", "paid"),
    },
    "fee_invoice": {
        "issued": _lp("fee invoice", "issued"),
        "paid": _lp("fee invoice", "paid"),
    },
    "refund": {
        "claimable": _lp("refund", "waiting for the shopper"),
        "claimed": _lp("refund", "address received"),
        "sent": _lp("refund", "sent"),
        "confirmed": _lp("refund", "refunded"),
        "cancelled": _lp("refund", "cancelled"),
    },
    "delivery": {
        "pending": _lp("delivery", "pending"),
        "delivered": _lp("delivery", "delivered"),
        "failed": _lp("delivery", "failed"),
    },
    "payment": {
        "seen": _lp("payment", "seen"),
        "confirmed": _lp("payment", "confirmed"),
        "final": _lp("payment", "final"),
        "replaced": _lp("payment", "replaced"),
        "reorged": _lp("payment", "dropped in a reorg"),
        "missing": _lp("payment", "missing"),
    },
    "account_type": {
        "asset": _lp("account type", "asset"),
        "liability": _lp("account type", "liability"),
        "income": _lp("account type", "income"),
        "expense": _lp("account type", "expense"),
    },
    "ledger_kind": {
        "opening": _lp("ledger", "opening"),
        "closing": _lp("ledger", "closing"),
        "receipt": _lp("ledger", "receipt"),
        "settlement": _lp("ledger", "sale"),
        "owed_back": _lp("ledger", "owed back"),
        "reversal": _lp("ledger", "reversal"),
        "payout": _lp("ledger", "payout"),
        "conversion": _lp("ledger", "conversion"),
        "refund": _lp("ledger", "refund"),
        "fee_payment": _lp("ledger", "fee payment"),
    },
    "check": {
        "confirmed": _lp("node check", "confirmed"),
        "contradicted": _lp("node check", "contradicted"),
        "unknown": _lp("node check", "unknown"),
        "not checked": _lp("node check", "not checked"),
    },
    "rate": {
        "ok": _lp("rate", "ok"),
        "stale": _lp("rate", "stale"),
        "unavailable": _lp("rate", "unavailable"),
        "disagreeing": _lp("rate", "disagreeing"),
        "off-peg": _lp("rate", "off peg"),
        "failing": _lp("rate", "failing"),
        "rate-limited": _lp("rate", "rate-limited"),
        "waiting": _lp("rate", "waiting"),
    },
    "event": {
        "invoice.created": _lp("event", "created"),
        "invoice.processing": _lp("event", "paid, confirming"),
        "invoice.settled": _lp("event", "paid"),
        "invoice.expired": _lp("event", "expired"),
        "invoice.invalid": _lp("event", "invalid"),
        "invoice.reopened": _lp("event", "reopened"),
        "invoice.paid_partial": _lp("event", "partly paid"),
        "invoice.paid_over": _lp("event", "overpaid"),
        "invoice.paid_late": _lp("event", "paid late"),
        "invoice.marked": _lp("event", "marked by hand"),
        "invoice.payment_seen": _lp("event", "payment seen"),
    },
}


# Why a transfer was not accepted (pos.invoices.REJECTION_REASONS), as the owner reads it on
# the timeline and the shopper on the checkout.
REJECTION_LABELS: Mapping[str, LazyString] = {
    "wrong_mint": _l("paid in another token, not KZTE"),
    "wrong_recipient": _l("paid to another account, not this shop's"),
    "wrong_memo": _l("the memo names another invoice"),
    "too_late": _l("it arrived after the invoice had closed"),
}


def rejection_text(event_data: Mapping[str, object]) -> str:
    """'payment not accepted: <reason>' for the data of a payment_rejected event."""
    code = str(event_data.get("reason", ""))
    reason = REJECTION_LABELS.get(code)
    return str(gettext("payment not accepted: %(reason)s", reason=reason if reason else code))


# A ledger transaction's description is stored in English ("invoice X: allocation reversed") for
# the CSV files and the API; a page says it in the reader's language from what the transaction
# is instead: (kind, the booking's fact up to its first ':') -> sentence. Payouts and fee
# payments take their number, day or month and bank reference from their own rows.
LEDGER_DESCRIPTIONS: Mapping[tuple[str, str], LazyString] = {
    ("receipt", "receipt"): _lp("ledger description", "invoice %(invoice)s: payment received"),
    ("settlement", "allocation"): _lp("ledger description", "invoice %(invoice)s: sale"),
    ("owed_back", "owed_back"): _lp(
        "ledger description", "invoice %(invoice)s: owed back to the shopper"
    ),
    ("reversal", "receipt"): _lp(
        "ledger description", "invoice %(invoice)s: payment received, reversed"
    ),
    ("reversal", "allocation"): _lp("ledger description", "invoice %(invoice)s: sale reversed"),
    ("reversal", "owed_back"): _lp(
        "ledger description", "invoice %(invoice)s: owed back, reversed"
    ),
    ("owed_back", "return"): _lp("ledger description", "invoice %(invoice)s: sale returned"),
    ("reversal", "return"): _lp("ledger description", "invoice %(invoice)s: sale return cancelled"),
    ("payout", ""): _lp(
        "ledger description", "payout %(number)s for %(day)s, bank reference %(reference)s"
    ),
    ("fee_payment", ""): _lp(
        "ledger description",
        "fee invoice %(number)s (%(month)s) paid, bank reference %(reference)s",
    ),
}


class LedgerLine(Protocol):
    """What a statement line carries (settlement.ledger.statements.StatementLine)."""

    @property
    def kind(self) -> str: ...
    @property
    def fact(self) -> str | None: ...
    @property
    def invoice_id(self) -> str | None: ...
    @property
    def description(self) -> str: ...
    @property
    def detail(self) -> Mapping[str, str]: ...


def ledger_description(line: LedgerLine) -> str:
    """The line's description in the reader's language; the stored English text when there is
    no sentence for it (a transaction booked before facts were kept, or one of a new kind)."""
    found = LEDGER_DESCRIPTIONS.get((line.kind, (line.fact or "").split(":", 1)[0]))
    if found is None:
        return line.description
    try:
        return str(found) % {"invoice": line.invoice_id or "", **line.detail}
    except KeyError:  # a payout's row is missing: the stored text still says what it was
        return line.description


def label(value: object, kind: str) -> str:
    """The translated label of identifier `value` of `kind` (an enum or its text)."""
    text = str(getattr(value, "value", value))
    if kind == "invoice":
        from merchant_portal.i18n import status_label

        return status_label(text)
    found = LABELS.get(kind, {}).get(text)
    return text if found is None else str(found)


# Enums whose members reach people inside messages (a domain error's parameters).
ENUM_KINDS: Mapping[type, str] = {
    InvoiceStatus: "invoice",
    MerchantStatus: "merchant",
    Role: "role",
    SettlementMode: "settlement",
    RefundStatus: "refund",
}


def enum_label(value: object) -> object:
    """`value` labelled when it is a member of a labelled enum; anything else unchanged."""
    for enum_type, kind in ENUM_KINDS.items():
        if isinstance(value, enum_type):
            return label(value, kind)
    return value


def labels(values: object, kind: str, separator: str = ", ") -> str:
    """Several identifiers (an invoice's flags), each labelled, joined."""
    if not values:
        return ""
    return separator.join(label(value, kind) for value in values)  # type: ignore[attr-defined]


def _locale_name() -> str:
    locale = get_locale() if has_request_context() else None
    return "en" if locale is None else str(locale)


def format_kzt(tiyn: int) -> str:
    """Tiyn as tenge with two decimals in the reader's language: 250000 -> '2,500.00' (en),
    '2 500,00' (ru, kk; a no-break space). Exact: the integer is scaled as a Decimal."""
    amount = Decimal(int(tiyn)).scaleb(-2)
    return str(format_decimal(amount, format="#,##0.00", locale=_locale_name()))


def format_whole_kzt(tiyn: int) -> str:
    """Whole tenge, grouped (chart axes): 250099 -> '2,500' / '2 500'. Truncates the tiyn."""
    whole = abs(int(tiyn)) // money.TIYN_PER_KZT * (-1 if tiyn < 0 else 1)
    return str(format_decimal(whole, format="#,##0", locale=_locale_name()))


def format_number(value: int | Decimal) -> str:
    """A count or a quantity, grouped in the reader's language; decimals kept as they are."""
    if isinstance(value, Decimal):
        exponent = value.as_tuple().exponent
        places = -exponent if isinstance(exponent, int) and exponent < 0 else 0
        pattern = "#,##0" + ("." + "0" * places if places else "")
        return str(format_decimal(value, format=pattern, locale=_locale_name()))
    return str(format_decimal(int(value), format="#,##0", locale=_locale_name()))


def _per_request(function: Callable[..., str]) -> Callable[..., str]:
    """`function` as a Jinja filter evaluated at render time. Jinja folds a filter applied to
    a constant (`{{ 'opening' | label('ledger_kind') }}`) once, when the template compiles, so
    the first request's language would stick for the process; a context filter is never folded.
    """

    @pass_context
    def filter_(_context: object, *args: Any, **kwargs: Any) -> str:
        return function(*args, **kwargs)

    return filter_


def init_app(app: Flask) -> None:
    app.add_template_filter(_per_request(label), "label")
    app.add_template_filter(_per_request(labels), "labels")
    app.add_template_filter(_per_request(ledger_description), "ledger_description")
    app.add_template_filter(_per_request(format_kzt), "tenge")
    app.add_template_filter(_per_request(format_number), "number")
    app.add_template_global(rejection_text, "rejection_text")
    app.add_template_global(format_kzt, "format_kzt")
    app.add_template_global(format_kzt, "kzt")
