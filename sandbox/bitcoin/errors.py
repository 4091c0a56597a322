"""Error hierarchy of the regtest node stand-in.

Every error carries the Bitcoin Core RPC error code it maps to, so the RPC
layer can turn any of them into Core's exact ``{"code":..,"message":..}``.
"""

from __future__ import annotations


class SandboxBitcoinError(Exception):
    """Base class of all errors raised by ``sandbox.bitcoin``."""

    code: int = -1  # RPC_MISC_ERROR

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class MiscError(SandboxBitcoinError):
    code = -1


class TypeErrorRPC(SandboxBitcoinError):
    code = -3  # RPC_TYPE_ERROR


class InvalidAddressOrKey(SandboxBitcoinError):
    code = -5  # RPC_INVALID_ADDRESS_OR_KEY


class InvalidParameter(SandboxBitcoinError):
    code = -8  # RPC_INVALID_PARAMETER


class DeserializationError(SandboxBitcoinError):
    code = -22  # RPC_DESERIALIZATION_ERROR


class TransactionError(SandboxBitcoinError):
    code = -25  # RPC_TRANSACTION_ERROR (missing inputs)


class TransactionRejected(SandboxBitcoinError):
    code = -26  # RPC_TRANSACTION_REJECTED (policy / consensus failure)


class AlreadyInChain(SandboxBitcoinError):
    code = -27  # RPC_TRANSACTION_ALREADY_IN_CHAIN


class MethodNotFound(SandboxBitcoinError):
    code = -32601


class InvalidRequest(SandboxBitcoinError):
    code = -32600


class WalletError(SandboxBitcoinError):
    """Base class of shopper-wallet errors (``sandbox.bitcoin.wallet``)."""

    code = -4  # RPC_WALLET_ERROR


class InvalidURIError(WalletError):
    """The BIP21 URI could not be parsed."""


class WrongNetworkError(WalletError):
    """The address belongs to another network than regtest."""


class BadAmountError(WalletError):
    """The amount is missing, malformed, non-positive or too large."""


class InsufficientFundsError(WalletError):
    """The wallet could not gather enough spendable coins."""

    code = -6


class NodeRPCError(WalletError):
    """The node answered a wallet request with a JSON-RPC error."""
