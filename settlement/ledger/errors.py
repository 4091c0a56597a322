"""Errors of the ledger package; each message is a sentence fit to show an operator."""

from __future__ import annotations

from pos.errors import PosError


class LedgerError(PosError):
    """Base of every ledger, payout and report error."""


class UnbalancedPostingError(LedgerError):
    """A posting whose debits and credits differ, or with a non-positive leg; never written."""


class PayoutError(LedgerError):
    """A payout cannot be created or marked paid as asked (already paid, no reference, …)."""


class PayoutNotFoundError(PayoutError):
    """No payout with that id."""


class UnknownAccountError(LedgerError):
    """A posting names an account that is not in the chart of accounts; never written."""


class ConversionError(LedgerError):
    """A conversion that cannot be recorded (more than the clearing holds, bad amounts)."""
