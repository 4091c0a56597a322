"""What the operator's Conversions and Balances pages show, apart from Flask (DESIGN §7).

The numbers are those of `cryptocity conversions list --json` and `cryptocity report balances
--json` (the same service functions); this module only shapes them into rows, tables and
form values, so `merchant_portal.reports` stays a thin layer of routes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from flask_babel import gettext
from sqlalchemy import select
from sqlalchemy.orm import Session

from merchant_portal.forms import BIGINT_MAX, MAX_FORM_TIYN, is_whole_number
from merchant_portal.labels import format_kzt
from pos import money
from pos.errors import ValidationError
from pos.models import Merchant
from pos.states import PaymentMethod
from settlement.ledger import conversions
from settlement.ledger.balances import AccountBalance
from settlement.ledger.models import Conversion
from settlement.ledger.reports import Table

# A bank's or exchange's CSV of a month is a few kilobytes; 1 MB is generous and keeps an
# upload from holding a worker (the app's MAX_CONTENT_LENGTH is the same size).
CSV_UPLOAD_MAX_BYTES = 1024 * 1024
CSV_UPLOAD_LIMIT_TEXT = "1 MB"

# The layout exactly as the conversions module documents it (header, then an example line).
CSV_EXAMPLE = (",".join(conversions.CSV_COLUMNS), "btc,5382,250110,EXMO-2026-12-01-0001")

BALANCE_COLUMNS = (
    "code",
    "type",
    "merchant_id",
    "memorandum",
    "balance_tiyn",
    "balance_atomic",
)

# The keys of `conversions.as_dict`, in its order.
_CONVERSION_COLUMNS = (
    "id",
    "method",
    "amount_atomic",
    "proceeds_tiyn",
    "book_value_tiyn",
    "fx_result_tiyn",
    "reference",
    "created_at",
)


@dataclass(frozen=True)
class ClearingRow:
    method: str
    unit: str
    balance_tiyn: int
    balance_atomic: int
    # Weighted-average rate in tiyn per whole coin (1 BTC, 1 KZTE); None when nothing is held.
    rate_tiyn: int | None
    rate_unit: str


def _units_per_coin(method: PaymentMethod, kzte_decimals: int) -> int:
    return money.SAT_PER_BTC if method is PaymentMethod.BTC else 10**kzte_decimals


def clearing_rows(session: Session, kzte_decimals: int) -> list[ClearingRow]:
    """Each clearing account with its weighted-average rate (display only, half-up)."""
    rows = []
    for method in PaymentMethod:
        tiyn, atomic = conversions.clearing_balance(session, method)
        rate = None
        if atomic > 0:
            numerator = tiyn * _units_per_coin(method, kzte_decimals)
            rate = (2 * numerator + atomic) // (2 * atomic)  # integer half-up, no float
        rows.append(
            ClearingRow(
                method.value,
                conversions.UNIT[method],
                tiyn,
                atomic,
                rate,
                "BTC" if method is PaymentMethod.BTC else "KZTE",
            )
        )
    return rows


def parse_conversion_form(form: Mapping[str, str]) -> conversions.ConversionRequest:
    """The record form's fields as a request; `ValidationError` names what is wrong."""
    try:
        method = PaymentMethod(form.get("method", ""))
    except ValueError:
        raise ValidationError(gettext("choose the method: BTC or KZTE"), field="method") from None
    amount_text = form.get("amount_atomic", "").strip()
    if not is_whole_number(amount_text) or int(amount_text) > BIGINT_MAX:
        raise ValidationError(
            gettext(
                "%(text)s is not a whole number of %(unit)s",
                text=repr(amount_text),
                unit=conversions.UNIT[method],
            ),
            field="amount_atomic",
        )
    proceeds_text = form.get("proceeds", "").strip()
    # money.parse_kzt's \d would read '٣' as a digit, and a 5000-digit text crashes int().
    if not proceeds_text.isascii() or len(proceeds_text) > 40:
        raise ValidationError(
            gettext("%(text)s is not an amount in tenge", text=repr(proceeds_text)),
            field="proceeds",
        )
    proceeds_tiyn = money.parse_kzt(proceeds_text)
    if proceeds_tiyn > MAX_FORM_TIYN:
        raise ValidationError(
            gettext("at most %(amount)s ₸ per conversion", amount=format_kzt(MAX_FORM_TIYN)),
            field="proceeds",
        )
    reference = form.get("reference", "").strip()
    if not reference:
        # Required here (optional in the CLI): it is what makes a double-submitted form safe.
        raise ValidationError(
            gettext("the exchange's or bank's reference is required"), field="reference"
        )
    return conversions.ConversionRequest(method, int(amount_text), proceeds_tiyn, reference)


def decode_upload(data: bytes) -> str:
    """The uploaded bytes as text (UTF-8, a spreadsheet's BOM allowed)."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ValidationError("the file is not UTF-8 text (save it as CSV UTF-8)") from None


def conversions_table(rows: Sequence[Conversion]) -> Table:
    """The list as CSV: the columns of `cryptocity conversions list --json`."""
    dicts = [conversions.as_dict(c) for c in rows]
    header = list(_CONVERSION_COLUMNS)
    table: list[Sequence[Any]] = [[_cell(d[k]) for k in header] for d in dicts]
    return header, table


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"  # as JSON spells it
    return value


def balances_table(rows: Sequence[AccountBalance]) -> Table:
    """Every account as CSV: the keys of `cryptocity report balances --json` (blank if absent)."""
    out: list[Sequence[Any]] = []
    for row in rows:
        data = row.as_dict()
        out.append([_cell(data.get(column)) for column in BALANCE_COLUMNS])
    return list(BALANCE_COLUMNS), out


@dataclass(frozen=True)
class BalanceGroup:
    title: str
    merchant_id: int | None
    rows: list[AccountBalance]


def balance_groups(session: Session, rows: Sequence[AccountBalance]) -> list[BalanceGroup]:
    """Zone accounts first, then each merchant's under their name (the service's order)."""
    names: dict[int, str] = {
        merchant_id: name
        for merchant_id, name in session.execute(select(Merchant.id, Merchant.name))
    }
    groups: list[BalanceGroup] = []
    for row in rows:
        if not groups or groups[-1].merchant_id != row.merchant_id:
            title = gettext("Zone") if row.merchant_id is None else names.get(row.merchant_id, "?")
            groups.append(BalanceGroup(title, row.merchant_id, []))
        groups[-1].rows.append(row)
    return groups
