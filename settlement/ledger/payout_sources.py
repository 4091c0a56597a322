"""What a payout may hold: the payable entries of settlements, sale returns and reversals, paired.

A sale return (an OWED_BACK posting from the payable: the merchant gave a sale back) counts as
a settlement of negative value: netted at once, and paired with its reversal if it is cancelled.

A reversal pairs with the settlement it undoes. The pair cancels unless one half was already
paid out — then the other half is owed (the money back, or the money still due) — and a
cancelling pair is batched only together, so neither half moves money on its own. Used by
`settlement.ledger.payouts` to build, rebuild and block payouts.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, select
from sqlalchemy.orm import Session

from settlement.ledger.models import (
    LedgerEntry,
    LedgerTransaction,
    Payout,
    PayoutLine,
    PayoutStatus,
    Side,
    TransactionKind,
)


@dataclass(frozen=True)
class SourceLine:
    """A payable entry of a settlement or reversal, and the payout holding it (if any)."""

    entry_id: int
    signed_tiyn: int  # credits to the payable add, debits (reversals) subtract
    merchant_id: int
    transaction_id: int
    kind: TransactionKind
    reverses_id: int | None
    invoice_id: str | None
    payout_id: int | None
    payout_status: PayoutStatus | None
    effective_at: datetime


# Postings that move a merchant's payable for a sale: its settlement, a return of it (owed
# back from the payable), and the reversal of either.
PAYABLE_KINDS = (TransactionKind.SETTLEMENT, TransactionKind.OWED_BACK, TransactionKind.REVERSAL)
_IN_CHUNK = 500  # ids per IN (…): well inside every database's parameter limit


def source_lines(session: Session, *where: ColumnElement[bool]) -> list[SourceLine]:
    """Payable entries of settlements and reversals matching `where`, oldest first."""
    rows = session.execute(
        select(
            LedgerEntry.id,
            LedgerEntry.side,
            LedgerEntry.amount_tiyn,
            LedgerEntry.account,
            LedgerTransaction.merchant_id,
            LedgerTransaction.id,
            LedgerTransaction.kind,
            LedgerTransaction.reverses_id,
            LedgerTransaction.invoice_id,
            PayoutLine.payout_id,
            Payout.status,
            LedgerEntry.effective_at,
        )
        .join(LedgerTransaction, LedgerTransaction.id == LedgerEntry.transaction_id)
        .outerjoin(PayoutLine, PayoutLine.entry_id == LedgerEntry.id)
        .outerjoin(Payout, Payout.id == PayoutLine.payout_id)
        .where(
            LedgerTransaction.kind.in_(PAYABLE_KINDS),
            LedgerEntry.account.like("merchant:%:payable"),
            *where,
        )
        .order_by(LedgerEntry.id)
    ).all()
    lines = []
    for row in rows:
        (entry_id, side, amount, account, merchant_id, txn_id, kind, reverses_id, invoice_id,
         payout_id, status, effective_at) = row  # fmt: skip
        if merchant_id is None or account != f"merchant:{merchant_id}:payable":
            continue
        signed = amount if side is Side.CREDIT else -amount
        lines.append(
            SourceLine(
                entry_id,
                signed,
                merchant_id,
                txn_id,
                kind,
                reverses_id,
                invoice_id,
                payout_id,
                status,
                effective_at,
            )
        )
    return lines


def _chunks(ids: Iterable[int]) -> list[list[int]]:
    unique = sorted(set(ids))
    return [unique[i : i + _IN_CHUNK] for i in range(0, len(unique), _IN_CHUNK)]


class Partners:
    """Each line's partner: the reversal of a settlement, the settlement a reversal undoes."""

    def __init__(self, session: Session, lines: Sequence[SourceLine]) -> None:
        self._reversal_of: dict[int, SourceLine] = {}  # settlement transaction id -> reversal line
        self._settlement: dict[int, SourceLine] = {}  # settlement transaction id -> its line
        settled = [ln.transaction_id for ln in lines if ln.kind is not TransactionKind.REVERSAL]
        reversed_ = [ln.reverses_id for ln in lines if ln.reverses_id is not None]
        for chunk in _chunks(settled):
            for ln in source_lines(session, LedgerTransaction.reverses_id.in_(chunk)):
                if ln.reverses_id is not None:
                    self._reversal_of[ln.reverses_id] = ln
        for chunk in _chunks(reversed_):
            for ln in source_lines(session, LedgerTransaction.id.in_(chunk)):
                self._settlement[ln.transaction_id] = ln

    def of(self, line: SourceLine) -> SourceLine | None:
        if line.kind is not TransactionKind.REVERSAL:
            return self._reversal_of.get(line.transaction_id)
        return None if line.reverses_id is None else self._settlement.get(line.reverses_id)


def standing(
    line: SourceLine, partner: SourceLine | None, batch: int | None, new: set[int]
) -> bool:
    """Does `line` belong in payout `batch` (None: the batch of entry ids `new` being built)?

    A settlement never reversed always does. Otherwise the pair cancels unless one half was
    paid out already (then the other half is owed: money back, or money still due); a
    cancelling pair is batched only together, so neither half moves money on its own.
    """
    if partner is None:
        return True
    if partner.payout_status is PayoutStatus.PAID:
        return True
    if batch is None:
        return partner.payout_id is None and partner.entry_id in new
    return partner.payout_id == batch


def unbatched(
    session: Session,
    until: datetime | None,
    eligible: Callable[[SourceLine], bool] | None = None,
) -> dict[int, list[SourceLine]]:
    """Per merchant, the standing entries no payout holds yet, effective before `until` (and
    `eligible`: past the hold period). A cancelling pair stands only if both halves qualify."""
    where: list[ColumnElement[bool]] = [PayoutLine.id.is_(None)]
    if until is not None:
        where.append(LedgerEntry.effective_at < until)
    candidates = source_lines(session, *where)
    if eligible is not None:
        candidates = [ln for ln in candidates if eligible(ln)]
    partners = Partners(session, candidates)
    ids = {ln.entry_id for ln in candidates}
    by_merchant: dict[int, list[SourceLine]] = defaultdict(list)
    for ln in candidates:
        if standing(ln, partners.of(ln), None, ids):
            by_merchant[ln.merchant_id].append(ln)
    return by_merchant


def reversed_invoices(session: Session, payout_ids: Sequence[int]) -> dict[int, list[str]]:
    """Pending payouts that hold an entry no longer standing -> the invoices concerned."""
    found: dict[int, set[str]] = defaultdict(set)
    for chunk in _chunks(payout_ids):
        lines = source_lines(
            session, PayoutLine.payout_id.in_(chunk), Payout.status == PayoutStatus.PENDING
        )
        partners = Partners(session, lines)
        for ln in lines:
            if ln.payout_id is not None and not standing(ln, partners.of(ln), ln.payout_id, set()):
                found[ln.payout_id].add(ln.invoice_id or f"transaction {ln.transaction_id}")
    return {payout_id: sorted(invoices) for payout_id, invoices in found.items()}


def deductions(session: Session, payout_ids: Sequence[int]) -> dict[int, tuple[int, list[str]]]:
    """Payouts that recover reversals of sales paid out before -> (tiyn deducted, invoices).

    A cancelling pair inside one payout nets to zero and is no deduction.
    """
    found: dict[int, tuple[int, set[str]]] = {}
    for chunk in _chunks(payout_ids):
        lines = source_lines(session, PayoutLine.payout_id.in_(chunk))
        partners = Partners(session, lines)
        for ln in lines:
            partner = partners.of(ln)
            if (
                ln.payout_id is None
                or ln.kind is not TransactionKind.REVERSAL
                or partner is None
                or partner.payout_status is not PayoutStatus.PAID
                or partner.payout_id == ln.payout_id
            ):
                continue
            tiyn, invoices = found.get(ln.payout_id, (0, set()))
            invoices.add(ln.invoice_id or f"transaction {ln.transaction_id}")
            found[ln.payout_id] = (tiyn - ln.signed_tiyn, invoices)
    return {pid: (tiyn, sorted(invoices)) for pid, (tiyn, invoices) in found.items()}
