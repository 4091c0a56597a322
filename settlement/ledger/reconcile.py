"""Reconciliation: what the chains say we received versus what the ledger's clearing holds.

For every invoice settled in the period, or with a settlement / reversal posted in it:
expected = its final payments valued at the locked rate (the posting rules' rounding), and
cleared = the net debit of its clearing account over all time. Any difference is listed.
Then each final payment is re-checked against its node through a `PaymentVerifier`
(implemented by the chain adapters); `None` means the node could not say, which is reported
as unknown, never as a failure.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from pos.errors import PosError
from pos.models import Invoice, Payment, PaymentStatus
from pos.settings import Settings
from pos.states import InvoiceStatus
from settlement.ledger.models import LedgerEntry, LedgerTransaction, Side
from settlement.ledger.posting import gross_tiyn
from settlement.ledger.reports import SALES, DateRange, Table

CLEARING_PREFIX = "zone:clearing:"


class PaymentVerifier(Protocol):
    """A chain adapter's answer to "does the node confirm this payment?"."""

    def verify(self, payment: Payment) -> bool | None:
        """True: confirmed as recorded; False: the node contradicts it; None: unknown."""
        ...


@dataclass(frozen=True)
class InvoiceDifference:
    invoice_id: str
    merchant_id: int
    method: str
    status: str
    expected_tiyn: int
    cleared_tiyn: int

    @property
    def difference_tiyn(self) -> int:
        return self.cleared_tiyn - self.expected_tiyn


@dataclass(frozen=True)
class ChainCheck:
    invoice_id: str
    chain: str
    txid: str
    output_index: int
    amount_atomic: int
    result: str  # confirmed | contradicted | unknown | not checked


@dataclass
class Reconciliation:
    range: DateRange
    invoices_checked: int
    expected_tiyn: int
    cleared_tiyn: int
    differences: list[InvoiceDifference]
    checks: list[ChainCheck] = field(default_factory=list)

    def check_counts(self) -> dict[str, int]:
        counts = dict.fromkeys(("confirmed", "contradicted", "unknown", "not checked"), 0)
        for check in self.checks:
            counts[check.result] += 1
        return counts

    @property
    def chain_problems(self) -> list[ChainCheck]:
        return [c for c in self.checks if c.result in ("contradicted", "unknown")]

    def tables(self) -> dict[str, Table]:
        return {
            "differences": (
                (
                    "invoice_id",
                    "merchant_id",
                    "method",
                    "status",
                    "expected_tiyn",
                    "cleared_tiyn",
                    "difference_tiyn",
                ),
                [
                    (
                        d.invoice_id,
                        d.merchant_id,
                        d.method,
                        d.status,
                        d.expected_tiyn,
                        d.cleared_tiyn,
                        d.difference_tiyn,
                    )
                    for d in self.differences
                ],
            ),
            "chain": (
                ("invoice_id", "chain", "txid", "output_index", "amount_atomic", "result"),
                [
                    (c.invoice_id, c.chain, c.txid, c.output_index, c.amount_atomic, c.result)
                    for c in self.checks
                ],
            ),
        }

    def as_dict(self) -> dict[str, Any]:
        return {
            "range": self.range.as_dict(),
            "invoices_checked": self.invoices_checked,
            "expected_tiyn": self.expected_tiyn,
            "cleared_tiyn": self.cleared_tiyn,
            "difference_tiyn": self.cleared_tiyn - self.expected_tiyn,
            "differences": [
                {**vars(d), "difference_tiyn": d.difference_tiyn} for d in self.differences
            ],
            "chain_checks": self.check_counts(),
            "chain_problems": [vars(c) for c in self.chain_problems],
        }


def reconcile(
    session: Session,
    settings: Settings,
    period: DateRange,
    verifiers: Mapping[str, PaymentVerifier] | None = None,
) -> Reconciliation:
    """Compare settled payments with clearing postings; re-check payments with the nodes."""
    posted_ids = select(LedgerTransaction.invoice_id).where(
        LedgerTransaction.kind.in_(SALES),
        LedgerTransaction.effective_at >= period.start_at,
        LedgerTransaction.effective_at < period.end_before,
        LedgerTransaction.invoice_id.is_not(None),
    )
    invoices: Sequence[Invoice] = session.scalars(
        select(Invoice)
        .where(
            or_(
                Invoice.id.in_(posted_ids),
                (Invoice.status == InvoiceStatus.SETTLED)
                & (Invoice.settled_at >= period.start_at)
                & (Invoice.settled_at < period.end_before),
            )
        )
        .order_by(Invoice.created_at)
    ).all()
    cleared = _cleared_by_invoice(session, [inv.id for inv in invoices])
    result = Reconciliation(period, len(invoices), 0, 0, [])
    for invoice in invoices:
        final = [p for p in invoice.payments if p.status is PaymentStatus.FINAL]
        expected = 0
        if invoice.status is InvoiceStatus.SETTLED:
            paid = sum(p.amount_atomic for p in final)
            expected = gross_tiyn(invoice.method, paid, invoice.rate, settings.kzte_decimals)
        got = cleared.get(invoice.id, 0)
        result.expected_tiyn += expected
        result.cleared_tiyn += got
        if got != expected:
            result.differences.append(
                InvoiceDifference(
                    invoice.id,
                    invoice.merchant_id,
                    invoice.method.value,
                    invoice.status.value,
                    expected,
                    got,
                )
            )
        if invoice.status is InvoiceStatus.SETTLED:
            result.checks += [_check(invoice.id, p, verifiers or {}) for p in final]
    return result


def _cleared_by_invoice(session: Session, invoice_ids: list[str]) -> dict[str, int]:
    cleared: dict[str, int] = {}
    for start in range(0, len(invoice_ids), 500):
        chunk = invoice_ids[start : start + 500]
        for invoice_id, account, side, amount in session.execute(
            select(
                LedgerTransaction.invoice_id,
                LedgerEntry.account,
                LedgerEntry.side,
                LedgerEntry.amount_tiyn,
            )
            .join(LedgerTransaction, LedgerTransaction.id == LedgerEntry.transaction_id)
            .where(LedgerTransaction.invoice_id.in_(chunk))
        ):
            if invoice_id is not None and account.startswith(CLEARING_PREFIX):
                signed = amount if side is Side.DEBIT else -amount
                cleared[invoice_id] = cleared.get(invoice_id, 0) + signed
    return cleared


def _check(
    invoice_id: str, payment: Payment, verifiers: Mapping[str, PaymentVerifier]
) -> ChainCheck:
    verifier = verifiers.get(payment.chain)
    if verifier is None:
        result = "not checked"
    else:
        try:
            answer = verifier.verify(payment)
        except PosError:
            answer = None  # a node error is "unknown", never a verdict
        result = {True: "confirmed", False: "contradicted", None: "unknown"}[answer]
    return ChainCheck(
        invoice_id,
        payment.chain,
        payment.txid,
        payment.output_index,
        payment.amount_atomic,
        result,
    )


def default_verifiers(settings: Settings) -> dict[str, PaymentVerifier]:
    """The node verifiers by chain name ("bitcoin", "solana"), on the configured nodes."""
    from settlement.verifiers import node_verifiers  # the chain adapters, only when asked

    return dict(node_verifiers(settings))
