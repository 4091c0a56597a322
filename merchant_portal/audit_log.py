"""The audit log as sentences a person reads: who did what, to which merchant, when.

Each action recorded by `pos.accounts.audit` has one translatable template here
("%(actor)s suspended %(merchant)s: %(reason)s"); its placeholders are the actor, the merchant
and the fields of the row's `detail`. A template never fails on a row: a field a row lacks reads
"?", and an action without a template (a new one) reads "actor: action". Sentences are plain
text (Jinja escapes them), so a merchant name or a reason typed by someone stays inert.

Filters: actor, action, merchant and a date range of business days (Asia/Almaty,
`pos.business_day`); the CSV export takes the same filter.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

from flask_babel import gettext
from flask_babel import lazy_gettext as _l
from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from merchant_portal.forms import is_whole_number, parse_optional_date
from pos import business_day, money
from pos.errors import ValidationError
from pos.models import AuditLog, Merchant, User

PAGE_SIZE = 50
EXPORT_LIMIT = 100_000
CSV_COLUMNS = (
    "at",
    "actor_user_id",
    "actor",
    "action",
    "merchant_id",
    "merchant",
    "sentence",
    "ip",
    "detail",
)

# One template per action; `<action>:reason` is used instead when the row carries a reason.
TEMPLATES: dict[str, Any] = {
    "merchant.created": _l("%(actor)s registered %(merchant)s (%(settlement_mode)s settlement)"),
    "merchant.active": _l("%(actor)s activated %(merchant)s (it was %(from)s)"),
    "merchant.active:reason": _l("%(actor)s activated %(merchant)s (it was %(from)s): %(reason)s"),
    "merchant.suspended": _l("%(actor)s suspended %(merchant)s"),
    "merchant.suspended:reason": _l("%(actor)s suspended %(merchant)s: %(reason)s"),
    "merchant.pending": _l("%(actor)s set %(merchant)s back to pending"),
    "merchant.profile_changed": _l("%(actor)s renamed %(merchant)s from %(from)s to %(to)s"),
    "merchant.btc_xpub_set": _l(
        "%(actor)s set a new Bitcoin account key (%(kind)s) for %(merchant)s"
    ),
    "merchant.solana_wallet_set": _l(
        "%(actor)s set the Solana wallet of %(merchant)s to %(wallet)s"
    ),
    "merchant.shop_domains_set": _l("%(actor)s set the shop domains of %(merchant)s: %(domains)s"),
    "merchant.settlement_mode": _l(
        "%(actor)s changed the settlement of %(merchant)s from %(from)s to %(to)s"
    ),
    "merchant.payout_hold": _l(
        "%(actor)s changed the payout hold of %(merchant)s from %(from)s h to %(to)s h"
    ),
    "merchant.bank_details": _l(
        "%(actor)s set the bank account of %(merchant)s to %(iban)s (%(holder)s)"
    ),
    "merchant.policies_changed": _l("%(actor)s changed the policies of %(merchant)s: %(changes)s"),
    "user.created": _l("%(actor)s created the %(role)s account %(user)s of %(merchant)s"),
    "user.password_changed": _l("%(actor)s changed the password of %(user)s"),
    "user.password_reset": _l("%(actor)s reset the password of %(user)s"),
    "user.enabled": _l("%(actor)s enabled the account %(user)s"),
    "user.disabled": _l("%(actor)s disabled the account %(user)s"),
    "user.2fa_enabled": _l("%(actor)s turned on two-factor sign-in for %(user)s"),
    "user.2fa_disabled": _l("%(actor)s turned off two-factor sign-in for %(user)s"),
    "user.recovery_code_used": _l("%(actor)s signed in with a recovery code (%(remaining)s left)"),
    "auth.login": _l("%(actor)s signed in"),
    "auth.login_failed": _l("A sign-in as %(email)s failed"),
    "auth.2fa_failed": _l("%(actor)s entered a wrong second-factor code"),
    "api_key.created": _l("%(actor)s created the API key %(prefix)s of %(merchant)s"),
    "api_key.revoked": _l("%(actor)s revoked the API key %(prefix)s of %(merchant)s"),
    "webhook.created": _l("%(actor)s added a webhook of %(merchant)s to %(url)s"),
    "webhook.updated": _l("%(actor)s changed the webhook of %(merchant)s to %(url)s"),
    "webhook.deleted": _l("%(actor)s deleted the webhook of %(merchant)s to %(url)s"),
    "webhook.redeliver": _l(
        "%(actor)s asked to deliver webhook delivery #%(delivery_id)s of %(merchant)s again"
    ),
    "invoice.marked": _l(
        "API key #%(api_key_id)s marked invoice %(invoice_id)s of %(merchant)s %(status)s: "
        "%(reason)s"
    ),
    "payout.rebuilt": _l(
        "%(actor)s rebuilt payout #%(id)s of %(merchant)s: %(old_amount_kzt)s ₸ → "
        "%(new_amount_kzt)s ₸"
    ),
    "payout.marked_paid": _l(
        "%(actor)s marked payout #%(payout_id)s of %(merchant)s (%(amount_kzt)s ₸) paid, "
        "bank reference %(reference)s"
    ),
    "fee_invoice.issued": _l(
        "%(actor)s issued fee invoice #%(id)s of %(merchant)s for %(month)s: %(amount_kzt)s ₸"
    ),
    "fee_invoice.paid": _l(
        "%(actor)s marked fee invoice #%(id)s of %(merchant)s (%(amount_kzt)s ₸) paid, "
        "bank reference %(reference)s"
    ),
    "refund.created": _l(
        "%(actor)s created refund #%(refund_id)s of %(merchant)s for invoice %(invoice_id)s"
    ),
    "refund.claimed": _l(
        "The shopper claimed refund #%(refund_id)s of %(merchant)s to %(destination)s"
    ),
    "refund.sent": _l("%(actor)s recorded refund #%(refund_id)s of %(merchant)s as sent: %(txid)s"),
    "refund.cancelled": _l("%(actor)s cancelled refund #%(refund_id)s of %(merchant)s"),
    "conversion.recorded": _l(
        "%(actor)s recorded a conversion of %(amount_atomic)s %(method)s base units for "
        "%(proceeds_kzt)s ₸"
    ),
    "kzte.finality_timeout": _l(
        "A KZTE payment %(signature)s to invoice %(invoice_id)s of %(merchant)s was confirmed "
        "for %(confirmed_for_seconds)s s and never finalized"
    ),
    "rates.alarm_raised": _l("Rate alarm %(alarm)s raised: %(message)s"),
    "rates.alarm_cleared": _l("Rate alarm %(alarm)s cleared"),
}
UNKNOWN_ACTION = _l("%(actor)s: %(action)s")


class _Fields(dict[str, str]):
    """Template fields; one a row lacks reads "?" rather than failing the page."""

    def __missing__(self, key: str) -> str:
        return "?"


def _text(value: Any) -> str:
    if isinstance(value, list | tuple):
        return ", ".join(_text(v) for v in value) or "—"
    if isinstance(value, dict):
        return ", ".join(f"{k} {_text(v)}" for k, v in value.items()) or "—"
    if value is None or value == "":
        return "—"
    return str(value)


def user_label(user: User | None) -> str:
    if user is None:
        return str(gettext("The system"))
    return user.display_name or user.email


@dataclass(frozen=True)
class AuditLine:
    """One row of the log with its sentence."""

    row: AuditLog
    actor: str
    merchant: str
    sentence: str


def sentence(
    row: AuditLog, actor: str, merchant: str, users: Mapping[int, User] | None = None
) -> str:
    """The row as a sentence in the current language."""
    fields = _Fields()
    for key, value in (row.detail or {}).items():
        fields[str(key)] = _text(value)
        if str(key).endswith("_tiyn") and isinstance(value, int):
            fields[str(key).removesuffix("_tiyn") + "_kzt"] = money.format_kzt(value)
    user_id = (row.detail or {}).get("user_id")
    subject = (users or {}).get(user_id) if isinstance(user_id, int) else None
    fields["user"] = user_label(subject) if subject else f"#{user_id}" if user_id else actor
    fields.update(actor=actor, merchant=merchant, action=row.action)
    if row.action == "merchant.policies_changed":
        fields["changes"] = _text(row.detail)
    key = row.action
    if (row.detail or {}).get("reason") and f"{key}:reason" in TEMPLATES:
        key = f"{key}:reason"
    template = TEMPLATES.get(key, UNKNOWN_ACTION)
    return str(template) % fields


@dataclass(frozen=True)
class AuditFilter:
    actor: int | None = None
    action: str = ""
    merchant: int | None = None
    date_from: date | None = None
    date_to: date | None = None

    def args(self) -> dict[str, str]:
        """The filter as query arguments (for the export link and the pager)."""
        values = {
            "actor": str(self.actor) if self.actor is not None else "",
            "action": self.action,
            "merchant": str(self.merchant) if self.merchant is not None else "",
            "from": self.date_from.isoformat() if self.date_from else "",
            "to": self.date_to.isoformat() if self.date_to else "",
        }
        return {k: v for k, v in values.items() if v}


def _optional_id(text: str, field: str, errors: dict[str, str]) -> int | None:
    text = text.strip()
    if not text:
        return None
    if not is_whole_number(text) or int(text) > 2**63 - 1:
        errors[field] = gettext("Choose one from the list.")
        return None
    return int(text)


def parse_filter(args: Mapping[str, str]) -> tuple[AuditFilter, dict[str, str]]:
    """The filter from query arguments, and a message per field that was wrong (that part of
    the filter is then left out)."""
    errors: dict[str, str] = {}
    actor = _optional_id(args.get("actor", ""), "actor", errors)
    merchant = _optional_id(args.get("merchant", ""), "merchant", errors)
    action = args.get("action", "").strip()[:60]
    dates: dict[str, date | None] = {}
    for key in ("from", "to"):
        try:
            dates[key] = parse_optional_date(args.get(key), key)
        except ValidationError as exc:
            errors[key] = str(exc)
            dates[key] = None
    first, last = dates["from"], dates["to"]
    if first and last and first > last:
        errors["from"] = gettext("The start date is after the end date.")
        first = None
    return AuditFilter(actor, action, merchant, first, last), errors


def filtered(flt: AuditFilter) -> Select[AuditLog]:
    query = select(AuditLog)
    if flt.actor is not None:
        query = query.where(AuditLog.actor_user_id == flt.actor)
    if flt.action:
        query = query.where(AuditLog.action == flt.action)
    if flt.merchant is not None:
        query = query.where(AuditLog.merchant_id == flt.merchant)
    if flt.date_from:
        query = query.where(AuditLog.at >= business_day.day_start(flt.date_from))
    if flt.date_to:
        query = query.where(AuditLog.at < business_day.day_range(flt.date_to, flt.date_to)[1])
    return query.order_by(AuditLog.id.desc())


def count(session: Session, flt: AuditFilter) -> int:
    return int(session.scalar(select(func.count()).select_from(filtered(flt).subquery())) or 0)


def lines(session: Session, rows: list[AuditLog]) -> list[AuditLine]:
    """Sentences for `rows`, with the users and merchants they name loaded in two queries."""
    user_ids = {r.actor_user_id for r in rows if r.actor_user_id is not None}
    user_ids |= {
        r.detail["user_id"] for r in rows if isinstance((r.detail or {}).get("user_id"), int)
    }
    users = (
        {u.id: u for u in session.scalars(select(User).where(User.id.in_(user_ids)))}
        if user_ids
        else {}
    )
    merchant_ids = {r.merchant_id for r in rows if r.merchant_id is not None}
    names = (
        {
            mid: name
            for mid, name in session.execute(
                select(Merchant.id, Merchant.name).where(Merchant.id.in_(merchant_ids))
            )
        }
        if merchant_ids
        else {}
    )
    out = []
    for row in rows:
        actor = user_label(users.get(row.actor_user_id) if row.actor_user_id else None)
        merchant = (
            names.get(row.merchant_id, f"#{row.merchant_id}")
            if row.merchant_id is not None
            else gettext("the zone")
        )
        out.append(AuditLine(row, actor, merchant, sentence(row, actor, merchant, users)))
    return out


def page(session: Session, flt: AuditFilter, number: int) -> list[AuditLine]:
    rows = list(session.scalars(filtered(flt).offset((number - 1) * PAGE_SIZE).limit(PAGE_SIZE)))
    return lines(session, rows)


def recent(session: Session, limit: int = 15) -> list[AuditLine]:
    return lines(session, list(session.scalars(filtered(AuditFilter()).limit(limit))))


def csv_rows(session: Session, flt: AuditFilter) -> list[list[Any]]:
    rows = list(session.scalars(filtered(flt).limit(EXPORT_LIMIT)))
    return [
        [
            business_day.local_time(line.row.at).isoformat(),
            line.row.actor_user_id or "",
            line.actor,
            line.row.action,
            line.row.merchant_id or "",
            line.merchant if line.row.merchant_id is not None else "",
            line.sentence,
            line.row.ip or "",
            json.dumps(line.row.detail or {}, ensure_ascii=False, sort_keys=True),
        ]
        for line in lines(session, rows)
    ]


def filter_choices(session: Session) -> dict[str, list[tuple[str, str]]]:
    """(value, label) options of the filter's lists: the people and merchants the log names,
    every action that has a template or was recorded."""
    actor_ids = [
        i for i in session.scalars(select(AuditLog.actor_user_id).distinct()) if i is not None
    ]
    actors = (
        sorted(
            (
                (str(u.id), user_label(u))
                for u in session.scalars(select(User).where(User.id.in_(actor_ids)))
            ),
            key=lambda pair: pair[1].lower(),
        )
        if actor_ids
        else []
    )
    merchants = [
        (str(mid), name)
        for mid, name in session.execute(select(Merchant.id, Merchant.name).order_by(Merchant.name))
    ]
    recorded = set(session.scalars(select(AuditLog.action).distinct()))
    known = {key.split(":")[0] for key in TEMPLATES}
    actions = [(a, a) for a in sorted(recorded | known)]
    return {"actors": actors, "merchants": merchants, "actions": actions}
