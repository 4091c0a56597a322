"""Ledger rows at chosen moments, for the business-day tests (reports cut at local midnight).

The rows are written as plain balanced model objects rather than through the posting service:
these tests are about which day a moment falls on, not about how a sale is posted.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from pos import chart
from settlement.ledger.models import LedgerEntry, LedgerTransaction, Side, TransactionKind


def sale_at(
    session: Session,
    merchant_id: int,
    invoice_id: str,
    gross_tiyn: int,
    fee_tiyn: int,
    at: datetime,
) -> None:
    """A KZTE sale's allocation at `at`: Dr unallocated gross / Cr payable net / Cr fees."""
    chart.open_zone_accounts(session)
    legs = [
        (chart.UNALLOCATED, Side.DEBIT, gross_tiyn),
        (chart.payable(merchant_id), Side.CREDIT, gross_tiyn - fee_tiyn),
        (chart.FEES, Side.CREDIT, fee_tiyn),
    ]
    session.add(
        LedgerTransaction(
            idempotency_key=f"test-sale:{invoice_id}",
            kind=TransactionKind.SETTLEMENT,
            fact="allocation",
            invoice_id=invoice_id,
            merchant_id=merchant_id,
            method="kzte",
            description=f"sale {invoice_id[:8]}",
            effective_at=at,
            entries=[
                LedgerEntry(account=account, side=side, amount_tiyn=amount, effective_at=at)
                for account, side, amount in legs
            ],
        )
    )
    session.flush()
