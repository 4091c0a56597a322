"""Payouts: daily settlement batches per merchant, marked paid by an operator, bank export.

`run_payouts(date)` gathers, per merchant, every payable entry of settlements and reversals
effective before the end of that day (UTC) and not yet in a payout, and creates one pending
payout with those lines when their sum is positive (a negative sum after a reversal waits for
later income). Re-running a date changes nothing (unique merchant + date; an entry is batched
once). Marking paid needs the bank's reference and posts Dr merchant payable / Cr zone:bank.
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from pos import accounts, money
from pos.db import utcnow
from pos.models import Merchant
from settlement.ledger.errors import PayoutError, PayoutNotFoundError
from settlement.ledger.models import (
    LedgerEntry,
    LedgerTransaction,
    Payout,
    PayoutLine,
    PayoutStatus,
    Side,
    TransactionKind,
)
from settlement.ledger.posting import Posting, payout_legs, write_posting


def day_start(day: date) -> datetime:
    """Business days are UTC days (one rule for payouts and reports)."""
    return datetime.combine(day, time.min, tzinfo=UTC)


def run_payouts(session: Session, business_date: date) -> list[Payout]:
    """Create the pending payouts for `business_date`; returns the ones created now."""
    end = day_start(business_date + timedelta(days=1))
    rows = session.execute(
        select(
            LedgerEntry.id,
            LedgerEntry.side,
            LedgerEntry.amount_tiyn,
            LedgerEntry.account,
            LedgerTransaction.merchant_id,
        )
        .join(LedgerTransaction, LedgerTransaction.id == LedgerEntry.transaction_id)
        .outerjoin(PayoutLine, PayoutLine.entry_id == LedgerEntry.id)
        .where(
            PayoutLine.id.is_(None),
            LedgerTransaction.kind.in_([TransactionKind.SETTLEMENT, TransactionKind.REVERSAL]),
            LedgerEntry.account.like("merchant:%:payable"),
            LedgerEntry.effective_at < end,
        )
        .order_by(LedgerEntry.id)
    ).all()
    by_merchant: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for entry_id, side, amount, account, merchant_id in rows:
        if merchant_id is None or account != f"merchant:{merchant_id}:payable":
            continue
        signed = amount if side is Side.CREDIT else -amount
        by_merchant[merchant_id].append((entry_id, signed))
    already = set(
        session.scalars(select(Payout.merchant_id).where(Payout.business_date == business_date))
    )
    created: list[Payout] = []
    for merchant_id, lines in sorted(by_merchant.items()):
        total = sum(signed for _entry, signed in lines)
        if merchant_id in already or total <= 0:
            continue
        payout = Payout(
            merchant_id=merchant_id,
            business_date=business_date,
            amount_tiyn=total,
            status=PayoutStatus.PENDING,
            created_at=utcnow(),
        )
        payout.lines = [PayoutLine(entry_id=e, amount_tiyn=s) for e, s in lines]
        session.add(payout)
        created.append(payout)
    session.flush()
    return created


def get_payout(session: Session, payout_id: int) -> Payout:
    payout = session.get(Payout, payout_id)
    if payout is None:
        raise PayoutNotFoundError(f"there is no payout {payout_id}")
    return payout


def mark_paid(
    session: Session,
    payout_id: int,
    bank_reference: str,
    user_id: int | None = None,
    ip: str | None = None,
    now: datetime | None = None,
) -> Payout:
    """Record the bank transfer of a pending payout and post it; the caller commits."""
    now = now or utcnow()
    reference = bank_reference.strip()
    if not reference or len(reference) > 100:
        raise PayoutError("the bank reference is required (at most 100 characters)")
    payout = get_payout(session, payout_id)
    if payout.status is PayoutStatus.PAID:
        raise PayoutError(
            f"payout {payout.id} is already paid (bank reference {payout.bank_reference})"
        )
    txn, _new = write_posting(
        session,
        Posting(
            key=f"payout:{payout.id}",
            kind=TransactionKind.PAYOUT,
            legs=payout_legs(payout.merchant_id, payout.amount_tiyn),
            effective_at=now,
            merchant_id=payout.merchant_id,
            description=f"payout {payout.id} for {payout.business_date}, bank ref {reference}",
        ),
    )
    payout.status, payout.bank_reference = PayoutStatus.PAID, reference
    payout.paid_at, payout.paid_by_user_id, payout.transaction_id = now, user_id, txn.id
    accounts.audit(
        session,
        "payout.marked_paid",
        actor_user_id=user_id,
        merchant_id=payout.merchant_id,
        ip=ip,
        detail={"payout_id": payout.id, "amount_tiyn": payout.amount_tiyn, "reference": reference},
    )
    session.flush()
    return payout


@dataclass(frozen=True)
class PayoutRow:
    id: int
    merchant_id: int
    merchant_name: str
    business_date: date
    amount_tiyn: int
    status: str
    bank_reference: str | None
    paid_at: datetime | None

    def as_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "merchant_id": self.merchant_id,
            "merchant_name": self.merchant_name,
            "business_date": self.business_date.isoformat(),
            "amount_tiyn": self.amount_tiyn,
            "amount_kzt": money.format_kzt(self.amount_tiyn).replace("\u202f", ""),
            "status": self.status,
            "bank_reference": self.bank_reference,
            "paid_at": None if self.paid_at is None else self.paid_at.isoformat(),
        }


def list_payouts(
    session: Session,
    status: PayoutStatus | None = None,
    business_date: date | None = None,
    merchant_id: int | None = None,
    limit: int = 1000,
) -> list[PayoutRow]:
    """Payouts, newest business day first, filtered as asked."""
    query = select(Payout, Merchant.name).join(Merchant, Merchant.id == Payout.merchant_id)
    if status is not None:
        query = query.where(Payout.status == status)
    if business_date is not None:
        query = query.where(Payout.business_date == business_date)
    if merchant_id is not None:
        query = query.where(Payout.merchant_id == merchant_id)
    query = query.order_by(Payout.business_date.desc(), Payout.merchant_id).limit(limit)
    return [
        PayoutRow(
            p.id,
            p.merchant_id,
            name,
            p.business_date,
            p.amount_tiyn,
            p.status.value,
            p.bank_reference,
            p.paid_at,
        )
        for p, name in session.execute(query).all()
    ]


BANK_EXPORT_COLUMNS = (
    "payout_id",
    "merchant_id",
    "merchant_name",
    "business_date",
    "amount_kzt",
    "amount_tiyn",
    "payment_reference",
    "status",
)


def bank_export_csv(rows: list[PayoutRow]) -> str:
    """The CSV a bank's bulk transfer upload takes: one line per payout, amounts in KZT."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(BANK_EXPORT_COLUMNS)
    for row in rows:
        whole, frac = divmod(row.amount_tiyn, money.TIYN_PER_KZT)
        writer.writerow(
            [
                row.id,
                row.merchant_id,
                row.merchant_name,
                row.business_date.isoformat(),
                f"{whole}.{frac:02d}",
                row.amount_tiyn,
                f"CCPAY-{row.id}-{row.business_date:%Y%m%d}",
                row.status,
            ]
        )
    return buffer.getvalue()
