"""Solana JSON-RPC adapter (solana-py + solders): the only module that speaks the node's language.

Every query returns an `Answer`: a value (the node answered) or an error (it did not, or it
refused) — never a guess. A timeout, a refused connection, an HTTP 5xx or a JSON-RPC error is
*unknown*: the caller must not read it as "not paid". Transient failures are retried with
backoff before giving up.

The answers are translated to our vocabulary at this boundary (`SignatureInfo`, `SigStatus`,
`ChainTransaction`, raw integer token amounts). Local validators differ from real ones
(sandbox/solana/README.md); the adapter absorbs that here:
  * finality comes only from getSignatureStatuses' `confirmationStatus`, never from the
    commitment a query was made with (surfpool ignores it);
  * timestamps come from getSignaturesForAddress (surfpool's getTransaction blockTime is
    scaled down 1000x);
  * token amounts are the raw integer `amount` strings, never `uiAmount(String)`;
  * every getTransaction sends maxSupportedTransactionVersion 0, so v0 transactions are read;
  * getSignaturesForAddress is paged (`before`) until the history since the cursor is read
    whole; an answer that would be partial is UNKNOWN (`SolanaIncompleteAnswerError`), never a
    short list that a caller could take for "nothing else was paid".
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Generic, TypeVar

import httpx2
from solana.exceptions import SolanaRpcException
from solana.rpc.async_api import AsyncClient
from solana.rpc.commitment import Confirmed
from solana.rpc.core import RPCException, RPCNoResultException
from solders.errors import SerdeJSONError
from solders.message import Message, MessageV0
from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.transaction import VersionedTransaction
from solders.transaction_status import TransactionConfirmationStatus

from settlement.errors import NodeRpcError, NodeUnavailableError, SettlementError

log = logging.getLogger(__name__)

T = TypeVar("T")

MAX_STATUSES_PER_CALL = 256  # the JSON-RPC limit of getSignatureStatuses
MAX_SIGNATURES_PER_PAGE = 1000  # the JSON-RPC limit of getSignaturesForAddress
# A payment reference with more than this many pages of signatures is abnormal: unknown.
MAX_PAGES = 5
# Below 10^9 a Unix time would be before 2001: a validator that scaled it (see module doc).
_MIN_PLAUSIBLE_UNIX_TIME = 1_000_000_000

# JSON-RPC errors (solders names them by class) that a later retry may cure, with their codes.
_RETRYABLE_CODES = {
    "InternalErrorMessage": -32603,
    "NodeUnhealthyMessage": -32005,
    "BlockNotAvailableMessage": -32004,
    "BlockStatusNotAvailableYetMessage": -32014,
    "MinContextSlotNotReachedMessage": -32016,
    "SlotSkippedMessage": -32007,
    "LongTermStorageSlotSkippedMessage": -32009,
}
_FINAL_CODES = {
    "InvalidParamsMessage": -32602,
    "InvalidRequestMessage": -32600,
    "MethodNotFoundMessage": -32601,
    "ParseErrorMessage": -32700,
    "UnsupportedTransactionVersionMessage": -32015,
}

_COMMITMENTS = (
    (TransactionConfirmationStatus.Processed, "processed"),
    (TransactionConfirmationStatus.Confirmed, "confirmed"),
    (TransactionConfirmationStatus.Finalized, "finalized"),
)


def _commitment(status: TransactionConfirmationStatus | None) -> str | None:
    # solders' enum is not hashable, hence a scan instead of a dict.
    return next((name for value, name in _COMMITMENTS if value == status), None)


class SolanaUnavailableError(NodeUnavailableError):
    """The Solana node did not answer in time (or at all) after the retries: UNKNOWN."""


class SolanaRpcError(NodeRpcError):
    """The Solana node answered with a JSON-RPC error (e.g. invalid params): UNKNOWN too."""


class SolanaMalformedAnswerError(SettlementError):
    """The node's answer could not be read as the documented shape: UNKNOWN."""


class SolanaIncompleteAnswerError(SettlementError):
    """More signatures than the page budget allows: the list would be partial, so UNKNOWN."""


@dataclass(frozen=True)
class Answer(Generic[T]):
    """Tri-state at the boundary: `known` with a value (possibly "not found"), or an error."""

    value: T | None = None
    error: SettlementError | None = None

    @property
    def known(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class AccountFacts:
    """What getAccountInfo tells of an account: the program owning it, and if it is one."""

    owner: str
    executable: bool


@dataclass(frozen=True)
class SignatureInfo:
    """One entry of getSignaturesForAddress, newest first in a list."""

    signature: str
    slot: int
    failed: bool
    block_time: datetime | None


@dataclass(frozen=True)
class SigStatus:
    """getSignatureStatuses' view of one signature: the only source of commitment we trust."""

    slot: int
    failed: bool
    commitment: str | None  # "processed" | "confirmed" | "finalized"
    confirmations: int | None  # None once finalized


@dataclass(frozen=True)
class TokenBalance:
    account_index: int
    mint: str
    owner: str | None
    amount_base_units: int  # the raw integer `amount`, never uiAmount


@dataclass(frozen=True)
class Instruction:
    program: str
    accounts: tuple[str, ...]
    data: bytes


@dataclass(frozen=True)
class ChainTransaction:
    """A transaction as the validators need it: keys resolved, balances as raw integers."""

    signature: str
    slot: int
    failed: bool
    version: str  # "legacy" | "0"
    account_keys: tuple[str, ...]  # static keys, then loaded writable, then loaded readonly
    instructions: tuple[Instruction, ...]
    pre_token_balances: tuple[TokenBalance, ...]
    post_token_balances: tuple[TokenBalance, ...]


@dataclass
class CallStats:
    """HTTP requests made per JSON-RPC method (retries included), for the benchmark and logs."""

    calls: Counter[str] = field(default_factory=Counter)

    @property
    def total(self) -> int:
        return sum(self.calls.values())


class SolanaRpc:
    """An async Solana JSON-RPC client; use as `async with SolanaRpc(url) as rpc:`."""

    def __init__(
        self,
        url: str,
        *,
        timeout_seconds: float = 5.0,
        attempts: int = 3,
        backoff_seconds: float = 0.2,
        stats: CallStats | None = None,
    ) -> None:
        self.url = url
        self.timeout_seconds = timeout_seconds
        self.attempts = max(1, attempts)
        self.backoff_seconds = backoff_seconds
        self.stats = stats if stats is not None else CallStats()
        self._client: AsyncClient | None = None

    async def __aenter__(self) -> SolanaRpc:
        # solana-py's own transport retry is off: this class decides what to retry, and counts.
        self._client = AsyncClient(
            self.url,
            commitment=Confirmed,
            timeout=self.timeout_seconds,
            http2=False,
            max_transport_retries=0,
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None

    @property
    def client(self) -> AsyncClient:
        if self._client is None:
            raise RuntimeError("use SolanaRpc inside `async with`")
        return self._client

    # --- queries ----------------------------------------------------------------------------
    async def signatures_for_address(
        self,
        address: str,
        until: str | None = None,
        *,
        max_pages: int = MAX_PAGES,
        not_before: datetime | None = None,
    ) -> Answer[list[SignatureInfo]]:
        """Every signature touching `address` newer than `until` (all when None), newest first.

        Pages of 1,000 are read with `before` until a page is short or `until` shows up; an
        entry whose block time is before `not_before` ends the read too (everything after it
        is older still). Needing more than `max_pages` pages is an error: a partial list is
        unknown, never "nothing else".
        """
        try:
            return Answer(await self._signatures(address, until, max_pages, not_before))
        except SettlementError as exc:
            return Answer(error=exc)

    async def account_owner(self, address: str) -> Answer[str | None]:
        """The program owning the account (None: no such account), e.g. a mint's token program."""
        try:
            key = Pubkey.from_string(address)
            resp = await self._call("getAccountInfo", lambda: self.client.get_account_info(key))
        except SettlementError as exc:
            return Answer(error=exc)
        return Answer(None if resp.value is None else str(resp.value.owner))

    async def account_facts(self, address: str) -> Answer[AccountFacts | None]:
        """The account's owner program and whether it is a program (None: no such account)."""
        try:
            key = Pubkey.from_string(address)
            resp = await self._call("getAccountInfo", lambda: self.client.get_account_info(key))
        except SettlementError as exc:
            return Answer(error=exc)
        if resp.value is None:
            return Answer(None)
        return Answer(AccountFacts(str(resp.value.owner), bool(resp.value.executable)))

    async def signature_statuses(self, signatures: Sequence[str]) -> Answer[dict[str, SigStatus]]:
        """Status of each signature the node knows (unknown ones are absent: "not found yet")."""
        found: dict[str, SigStatus] = {}
        try:
            for start in range(0, len(signatures), MAX_STATUSES_PER_CALL):
                batch = list(signatures[start : start + MAX_STATUSES_PER_CALL])
                found.update(await self._statuses(batch))
        except SettlementError as exc:
            return Answer(error=exc)
        return Answer(found)

    async def transaction(self, signature: str) -> Answer[ChainTransaction | None]:
        """The transaction (None: the node does not have it, e.g. not yet or history lost)."""
        try:
            return Answer(await self._transaction(signature))
        except SettlementError as exc:
            return Answer(error=exc)

    # --- the calls --------------------------------------------------------------------------
    async def _signatures(
        self, address: str, until: str | None, max_pages: int, not_before: datetime | None
    ) -> list[SignatureInfo]:
        key = Pubkey.from_string(address)
        until_sig = Signature.from_string(until) if until else None
        result: list[SignatureInfo] = []
        before: Signature | None = None
        for _ in range(max(1, max_pages)):
            resp = await self._call(
                "getSignaturesForAddress",
                functools.partial(
                    self.client.get_signatures_for_address,
                    key,
                    before=before,
                    until=until_sig,
                    limit=MAX_SIGNATURES_PER_PAGE,
                    commitment=Confirmed,
                ),
            )
            page = resp.value
            for item in page:
                signature = str(item.signature)
                if signature == until:
                    return result  # a node that overlooks `until`: the rest was read before
                block_time = None
                if item.block_time is not None and item.block_time >= _MIN_PLAUSIBLE_UNIX_TIME:
                    block_time = datetime.fromtimestamp(item.block_time, UTC)
                if not_before is not None and block_time is not None and block_time < not_before:
                    return result  # newest first: everything further is older still
                result.append(SignatureInfo(signature, item.slot, item.err is not None, block_time))
            if len(page) < MAX_SIGNATURES_PER_PAGE:
                return result
            before = page[-1].signature
        raise SolanaIncompleteAnswerError(
            f"getSignaturesForAddress({address}) has more than {len(result)} signatures "
            f"since {until or 'the start'}; a partial list is unknown"
        )

    async def _statuses(self, batch: list[str]) -> dict[str, SigStatus]:
        sigs = [Signature.from_string(s) for s in batch]
        resp = await self._call(
            "getSignatureStatuses",
            # History search: a payment we first saw long ago has left the status cache.
            lambda: self.client.get_signature_statuses(sigs, search_transaction_history=True),
        )
        found: dict[str, SigStatus] = {}
        for sig, status in zip(batch, resp.value, strict=True):
            if status is None:
                continue
            found[sig] = SigStatus(
                status.slot,
                status.err is not None,
                _commitment(status.confirmation_status),
                status.confirmations,
            )
        return found

    async def _transaction(self, signature: str) -> ChainTransaction | None:
        sig = Signature.from_string(signature)
        resp = await self._call(
            "getTransaction",
            lambda: self.client.get_transaction(
                sig, "base64", Confirmed, max_supported_transaction_version=0
            ),
        )
        if resp.value is None:
            return None
        try:
            return _read_transaction(signature, resp.value)
        except (AttributeError, TypeError, ValueError, IndexError) as exc:
            raise SolanaMalformedAnswerError(
                f"getTransaction({signature}) returned an unreadable transaction: {exc}"
            ) from exc

    async def _call(self, method: str, request: Callable[[], Awaitable[T]]) -> T:
        """One JSON-RPC call with retries; raises a typed SettlementError when it stays unknown."""
        delay = self.backoff_seconds
        last: SettlementError | None = None
        for attempt in range(1, self.attempts + 1):
            self.stats.calls[method] += 1
            try:
                return await request()
            except RPCException as exc:
                error = exc.args[0] if exc.args else exc
                name = type(error).__name__
                message = str(getattr(error, "message", error))
                if name not in _RETRYABLE_CODES:
                    raise SolanaRpcError(_FINAL_CODES.get(name, 0), f"{method}: {message}") from exc
                last = SolanaRpcError(_RETRYABLE_CODES[name], f"{method}: {message}")
            except RPCNoResultException as exc:
                last = SolanaMalformedAnswerError(f"{method} returned no result: {exc}")
            except SolanaRpcException as exc:
                last = SolanaUnavailableError(f"{method} to {self.url}: {_transport_reason(exc)}")
            except (ValueError, SerdeJSONError) as exc:  # not the documented JSON (proxy page…)
                last = SolanaMalformedAnswerError(f"{method} returned an unreadable answer: {exc}")
            except BaseException as exc:
                # solders' parser panics (pyo3 PanicException, a BaseException) on some
                # off-spec answers, e.g. error -32005 without its `data`: unknown, not a crash.
                if type(exc).__name__ != "PanicException":
                    raise
                last = SolanaMalformedAnswerError(f"{method} returned an off-spec answer: {exc}")
            if attempt < self.attempts:
                await asyncio.sleep(delay)
                delay *= 2
        assert last is not None
        log.debug("giving up on %s after %d attempts: %s", method, self.attempts, last)
        raise last


def _transport_reason(exc: SolanaRpcException) -> str:
    cause = exc.__cause__
    if isinstance(cause, httpx2.TimeoutException):
        return "timed out"
    if isinstance(cause, httpx2.HTTPStatusError):
        return f"HTTP {cause.response.status_code}"
    if isinstance(cause, httpx2.ConnectError):
        return "connection refused or unreachable"
    return type(cause).__name__ if cause is not None else str(exc)


def _token_balances(raw: object) -> tuple[TokenBalance, ...]:
    if not raw:
        return ()
    balances: list[TokenBalance] = []
    for item in raw:  # type: ignore[attr-defined]
        owner = getattr(item, "owner", None)
        balances.append(
            TokenBalance(
                int(item.account_index),
                str(item.mint),
                None if owner is None else str(owner),
                int(item.ui_token_amount.amount),
            )
        )
    return tuple(balances)


def _read_transaction(signature: str, value: object) -> ChainTransaction:
    """Flatten solders' EncodedConfirmedTransactionWithStatusMeta into a ChainTransaction."""
    encoded = value.transaction  # type: ignore[attr-defined]
    tx = encoded.transaction
    if not isinstance(tx, VersionedTransaction):
        raise ValueError("expected a base64-encoded transaction")
    meta = encoded.meta
    if meta is None:
        # Without meta neither success nor amounts can be proven: unknown, read it again later.
        raise ValueError("the transaction has no status meta")
    message = tx.message
    keys = [str(k) for k in message.account_keys]
    version = "legacy"
    if isinstance(message, MessageV0):
        version = "0"
        loaded = meta.loaded_addresses
        if loaded is not None:
            keys += [str(k) for k in loaded.writable] + [str(k) for k in loaded.readonly]
    elif not isinstance(message, Message):
        raise ValueError(f"unknown message type {type(message).__name__}")
    instructions = tuple(
        Instruction(
            keys[ix.program_id_index],
            tuple(keys[i] for i in bytes(ix.accounts)),
            bytes(ix.data),
        )
        for ix in message.instructions
    )
    return ChainTransaction(
        signature=signature,
        slot=int(value.slot),  # type: ignore[attr-defined]
        failed=meta.err is not None,
        version=version,
        account_keys=tuple(keys),
        instructions=instructions,
        pre_token_balances=_token_balances(meta.pre_token_balances),
        post_token_balances=_token_balances(meta.post_token_balances),
    )
