"""Conversions (`tenge` mode, DESIGN §7): the zone sold crypto (or redeemed KZTE) for tenge.

The operator records what left the zone's wallet and what the bank received:
  Dr zone:bank proceeds / Cr zone:clearing:<method> book value (and the quantity) /
  the difference to zone:fx_result (Cr a gain, Dr a loss).
Book value is the weighted average of the clearing account (posting.book_value_tiyn, half-up;
the whole balance takes all of its tiyn). Converting more than the clearing account holds is
refused. A reference (the exchange's or bank's) is unique: importing the same CSV twice records
nothing twice, and the same reference with other numbers is an error.

CSV import layout (header row required, one conversion per line):
  method,amount_atomic,proceeds_tiyn,reference
  btc,5382,250110,EXMO-2026-12-01-0001
`method` is btc or kzte, `amount_atomic` satoshi or KZTE base units, `proceeds_tiyn` the KZT the
bank received in tiyn, `reference` required in a file (it is what makes a re-import safe).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from pos import accounts, chart, money
from pos.chart import LedgerAccount
from pos.db import utcnow
from pos.i18n import N_
from pos.states import PaymentMethod
from settlement.ledger.balances import SIGNED_ATOMIC, SIGNED_TIYN
from settlement.ledger.errors import ConversionError
from settlement.ledger.models import Conversion, LedgerEntry, TransactionKind
from settlement.ledger.posting import Posting, book_value_tiyn, conversion_legs, write_posting

CSV_COLUMNS = ("method", "amount_atomic", "proceeds_tiyn", "reference")
UNIT = {PaymentMethod.BTC: "sat", PaymentMethod.KZTE: "KZTE base units"}
# More than the clearing account holds: one whole sentence per unit, so each translates whole.
_MORE_THAN_HELD = {
    PaymentMethod.BTC: N_("%(account)s holds %(held)s sat; %(amount)s cannot be converted"),
    PaymentMethod.KZTE: N_(
        "%(account)s holds %(held)s KZTE base units; %(amount)s cannot be converted"
    ),
}


def clearing_balance(session: Session, method: PaymentMethod) -> tuple[int, int]:
    """(tiyn, atomic) the zone's clearing account for `method` holds now."""
    tiyn, atomic = session.execute(
        select(func.sum(SIGNED_TIYN), func.sum(SIGNED_ATOMIC)).where(
            LedgerEntry.account == chart.clearing(method)
        )
    ).one()
    return int(tiyn or 0), int(atomic or 0)


@dataclass(frozen=True)
class ConversionRequest:
    method: PaymentMethod
    amount_atomic: int
    proceeds_tiyn: int
    reference: str | None = None


def record(
    session: Session,
    request: ConversionRequest,
    user_id: int | None = None,
    now: datetime | None = None,
) -> tuple[Conversion, bool]:
    """Post one conversion; (row, recorded now?). The caller commits."""
    now = now or utcnow()
    method = request.method
    reference = (request.reference or "").strip() or None
    if request.amount_atomic <= 0:
        raise ConversionError(N_("the amount converted must be more than zero"))
    if request.proceeds_tiyn < 0:
        raise ConversionError(N_("the proceeds cannot be negative"))
    if reference is not None and len(reference) > 100:
        raise ConversionError(N_("the reference is at most 100 characters"))
    if reference is not None:
        earlier = session.scalar(select(Conversion).where(Conversion.reference == reference))
        if earlier is not None:
            same = (earlier.method, earlier.amount_atomic, earlier.proceeds_tiyn) == (
                method.value,
                request.amount_atomic,
                request.proceeds_tiyn,
            )
            if same:
                return earlier, False
            raise ConversionError(
                N_(
                    "reference %(reference)s is already recorded with other numbers "
                    "(conversion %(conversion)s)"
                ),
                reference=repr(reference),
                conversion=earlier.id,
            )
    # One conversion at a time per clearing account (PostgreSQL row lock; SQLite has one writer).
    session.scalar(
        select(LedgerAccount).where(LedgerAccount.code == chart.clearing(method)).with_for_update()
    )
    balance_tiyn, balance_atomic = clearing_balance(session, method)
    if request.amount_atomic > balance_atomic:
        raise ConversionError(
            _MORE_THAN_HELD[method],
            account=chart.clearing(method),
            held=balance_atomic,
            amount=request.amount_atomic,
        )
    book = book_value_tiyn(balance_tiyn, balance_atomic, request.amount_atomic)
    if book <= 0:
        raise ConversionError(N_("that amount is worth less than a tiyn at book value"))
    conversion = Conversion(
        method=method.value,
        amount_atomic=request.amount_atomic,
        proceeds_tiyn=request.proceeds_tiyn,
        book_value_tiyn=book,
        reference=reference,
        recorded_by_user_id=user_id,
        created_at=now,
    )
    legs = conversion_legs(method, request.amount_atomic, book, request.proceeds_tiyn)
    key = f"conversion:{reference}" if reference else f"conversion:{method.value}:{now.isoformat()}"
    txn, _new = write_posting(
        session,
        Posting(
            key=key,
            kind=TransactionKind.CONVERSION,
            legs=legs,
            effective_at=now,
            method=method.value,
            description=(
                f"{request.amount_atomic} {UNIT[method]} converted for "
                f"{money.format_kzt(request.proceeds_tiyn)} KZT"
            ),
        ),
    )
    conversion.transaction_id = txn.id
    session.add(conversion)
    accounts.audit(
        session,
        "conversion.recorded",
        actor_user_id=user_id,
        detail={
            "method": method.value,
            "amount_atomic": request.amount_atomic,
            "proceeds_tiyn": request.proceeds_tiyn,
            "book_value_tiyn": book,
            "reference": reference,
        },
    )
    session.flush()
    return conversion, True


def parse_csv(text: str) -> list[ConversionRequest]:
    """Read the documented layout; raise `ConversionError` naming the bad line."""
    reader = csv.DictReader(io.StringIO(text))
    if reader.fieldnames is None or [f.strip() for f in reader.fieldnames] != list(CSV_COLUMNS):
        raise ConversionError(
            N_("the CSV header must be: %(header)s"), header=",".join(CSV_COLUMNS)
        )
    requests = []
    for number, row in enumerate(reader, start=2):
        try:
            method = PaymentMethod(row["method"].strip())
            amount, proceeds = int(row["amount_atomic"]), int(row["proceeds_tiyn"])
        except (ValueError, AttributeError, KeyError):
            raise ConversionError(
                N_("line %(line)d: method must be btc or kzte and amounts whole numbers"),
                line=number,
            ) from None
        reference = (row.get("reference") or "").strip()
        if not reference:
            raise ConversionError(
                N_("line %(line)d: a reference is required in a CSV import"), line=number
            )
        requests.append(ConversionRequest(method, amount, proceeds, reference))
    return requests


def import_csv(session: Session, text: str, user_id: int | None = None) -> list[Conversion]:
    """Record every line (all or nothing: the caller commits); returns the new ones."""
    created = []
    for request in parse_csv(text):
        conversion, new = record(session, request, user_id)
        if new:
            created.append(conversion)
    return created


def list_conversions(session: Session, limit: int = 500) -> list[Conversion]:
    return list(
        session.scalars(select(Conversion).order_by(Conversion.id.desc()).limit(limit)).all()
    )


def as_dict(conversion: Conversion) -> dict[str, object]:
    return {
        "id": conversion.id,
        "method": conversion.method,
        "amount_atomic": conversion.amount_atomic,
        "proceeds_tiyn": conversion.proceeds_tiyn,
        "book_value_tiyn": conversion.book_value_tiyn,
        "fx_result_tiyn": conversion.proceeds_tiyn - conversion.book_value_tiyn,
        "reference": conversion.reference,
        "created_at": conversion.created_at.isoformat(),
    }
