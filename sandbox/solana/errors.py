"""Exceptions of the Solana sandbox: everything raised here derives from SolanaSandboxError."""

from __future__ import annotations


class SolanaSandboxError(Exception):
    """Base class of every error raised by ``sandbox.solana``."""


class InstallError(SolanaSandboxError):
    """npm / Node.js are missing or the surfpool package could not be installed."""


class ValidatorError(SolanaSandboxError):
    """The local validator could not be started, set up or stopped."""


class RpcError(SolanaSandboxError):
    """A JSON-RPC call failed or a transaction did not confirm."""


class WalletError(SolanaSandboxError):
    """The shopper wallet refused or failed to pay."""


class MalformedUriError(WalletError):
    """A Solana Pay URI does not follow the transfer-request specification."""


class UnsupportedUriError(WalletError):
    """A well-formed Solana Pay URI that this wallet cannot pay."""


class InsufficientFundsError(WalletError):
    """The wallet lacks tokens or SOL and no faucet was given."""
