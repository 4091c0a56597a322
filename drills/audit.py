"""The audit's rules, pure: what the chain says of a payment, what the database must then say of
its invoice, and the table of results. (drills.truth reads the chains and the database.)

For each invoice a drill created, against the chain's own truth at the end:
  lost        the chain has its payment final (BTC: in the best chain, the merchant's policy of
              one block; KZTE: finalized) but the invoice is not settled
  wrong state the status is not what the chain justifies (settled without a final payment,
              not invalid after a double spend in the best chain, an unpaid one not expired),
              or it was expired while a payment made before its expiry existed, or a drill's
              check in the middle of the run saw the wrong state
  duplicated  a payment row the shopper never made for it (someone else's money counted), two
              rows of one transaction, a second `invoice.settled` without an undo in between, or
              more than one net settlement posting
  unbalanced  a ledger transaction of it whose debits and credits differ, or settlement minus
              reversal postings that do not match its status (1 when settled, else 0)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from pos.states import InvoiceStatus

DETECTED = frozenset(
    {
        "invoice.payment_seen",
        "invoice.processing",
        "invoice.settled",
        "invoice.paid_partial",
        "invoice.paid_late",
    }
)
EXPIRY_SLACK = timedelta(seconds=30)  # the expiry duty runs every second; allow a slow box
PAID_BEFORE_EXPIRY_MARGIN = timedelta(seconds=1)  # clock reads of two processes


class Truth(StrEnum):
    """What the chain itself says of an invoice's payment(s)."""

    FINAL = "final"  # BTC: in the best chain; KZTE: finalized
    PENDING = "pending"  # BTC: in the mempool; KZTE: confirmed, not finalized yet
    CONFLICTED = "conflicted"  # BTC: a transaction spending the same coins is in the best chain
    GONE = "gone"  # no node knows it and nothing conflicts: unknown
    UNPAID = "unpaid"  # the shopper never paid it


def combine(truths: Iterable[Truth]) -> Truth:
    """One invoice's truth from its payments' (the best one wins: money that arrived counts)."""
    seen = set(truths)
    for truth in (Truth.FINAL, Truth.PENDING, Truth.GONE, Truth.CONFLICTED):
        if truth in seen:
            return truth
    return Truth.UNPAID


@dataclass(frozen=True)
class Event:
    type: str
    from_status: str | None
    to_status: str
    created_at: datetime


@dataclass
class InvoiceFacts:
    """What the database holds of one invoice."""

    status: InvoiceStatus
    payments: list[tuple[str, int, str]] = field(default_factory=list)  # (txid, vout, status)
    events: list[Event] = field(default_factory=list)  # in version order
    settlements: int = 0  # SETTLEMENT ledger transactions
    reversals: int = 0  # REVERSAL ledger transactions
    unbalanced_postings: int = 0  # its ledger transactions whose sides differ


@dataclass
class Verdict:
    settled: bool = False
    lost: bool = False
    wrong: bool = False
    duplicated: bool = False
    unbalanced: bool = False
    delay_seconds: float | None = None
    reasons: list[str] = field(default_factory=list)


def expected_statuses(
    truth: Truth, expires_at: datetime, now: datetime
) -> frozenset[InvoiceStatus]:
    """The statuses the chain's truth allows at `now`."""
    if truth is Truth.FINAL:
        return frozenset({InvoiceStatus.SETTLED})
    if truth is Truth.CONFLICTED:
        return frozenset({InvoiceStatus.INVALID})
    if truth is Truth.PENDING:
        return frozenset({InvoiceStatus.PROCESSING})
    if truth is Truth.GONE:
        # Unknown: it counts for the grace window (processing), then no more (invalid).
        return frozenset({InvoiceStatus.PROCESSING, InvoiceStatus.INVALID})
    if now > expires_at + EXPIRY_SLACK:
        return frozenset({InvoiceStatus.EXPIRED})
    return frozenset({InvoiceStatus.NEW, InvoiceStatus.EXPIRED})


def judge(
    facts: InvoiceFacts | None,
    truth: Truth,
    txids: Sequence[str],
    paid_at: datetime | None,
    expires_at: datetime,
    now: datetime,
) -> Verdict:
    """The verdict on one invoice (see the module docstring)."""
    verdict = Verdict()
    if facts is None:  # the API answered 201, yet the database has no such invoice
        verdict.lost = truth is Truth.FINAL
        verdict.wrong = not verdict.lost
        verdict.reasons.append("not in the database")
        return verdict
    verdict.settled = facts.status is InvoiceStatus.SETTLED
    if truth is Truth.FINAL and not verdict.settled:
        verdict.lost = True
        verdict.reasons.append(f"paid and final on chain, but {facts.status}")
    elif facts.status not in expected_statuses(truth, expires_at, now):
        verdict.wrong = True
        verdict.reasons.append(f"chain says {truth}, invoice is {facts.status}")
    paid_in_time = paid_at is not None and paid_at + PAID_BEFORE_EXPIRY_MARGIN < expires_at
    if paid_in_time and any(e.type == "invoice.expired" for e in facts.events):
        verdict.wrong = True
        verdict.reasons.append("expired although paid before its expiry")
    _duplicates(verdict, facts, txids)
    net = facts.settlements - facts.reversals
    if net > 1:
        verdict.duplicated = True
        verdict.reasons.append(f"{net} net settlement postings")
    if net < 0 or net != int(verdict.settled) or facts.unbalanced_postings:
        verdict.unbalanced = True
        verdict.reasons.append(
            f"ledger: {facts.settlements} settlements, {facts.reversals} reversals, "
            f"{facts.unbalanced_postings} unbalanced, invoice {facts.status}"
        )
    if paid_at is not None:
        detected = [e.created_at for e in facts.events if e.type in DETECTED]
        if detected:
            verdict.delay_seconds = max(0.0, (min(detected) - paid_at).total_seconds())
    return verdict


def _duplicates(verdict: Verdict, facts: InvoiceFacts, txids: Sequence[str]) -> None:
    made = set(txids)
    rows = [txid for txid, _vout, _status in facts.payments]
    strangers = sorted(set(rows) - made)
    if strangers:
        verdict.duplicated = True
        verdict.reasons.append(f"payments the shopper never made for it: {strangers}")
    if len(rows) != len(set(rows)):
        verdict.duplicated = True
        verdict.reasons.append("two payment rows of one transaction")
    settled = False
    for event in facts.events:
        if event.type == "invoice.settled":
            if settled:
                verdict.duplicated = True
                verdict.reasons.append("settled twice without an undo in between")
            settled = True
        elif event.from_status == InvoiceStatus.SETTLED.value:
            settled = False  # reopened by a reorg, or invalid


@dataclass
class Row:
    """One line of the table: one drill on one stack."""

    stack: str
    drill: str
    payments: int = 0
    settled: int = 0
    lost: int = 0
    duplicated: int = 0
    wrong: int = 0
    unbalanced: int = 0
    five_xx: int = 0
    max_delay_seconds: float | None = None

    @property
    def failed(self) -> bool:
        return bool(self.lost or self.duplicated or self.wrong or self.unbalanced)

    def add(self, verdict: Verdict, paid: bool) -> None:
        self.payments += int(paid)
        self.settled += int(paid and verdict.settled)
        self.lost += int(verdict.lost)
        self.duplicated += int(verdict.duplicated)
        self.wrong += int(verdict.wrong)
        self.unbalanced += int(verdict.unbalanced)
        if verdict.delay_seconds is not None:
            self.max_delay_seconds = max(self.max_delay_seconds or 0.0, verdict.delay_seconds)


COLUMNS = (
    "stack",
    "drill",
    "payments",
    "settled",
    "lost",
    "duplicated",
    "wrong state",
    "unbalanced",
    "5xx",
    "max detection delay",
)


def total(stack: str, rows: Sequence[Row]) -> Row:
    out = Row(stack, "all")
    for row in rows:
        out.payments += row.payments
        out.settled += row.settled
        out.lost += row.lost
        out.duplicated += row.duplicated
        out.wrong += row.wrong
        out.unbalanced += row.unbalanced
        out.five_xx += row.five_xx
        if row.max_delay_seconds is not None:
            out.max_delay_seconds = max(out.max_delay_seconds or 0.0, row.max_delay_seconds)
    return out


def format_table(rows: Sequence[Row]) -> str:
    """A Markdown table (it pastes into an issue's closing note as it is)."""
    lines = [list(COLUMNS)]
    for r in rows:
        delay = "-" if r.max_delay_seconds is None else f"{r.max_delay_seconds:.1f} s"
        lines.append(
            [
                r.stack,
                r.drill,
                *(
                    str(v)
                    for v in (
                        r.payments,
                        r.settled,
                        r.lost,
                        r.duplicated,
                        r.wrong,
                        r.unbalanced,
                        r.five_xx,
                    )
                ),
                delay,
            ]
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(COLUMNS))]

    def render(cells: list[str]) -> str:
        padded = [
            c.ljust(w) if i < 2 else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "| " + " | ".join(padded) + " |"

    rule = (
        "|"
        + "|".join(
            ("-" * (w + 2)) if i < 2 else ("-" * (w + 1) + ":") for i, w in enumerate(widths)
        )
        + "|"
    )
    return "\n".join([render(lines[0]), rule, *(render(line) for line in lines[1:])])
