"""Payouts: daily settlement batches per merchant, marked paid by an operator, bank export.

`run_payouts(date)` gathers, per `tenge` merchant, every payable entry of settlements and
reversals effective before the end of that (Asia/Almaty) day, past the merchant's hold period
and not yet in a payout, and creates one pending
payout with those lines when their sum is positive. Re-running a date changes nothing new
(unique merchant + date; an entry is batched once). Marking paid needs the bank's reference and
posts Dr merchant payable / Cr zone:bank.

Reversals (an invoice double-spent, or reopened by a reorg) pair with the settlement they undo:
- settlement not yet paid out: the two cancel. They are batched together or not at all, so the
  reversal never eats into the merchant's later, legitimate income; a *pending* payout whose
  settlement was reversed after it was built is blocked (`mark_paid` refuses, naming the
  invoices) until `run_payouts` rebuilds it without the pair (`rebuild_pending`).
- settlement already paid out: the merchant owes the money back. The reversal's debit stays
  unbatched and is deducted from their next payouts; until then it shows as a negative payable
  (`negative_payables`) in the payout listing, never silently.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from pos import accounts, business_day, chart, csv_safe, money
from pos.db import utcnow
from pos.i18n import N_
from pos.models import Merchant
from settlement.ledger.balances import SIGNED_TIYN
from settlement.ledger.errors import PayoutError, PayoutNotFoundError
from settlement.ledger.models import (
    LedgerEntry,
    Payout,
    PayoutLine,
    PayoutStatus,
    TransactionKind,
)
from settlement.ledger.payout_sources import (
    Partners,
    deductions,
    reversed_invoices,
    source_lines,
    standing,
    unbatched,
)
from settlement.ledger.posting import Posting, payout_legs, write_posting


def day_start(day: date) -> datetime:
    """Business days are Asia/Almaty days (pos.business_day, one rule for every report)."""
    return business_day.day_start(day)


@dataclass(frozen=True)
class RebuiltPayout:
    """A pending payout after `rebuild_pending` took out what no longer stands."""

    payout_id: int
    merchant_id: int
    business_date: date
    old_amount_tiyn: int
    new_amount_tiyn: int  # 0: nothing positive was left and the payout was withdrawn
    invoice_ids: tuple[str, ...]  # whose reversed settlements (or their reversals) left it

    @property
    def withdrawn(self) -> bool:
        return self.new_amount_tiyn == 0

    def as_dict(self) -> dict[str, object]:
        return {
            "id": self.payout_id,
            "merchant_id": self.merchant_id,
            "business_date": self.business_date.isoformat(),
            "old_amount_tiyn": self.old_amount_tiyn,
            "new_amount_tiyn": self.new_amount_tiyn,
            "withdrawn": self.withdrawn,
            "invoices": list(self.invoice_ids),
        }


def rebuild_pending(session: Session, user_id: int | None = None) -> list[RebuiltPayout]:
    """Take every entry that no longer stands out of the pending payouts; the caller commits.

    The entries taken out become unbatched again (a cancelling pair then nets to zero in a
    later batch). A payout left with nothing positive is withdrawn: its remaining lines go
    back to the unbatched pool. Each change is audited.
    """
    pending = list(session.scalars(select(Payout.id).where(Payout.status == PayoutStatus.PENDING)))
    stale = reversed_invoices(session, pending)
    rebuilt: list[RebuiltPayout] = []
    for payout_id, invoice_ids in sorted(stale.items()):
        payout = get_payout(session, payout_id)
        lines = source_lines(session, PayoutLine.payout_id == payout_id)
        partners = Partners(session, lines)
        gone = {ln.entry_id for ln in lines if not standing(ln, partners.of(ln), payout_id, set())}
        old_amount = payout.amount_tiyn
        kept = [line for line in payout.lines if line.entry_id not in gone]
        new_amount = sum(line.amount_tiyn for line in kept)
        for line in payout.lines:
            if line.entry_id in gone or new_amount <= 0:
                session.delete(line)
        session.flush()
        if new_amount > 0:
            payout.amount_tiyn = new_amount
            session.expire(payout, ["lines"])
        else:
            session.delete(payout)
        rebuilt.append(
            RebuiltPayout(
                payout_id,
                payout.merchant_id,
                payout.business_date,
                old_amount,
                max(new_amount, 0),
                tuple(invoice_ids),
            )
        )
        accounts.audit(
            session,
            "payout.rebuilt",
            actor_user_id=user_id,
            merchant_id=payout.merchant_id,
            detail=rebuilt[-1].as_dict(),
        )
    session.flush()
    return rebuilt


def run_payouts(
    session: Session,
    business_date: date,
    now: datetime | None = None,
    merchant_id: int | None = None,
) -> list[Payout]:
    """Rebuild stale pending payouts, then create `business_date`'s; returns the new ones.

    Only sales older than their merchant's hold period (`payout_hold_hours`) at `now` are paid
    out; what money goes back (a reversal) is always netted at once. `direct` merchants have no
    payable, so they never get a payout. `merchant_id`: only that merchant's payout (the demo
    seed pays its own shop's past days, never another merchant's).
    """
    now = now or utcnow()
    rebuild_pending(session)
    end = day_start(business_date + timedelta(days=1))
    holds = {
        mid: hours
        for mid, hours in session.execute(select(Merchant.id, Merchant.payout_hold_hours))
    }
    by_merchant = unbatched(
        session,
        end,
        eligible=lambda ln: (
            ln.signed_tiyn < 0
            or ln.effective_at <= now - timedelta(hours=holds.get(ln.merchant_id, 24))
        ),
    )
    already = set(
        session.scalars(select(Payout.merchant_id).where(Payout.business_date == business_date))
    )
    created: list[Payout] = []
    for owner, lines in sorted(by_merchant.items()):
        total = sum(ln.signed_tiyn for ln in lines)
        if (merchant_id is not None and owner != merchant_id) or owner in already or total <= 0:
            continue  # a negative sum is shown by `negative_payables`, never paid
        if total > payable_balance(session, owner):
            continue  # never pay a payable below zero (cannot happen: each line is paid once)
        payout = Payout(
            merchant_id=owner,
            business_date=business_date,
            amount_tiyn=total,
            status=PayoutStatus.PENDING,
            created_at=now,  # the moment the batch is built for (a past one when seeding)
        )
        payout.lines = [
            PayoutLine(entry_id=ln.entry_id, amount_tiyn=ln.signed_tiyn) for ln in lines
        ]
        session.add(payout)
        created.append(payout)
    session.flush()
    return created


@dataclass(frozen=True)
class NegativePayable:
    """A merchant who owes the zone: reversals of sales already paid out exceed new income."""

    merchant_id: int
    merchant_name: str
    amount_tiyn: int  # < 0; deducted from the merchant's next payouts
    invoice_ids: tuple[str, ...]  # the reversed invoices behind it

    def as_dict(self) -> dict[str, object]:
        return {
            "merchant_id": self.merchant_id,
            "merchant_name": self.merchant_name,
            "amount_tiyn": self.amount_tiyn,
            "amount_kzt": money.format_kzt(self.amount_tiyn).replace("\u202f", ""),
            "invoices": list(self.invoice_ids),
        }


def negative_payables(session: Session, merchant_id: int | None = None) -> list[NegativePayable]:
    """Merchants whose unbatched payable (what their next payout starts from) is negative."""
    rows = []
    for owner, lines in sorted(unbatched(session, None).items()):
        total = sum(ln.signed_tiyn for ln in lines)
        if total >= 0 or (merchant_id is not None and owner != merchant_id):
            continue
        merchant = session.get(Merchant, owner)
        reversals = {
            ln.invoice_id
            for ln in lines
            if ln.kind is TransactionKind.REVERSAL and ln.invoice_id is not None
        }
        name = merchant.name if merchant else str(owner)
        rows.append(NegativePayable(owner, name, total, tuple(sorted(reversals))))
    return rows


def payable_balance(session: Session, merchant_id: int) -> int:
    """What the zone owes the merchant now (credits - debits of their payable), in tiyn."""
    total = session.scalar(
        select(func.sum(SIGNED_TIYN)).where(LedgerEntry.account == chart.payable(merchant_id))
    )
    return -int(total or 0)  # SIGNED_TIYN is debit-positive; a payable is a credit


def get_payout(session: Session, payout_id: int) -> Payout:
    payout = session.get(Payout, payout_id)
    if payout is None:
        raise PayoutNotFoundError(N_("there is no payout %(payout)s"), payout=payout_id)
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
        raise PayoutError(N_("the bank reference is required (at most 100 characters)"))
    payout = get_payout(session, payout_id)
    if payout.status is PayoutStatus.PAID:
        raise PayoutError(
            N_("payout %(payout)s is already paid (bank reference %(reference)s)"),
            payout=payout.id,
            reference=payout.bank_reference,
        )
    reversed_ = reversed_invoices(session, [payout.id]).get(payout.id)
    if reversed_:
        raise PayoutError(
            N_(
                "payout %(payout)s is blocked: invoice(s) %(invoices)s were reversed "
                "(double spent or reopened) after it was built; rebuild it with "
                "`cryptocity payouts run --date %(date)s` and check the new amount"
            ),
            payout=payout.id,
            invoices=", ".join(reversed_),
            date=payout.business_date,
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
    # A pending payout holding settlements reversed since it was built: blocked until rebuilt.
    reversed_invoices: tuple[str, ...] = ()
    # Reversals of sales paid out before, recovered from this payout (shown, never silent).
    deducted_tiyn: int = 0
    deducted_invoices: tuple[str, ...] = ()
    # Where the bank transfers it: the merchant's account as it is now (None: not given yet).
    beneficiary_name: str | None = None
    beneficiary_iban: str | None = None
    beneficiary_bic: str | None = None

    @property
    def blocked(self) -> bool:
        return bool(self.reversed_invoices)

    @property
    def missing_bank_details(self) -> bool:
        """No account to transfer to: left out of the bank export until the owner sets one."""
        return not (self.beneficiary_name and self.beneficiary_iban and self.beneficiary_bic)

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
            "blocked": self.blocked,
            "reversed_invoices": list(self.reversed_invoices),
            "deducted_tiyn": self.deducted_tiyn,
            "deducted_invoices": list(self.deducted_invoices),
            "missing_bank_details": self.missing_bank_details,
        }


def list_payouts(
    session: Session,
    status: PayoutStatus | None = None,
    business_date: date | None = None,
    merchant_id: int | None = None,
    limit: int = 1000,
) -> list[PayoutRow]:
    """Payouts, newest business day first, filtered as asked."""
    query = select(
        Payout, Merchant.name, Merchant.bank_holder, Merchant.bank_iban, Merchant.bank_bic
    ).join(Merchant, Merchant.id == Payout.merchant_id)
    if status is not None:
        query = query.where(Payout.status == status)
    if business_date is not None:
        query = query.where(Payout.business_date == business_date)
    if merchant_id is not None:
        query = query.where(Payout.merchant_id == merchant_id)
    query = query.order_by(Payout.business_date.desc(), Payout.merchant_id).limit(limit)
    found = session.execute(query).all()
    blocked = reversed_invoices(
        session, [p.id for p, *_ in found if p.status is PayoutStatus.PENDING]
    )
    deducted = deductions(session, [p.id for p, *_ in found])
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
            tuple(blocked.get(p.id, ())),
            deducted.get(p.id, (0, []))[0],
            tuple(deducted.get(p.id, (0, []))[1]),
            holder,
            iban,
            bic,
        )
        for p, name, holder, iban, bic in found
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
    "beneficiary_name",
    "beneficiary_iban",
    "beneficiary_bic",
)


def bank_export_csv(rows: list[PayoutRow]) -> str:
    """The CSV a bank's bulk transfer upload takes: one line per payout, amounts in KZT.

    Blocked payouts are left out (a bank must never transfer a double-spent amount), and so are
    payouts of merchants without bank details (no account to send them to).
    """
    lines: list[list[object]] = []
    for row in rows:
        if row.blocked or row.missing_bank_details:
            continue
        whole, frac = divmod(row.amount_tiyn, money.TIYN_PER_KZT)
        lines.append(
            [
                row.id,
                row.merchant_id,
                row.merchant_name,
                row.business_date.isoformat(),
                f"{whole}.{frac:02d}",
                row.amount_tiyn,
                f"CCPAY-{row.id}-{row.business_date:%Y%m%d}",
                row.status,
                row.beneficiary_name,
                row.beneficiary_iban,
                row.beneficiary_bic,
            ]
        )
    # Names and bank details are typed by merchants: the one writer neutralises formulas.
    return csv_safe.csv_text(BANK_EXPORT_COLUMNS, lines)
