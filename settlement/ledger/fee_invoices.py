"""Monthly fee invoices for `direct` merchants (DESIGN §7).

A `direct` merchant keeps the crypto, so the zone's fee is never netted from a payout: each
sale's allocation debits `merchant:<id>:fees_due`. `issue_month(YYYY-MM)` bills, per merchant,
every fee accrued up to the end of that Asia/Almaty month and not billed before (so a reversal
after a bill lowers the next one, and a month can be issued late without losing anything);
paying it posts Dr zone:bank / Cr merchant:<id>:fees_due. One bill per merchant and month:
issuing a month again changes nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from pos import accounts, business_day, chart, money
from pos.db import utcnow
from pos.i18n import N_
from pos.models import Merchant, SettlementMode
from settlement.ledger.balances import SIGNED_TIYN
from settlement.ledger.errors import LedgerError
from settlement.ledger.models import (
    FeeInvoice,
    FeeInvoiceStatus,
    LedgerEntry,
    LedgerTransaction,
    Side,
    TransactionKind,
)
from settlement.ledger.posting import Leg, Posting, write_posting

_MONTH = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")


class FeeInvoiceError(LedgerError):
    """A fee invoice that cannot be issued or paid as asked."""


def parse_month(text: str) -> tuple[date, date]:
    """'2026-11' -> (first day, first day of the next month)."""
    found = _MONTH.match(text.strip())
    if found is None:
        raise FeeInvoiceError(N_("%(text)s is not a month like 2026-11"), text=repr(text))
    year, month = int(found.group(1)), int(found.group(2))
    first = date(year, month, 1)
    return first, date(year + month // 12, month % 12 + 1, 1)


def accrued_tiyn(session: Session, merchant_id: int, before: datetime) -> int:
    """Fees the merchant's sales put on fees_due before `before` (fee payments left out)."""
    total = session.scalar(
        select(func.sum(SIGNED_TIYN))
        .join(LedgerTransaction, LedgerTransaction.id == LedgerEntry.transaction_id)
        .where(
            LedgerEntry.account == chart.fees_due(merchant_id),
            LedgerEntry.effective_at < before,
            LedgerTransaction.kind != TransactionKind.FEE_PAYMENT,
        )
    )
    return int(total or 0)


def issue_month(
    session: Session, month: str, now: datetime | None = None, merchant_id: int | None = None
) -> list[FeeInvoice]:
    """Bill every `direct` merchant (or only `merchant_id`) for what accrued by the end of
    `month`; the new bills."""
    now = now or utcnow()
    _first, following = parse_month(month)
    end = business_day.day_start(following)
    if end > now:
        raise FeeInvoiceError(N_("%(month)s has not ended yet (in Asia/Almaty)"), month=month)
    created: list[FeeInvoice] = []
    query = select(Merchant).where(Merchant.settlement_mode == SettlementMode.DIRECT)
    if merchant_id is not None:
        query = query.where(Merchant.id == merchant_id)
    merchants = session.scalars(query).all()
    for merchant in merchants:
        if session.scalar(
            select(FeeInvoice.id).where(
                FeeInvoice.merchant_id == merchant.id, FeeInvoice.month == month
            )
        ):
            continue
        billed = session.scalar(
            select(func.sum(FeeInvoice.amount_tiyn)).where(FeeInvoice.merchant_id == merchant.id)
        )
        amount = accrued_tiyn(session, merchant.id, end) - int(billed or 0)
        if amount <= 0:
            continue
        bill = FeeInvoice(merchant_id=merchant.id, month=month, amount_tiyn=amount, issued_at=now)
        session.add(bill)
        created.append(bill)
    session.flush()
    for bill in created:
        accounts.audit(
            session,
            "fee_invoice.issued",
            merchant_id=bill.merchant_id,
            detail={"id": bill.id, "month": month, "amount_tiyn": bill.amount_tiyn},
        )
    return created


def mark_paid(
    session: Session,
    fee_invoice_id: int,
    bank_reference: str,
    user_id: int | None = None,
    merchant_id: int | None = None,
    now: datetime | None = None,
) -> FeeInvoice:
    """Record the merchant's bank transfer: Dr zone:bank / Cr merchant:<id>:fees_due."""
    now = now or utcnow()
    reference = bank_reference.strip()
    if not reference or len(reference) > 100:
        raise FeeInvoiceError(N_("the bank reference is required (at most 100 characters)"))
    bill = session.get(FeeInvoice, fee_invoice_id)
    if bill is None or (merchant_id is not None and bill.merchant_id != merchant_id):
        raise FeeInvoiceError(
            N_("there is no fee invoice %(fee_invoice)s"), fee_invoice=fee_invoice_id
        )
    if bill.status is FeeInvoiceStatus.PAID:
        raise FeeInvoiceError(
            N_("fee invoice %(fee_invoice)s is already paid (%(reference)s)"),
            fee_invoice=bill.id,
            reference=bill.bank_reference,
        )
    txn, _new = write_posting(
        session,
        Posting(
            key=f"fee-invoice:{bill.id}",
            kind=TransactionKind.FEE_PAYMENT,
            legs=[
                Leg(chart.BANK, Side.DEBIT, bill.amount_tiyn),
                Leg(chart.fees_due(bill.merchant_id), Side.CREDIT, bill.amount_tiyn),
            ],
            effective_at=now,
            merchant_id=bill.merchant_id,
            description=f"fee invoice {bill.id} ({bill.month}) paid, bank ref {reference}",
        ),
    )
    bill.status, bill.bank_reference, bill.paid_at = FeeInvoiceStatus.PAID, reference, now
    bill.transaction_id = txn.id
    accounts.audit(
        session,
        "fee_invoice.paid",
        actor_user_id=user_id,
        merchant_id=bill.merchant_id,
        detail={"id": bill.id, "amount_tiyn": bill.amount_tiyn, "reference": reference},
    )
    session.flush()
    return bill


@dataclass(frozen=True)
class FeeInvoiceRow:
    id: int
    merchant_id: int
    merchant_name: str
    month: str
    amount_tiyn: int
    status: str
    issued_at: datetime
    paid_at: datetime | None
    bank_reference: str | None

    def as_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "merchant_id": self.merchant_id,
            "merchant_name": self.merchant_name,
            "month": self.month,
            "amount_tiyn": self.amount_tiyn,
            "amount_kzt": money.format_kzt(self.amount_tiyn).replace("\u202f", ""),
            "status": self.status,
            "issued_at": self.issued_at.isoformat(),
            "paid_at": None if self.paid_at is None else self.paid_at.isoformat(),
            "bank_reference": self.bank_reference,
        }


def list_fee_invoices(session: Session, merchant_id: int | None = None) -> list[FeeInvoiceRow]:
    query = select(FeeInvoice, Merchant.name).join(Merchant, Merchant.id == FeeInvoice.merchant_id)
    if merchant_id is not None:
        query = query.where(FeeInvoice.merchant_id == merchant_id)
    rows = session.execute(query.order_by(FeeInvoice.month.desc(), FeeInvoice.id)).all()
    return [
        FeeInvoiceRow(
            b.id,
            b.merchant_id,
            name,
            b.month,
            b.amount_tiyn,
            b.status.value,
            b.issued_at,
            b.paid_at,
            b.bank_reference,
        )
        for b, name in rows
    ]
