"""The ledger's invariants in the database: balanced at commit, append-only, keys unique."""

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session

from pos.db import utcnow
from settlement.ledger.errors import UnbalancedPostingError
from settlement.ledger.models import Side, TransactionKind
from settlement.ledger.posting import Leg, Posting, write_posting

INSERT_TXN = text(
    "INSERT INTO ledger_transactions (idempotency_key, kind, description, effective_at, posted_at)"
    " VALUES (:key, 'conversion', 'by hand', :at, :at) RETURNING id"
)
INSERT_ENTRY = text(
    "INSERT INTO ledger_entries (transaction_id, account, side, amount_tiyn, effective_at)"
    " VALUES (:txn, :account, :side, :amount, :at)"
)


def _insert_by_hand(engine: Engine, key: str, legs: list[tuple[str, str, int]]) -> None:
    at = utcnow()
    with engine.begin() as connection:
        txn = connection.execute(INSERT_TXN, {"key": key, "at": at}).scalar_one()
        for account, side, amount in legs:
            connection.execute(
                INSERT_ENTRY,
                {"txn": txn, "account": account, "side": side, "amount": amount, "at": at},
            )


def test_an_unbalanced_transaction_is_rejected(engine: Engine, session: Session) -> None:
    legs = [("zone:bank", "debit", 1000), ("zone:fees", "credit", 999)]
    if engine.dialect.name == "postgresql":
        # SQL that bypasses the code is stopped by the deferred trigger at COMMIT.
        with pytest.raises(DBAPIError, match="unbalanced"):
            _insert_by_hand(engine, "by-hand:1", legs)
        with pytest.raises(DBAPIError, match="at least two"):
            _insert_by_hand(engine, "by-hand:2", [])
    # On every backend the code refuses to write it.
    posting = Posting(
        "by-code:1",
        TransactionKind.CONVERSION,
        [Leg(a, Side(s), n) for a, s, n in legs],
        utcnow(),
    )
    with pytest.raises(UnbalancedPostingError):
        write_posting(session, posting)


def test_a_balanced_transaction_by_hand_commits(engine: Engine) -> None:
    _insert_by_hand(engine, "by-hand:ok", [("zone:bank", "debit", 10), ("zone:fees", "credit", 10)])
    with engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM ledger_entries")).scalar_one() == 2


def test_entries_are_append_only_on_postgresql(engine: Engine) -> None:
    _insert_by_hand(engine, "by-hand:ok", [("zone:bank", "debit", 10), ("zone:fees", "credit", 10)])
    if engine.dialect.name != "postgresql":
        return  # SQLite: append-only by the code (there is no update path), not by triggers
    for statement in (
        "UPDATE ledger_entries SET amount_tiyn = 11",
        "DELETE FROM ledger_entries",
        "DELETE FROM ledger_transactions",
    ):
        with pytest.raises(DBAPIError, match="append-only"), engine.begin() as connection:
            connection.execute(text(statement))


def test_idempotency_keys_are_unique_in_the_database(engine: Engine) -> None:
    legs = [("zone:bank", "debit", 10), ("zone:fees", "credit", 10)]
    _insert_by_hand(engine, "same-key", legs)
    with pytest.raises(IntegrityError):
        _insert_by_hand(engine, "same-key", legs)
