"""Reconciliation: what the chains say was received versus what the ledger holds (DESIGN §7).

Per invoice (settled in the period, with a posting in it, or a payment final in it): expected
= its FINAL payments, each valued at the locked rate (the receipts' rounding), and cleared =
the net debit of its holding account (zone clearing, or the `direct` merchant's memorandum)
over all time; any difference is listed with its cause. Per method, all time: the clearing
account's atomic balance against the final payments to the zone's destinations, less recorded
conversions and confirmed refunds.
Then each final payment is re-checked against its node through a `PaymentVerifier`
(implemented by the chain adapters); `None` means the node could not say, which is reported
as unknown, never as a failure.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from pos import chart
from pos.errors import PosError
from pos.i18n import N_
from pos.models import Invoice, Payment, PaymentStatus, SettlementMode
from pos.settings import Settings
from pos.states import InvoiceStatus, PaymentMethod
from settlement.ledger.conversions import clearing_balance
from settlement.ledger.models import (
    Conversion,
    LedgerEntry,
    LedgerTransaction,
    Side,
    TransactionKind,
)
from settlement.ledger.posting import gross_tiyn
from settlement.ledger.reports import DateRange, Table

CLEARING_PREFIX = "zone:clearing:"


class PaymentVerifier(Protocol):
    """A chain adapter's answer to "does the node confirm this payment?"."""

    def verify(self, payment: Payment) -> bool | None:
        """True: confirmed as recorded; False: the node contradicts it; None: unknown."""
        ...


@dataclass(frozen=True)
class InvoiceDifference:
    """One invoice whose postings disagree with its payments, and why."""

    invoice_id: str
    merchant_id: int
    method: str
    status: str
    expected_tiyn: int  # its FINAL payments, each at the locked rate, rounded down
    cleared_tiyn: int  # what its receipts hold on the clearing (or memorandum) account
    cause: str = ""

    @property
    def difference_tiyn(self) -> int:
        return self.cleared_tiyn - self.expected_tiyn


@dataclass(frozen=True)
class MethodBalance:
    """Per method (`tenge` money only): the clearing account against the zone's destinations."""

    method: str
    chain_final_atomic: int  # final payments to the zone's destinations, as found on chain
    converted_atomic: int  # recorded conversions
    refunded_atomic: int  # confirmed refunds sent from the zone
    clearing_atomic: int
    clearing_tiyn: int
    unbooked_atomic: int  # final payments worth less than a tiyn: never booked (listed)

    @property
    def expected_atomic(self) -> int:
        return (
            self.chain_final_atomic
            - self.converted_atomic
            - self.refunded_atomic
            - self.unbooked_atomic
        )

    @property
    def difference_atomic(self) -> int:
        return self.clearing_atomic - self.expected_atomic

    def as_dict(self) -> dict[str, object]:
        return {
            **vars(self),
            "expected_atomic": self.expected_atomic,
            "difference_atomic": self.difference_atomic,
        }


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
    methods: list[MethodBalance] = field(default_factory=list)

    def check_counts(self) -> dict[str, int]:
        counts = dict.fromkeys(("confirmed", "contradicted", "unknown", "not checked"), 0)
        for check in self.checks:
            counts[check.result] += 1
        return counts

    @property
    def chain_problems(self) -> list[ChainCheck]:
        return [c for c in self.checks if c.result in ("contradicted", "unknown")]

    @property
    def method_differences(self) -> list[MethodBalance]:
        return [m for m in self.methods if m.difference_atomic != 0]

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
                    "cause",
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
                        d.cause,
                    )
                    for d in self.differences
                ],
            ),
            "methods": (
                (
                    "method",
                    "chain_final_atomic",
                    "converted_atomic",
                    "refunded_atomic",
                    "unbooked_atomic",
                    "expected_atomic",
                    "clearing_atomic",
                    "difference_atomic",
                    "clearing_tiyn",
                ),
                [
                    (
                        m.method,
                        m.chain_final_atomic,
                        m.converted_atomic,
                        m.refunded_atomic,
                        m.unbooked_atomic,
                        m.expected_atomic,
                        m.clearing_atomic,
                        m.difference_atomic,
                        m.clearing_tiyn,
                    )
                    for m in self.methods
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
            "methods": [m.as_dict() for m in self.methods],
            "method_differences": len(self.method_differences),
            "chain_checks": self.check_counts(),
            "chain_problems": [vars(c) for c in self.chain_problems],
        }


def reconcile(
    session: Session,
    settings: Settings,
    period: DateRange,
    verifiers: Mapping[str, PaymentVerifier] | None = None,
) -> Reconciliation:
    """Each invoice's receipts against its final payments; each method's clearing balance
    against the zone's destinations; then the final payments re-checked with the nodes."""
    posted_ids = select(LedgerTransaction.invoice_id).where(
        LedgerTransaction.effective_at >= period.start_at,
        LedgerTransaction.effective_at < period.end_before,
        LedgerTransaction.invoice_id.is_not(None),
    )
    final_ids = select(Payment.invoice_id).where(
        Payment.status == PaymentStatus.FINAL,
        Payment.updated_at >= period.start_at,
        Payment.updated_at < period.end_before,
    )
    invoices: Sequence[Invoice] = session.scalars(
        select(Invoice)
        .where(
            or_(
                Invoice.id.in_(posted_ids),
                Invoice.id.in_(final_ids),
                (Invoice.status == InvoiceStatus.SETTLED)
                & (Invoice.settled_at >= period.start_at)
                & (Invoice.settled_at < period.end_before),
            )
        )
        .order_by(Invoice.created_at)
    ).all()
    held = _held_by_invoice(session, [inv.id for inv in invoices])
    result = Reconciliation(period, len(invoices), 0, 0, [])
    for invoice in invoices:
        final = [p for p in invoice.payments if p.status is PaymentStatus.FINAL]
        values = [
            gross_tiyn(invoice.method, p.amount_atomic, invoice.rate, settings.kzte_decimals)
            for p in final
        ]
        expected = sum(values)
        got, unallocated = held.get(invoice.id, (0, 0))
        result.expected_tiyn += expected
        result.cleared_tiyn += got
        cause = ""
        if got < expected:
            cause = N_("a final payment is not booked yet (is the worker's ledger duty running?)")
        elif got > expected:
            cause = N_("a payment that is no longer final is still booked")
        elif unallocated < 0:
            cause = N_("marked settled for more than its final payments received")
        elif any(v == 0 for v in values):
            cause = N_("a final payment worth less than 1 tiyn at the locked rate: not booked")
        if cause:
            result.differences.append(
                InvoiceDifference(
                    invoice.id,
                    invoice.merchant_id,
                    invoice.method.value,
                    invoice.status.value,
                    expected,
                    got,
                    cause,
                )
            )
        if final:
            result.checks += [_check(invoice.id, p, verifiers or {}) for p in final]
    result.methods = [_method_balance(session, settings, m) for m in PaymentMethod]
    return result


def _held_by_invoice(session: Session, invoice_ids: list[str]) -> dict[str, tuple[int, int]]:
    """invoice -> (net debit of its holding account, net credit of its unallocated account)."""
    held: dict[str, tuple[int, int]] = {}
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
            .where(
                LedgerTransaction.invoice_id.in_(chunk),
                # A refund pays money back out of clearing: reconciled per method, not here.
                LedgerTransaction.kind != TransactionKind.REFUND,
            )
        ):
            if invoice_id is None:
                continue
            signed = amount if side is Side.DEBIT else -amount
            got, unallocated = held.get(invoice_id, (0, 0))
            if account.startswith(CLEARING_PREFIX) or ":crypto_received:" in account:
                got += signed
            elif account == chart.UNALLOCATED or account.endswith(":sales_unallocated"):
                unallocated -= signed
            held[invoice_id] = (got, unallocated)
    return held


def _method_balance(session: Session, settings: Settings, method: PaymentMethod) -> MethodBalance:
    """All time: what the zone's destinations received, net of what left them."""
    tenge_final = session.execute(
        select(Payment.amount_atomic, Invoice.rate)
        .join(Invoice, Invoice.id == Payment.invoice_id)
        .where(
            Payment.status == PaymentStatus.FINAL,
            Invoice.method == method,
            Invoice.settlement_mode == SettlementMode.TENGE,
        )
    ).all()
    chain = sum(amount for amount, _rate in tenge_final)
    unbooked = sum(
        amount
        for amount, rate in tenge_final
        if gross_tiyn(method, amount, rate, settings.kzte_decimals) == 0
    )
    converted = session.scalar(
        select(func.sum(Conversion.amount_atomic)).where(Conversion.method == method.value)
    )
    refunded = session.scalar(
        select(func.sum(LedgerEntry.amount_atomic))
        .join(LedgerTransaction, LedgerTransaction.id == LedgerEntry.transaction_id)
        .where(
            LedgerTransaction.kind == TransactionKind.REFUND,
            LedgerEntry.account == chart.clearing(method),
        )
    )
    tiyn, atomic = clearing_balance(session, method)
    return MethodBalance(
        method.value,
        chain,
        int(converted or 0),
        int(refunded or 0),
        int(atomic or 0),
        int(tiyn or 0),
        unbooked,
    )


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


def reconcile_with_nodes(session: Session, settings: Settings, period: DateRange) -> Reconciliation:
    """`reconcile` with the node verifiers of the configured nodes, closed afterwards."""
    from settlement.verifiers import node_verifiers  # the chain adapters, only when asked

    with node_verifiers(settings) as verifiers:
        return reconcile(session, settings, period, dict(verifiers))
