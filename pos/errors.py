"""Errors raised by the domain core.

Every error a user or operator can cause is a subclass of `PosError` with a message fit to show
as it is. The web tier maps them to HTTP statuses in one place (merchant_portal.errors).
"""

from __future__ import annotations


class PosError(Exception):
    """Base of every domain error; `str(error)` is a clear, user-facing sentence (English).

    A message marked with `pos.i18n.N_` keeps its %-parameters apart (`template`, `params`), so
    the portal can show it translated: `gettext(error.template) % error.params`.
    """

    def __init__(self, *args: object, **params: object) -> None:
        # Extra positional args are kept as Exception keeps them (some subclasses pass a code).
        message = args[0] if args else ""
        self.template = message if isinstance(message, str) else str(message)
        self.params = params
        if params:
            args = (self.template % params, *args[1:])
        super().__init__(*args)


class ConfigError(PosError):
    """The environment holds a missing, malformed or unsafe setting."""


class ValidationError(PosError):
    """Input from a person or a client is malformed; `field` names what to fix."""

    def __init__(self, message: str, field: str | None = None, **params: object) -> None:
        super().__init__(message, **params)
        self.field = field


class NotFoundError(PosError):
    """The object does not exist, or belongs to another merchant (we never tell which)."""


class MerchantNotActiveError(PosError):
    """The merchant is pending approval or suspended and may not create invoices."""


class ShopSuspendedError(MerchantNotActiveError):
    """A suspended merchant's cashier signed in with the right password: the tills are closed."""


class PaymentMethodUnavailableError(PosError):
    """The merchant has not configured this payment method, or the zone has it switched off."""


class RateUnavailableError(PosError):
    """No fresh exchange rate is available, so invoices in that currency are refused."""


class IllegalTransitionError(PosError):
    """An invoice status change not allowed by the transition table."""


class ConcurrentUpdateError(PosError):
    """Another process changed the invoice first; reload and decide again."""


class AllocationCollisionError(ConcurrentUpdateError):
    """Every address or reference allocated for a new invoice was another invoice's."""


class CoordinationUnavailableError(PosError):
    """Redis cannot be reached; the database keeps the record and nothing is lost."""


class RateDisagreementError(RateUnavailableError):
    """The fresh BTC/KZT sources disagree by more than the allowed spread: BTC is refused."""


class KzteDepegError(RateUnavailableError):
    """A fresh KZTE/KZT quote is further from 1:1 than the allowed depeg: KZTE is paused."""
