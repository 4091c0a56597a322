"""Redis: live invoice state, the event stream, the watch index, leases, the rate cache.

Redis coordinates; the database records. Everything here can be rebuilt from the database
(`pos.invoices.rebuild_live_state`), so a flush or restart of Redis loses nothing.

Keys (prefix `cc:`; per-invoice keys carry a `{hash tag}` so a cluster keeps them together):
  cc:inv:{<id>}      hash  live snapshot: status, version, paid, due, flags, … and `streamed`,
                           the highest event version already appended to the stream
  cc:events          stream of invoice events (consumer groups: ledger, webhooks, live pages)
  cc:watch:btc       hash  address   -> invoice id
  cc:watch:kzte      hash  reference -> invoice id
  cc:epoch           set by a rebuild; its absence tells the worker that Redis was flushed
  cc:lease:<name>    the holder of a single-leader job; cc:fence:<name> its fencing counter
                     (never below the caller's floor from the database; see acquire_lease)
  cc:heartbeat       hash  worker duty name -> ISO-8601 UTC time of its last successful run
                           (any worker; a duty that fails or is not due keeps its old time)
  cc:rate:<pair>     the last rate quote (JSON)
  cc:watermark:<m>   when the method's watcher last had a complete view of its chain
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.retry import Retry

from pos.errors import CoordinationUnavailableError
from pos.rates import RateQuote
from pos.redis_guard import CircuitBreaker, guarded_connection_class

log = logging.getLogger(__name__)

EVENT_STREAM = "cc:events"
EPOCH_KEY = "cc:epoch"
HEARTBEAT_KEY = "cc:heartbeat"
STREAM_MAXLEN = 1_000_000  # approximate; consumers replay older events from the database
TERMINAL_TTL_SECONDS = 7 * 86_400  # live state of closed invoices is kept a week for pages


def invoice_key(invoice_id: str) -> str:
    return f"cc:inv:{{{invoice_id}}}"


def watch_key(method: str) -> str:
    return f"cc:watch:{method}"


# Atomically: move the live snapshot forward (never back) and append the event to the stream
# exactly once per (invoice, version). KEYS: invoice hash, stream.
# ARGV: event version, snapshot version, ttl seconds (0 = keep), maxlen, n event fields*2, …
_APPLY_EVENT_LUA = """
local ev_version = tonumber(ARGV[1])
local snap_version = tonumber(ARGV[2])
local ttl = tonumber(ARGV[3])
local maxlen = ARGV[4]
local n_event = tonumber(ARGV[5])
local current = tonumber(redis.call('HGET', KEYS[1], 'version') or '0')
local streamed = tonumber(redis.call('HGET', KEYS[1], 'streamed') or '0')
local result = 0
if snap_version > current then
  local i = 6 + n_event * 2
  while i <= #ARGV do
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
    i = i + 2
  end
  redis.call('HSET', KEYS[1], 'version', snap_version)
  if ttl > 0 then redis.call('EXPIRE', KEYS[1], ttl) else redis.call('PERSIST', KEYS[1]) end
  result = result + 1
end
if ev_version > streamed then
  local fields = {}
  for j = 6, 5 + n_event * 2 do fields[#fields + 1] = ARGV[j] end
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', maxlen, '*', unpack(fields))
  redis.call('HSET', KEYS[1], 'streamed', ev_version)
  result = result + 2
end
return result
"""

# Take or renew a lease; a new holder gets a larger fencing token than any before it.
# ARGV: holder, ttl ms, floor. The token is always above `floor` — the highest token the
# database has recorded — so a flushed or restarted Redis (counter gone) never hands out a
# token a stale writer already used, and never one the database would refuse.
_ACQUIRE_LEASE_LUA = """
local floor = tonumber(ARGV[3] or '0')
local holder = redis.call('GET', KEYS[1])
local token
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  token = tonumber(redis.call('GET', KEYS[2]) or '0')
elseif holder then
  return -1
else
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  token = redis.call('INCR', KEYS[2])
end
if token <= floor then
  token = floor + 1
  redis.call('SET', KEYS[2], token)
end
return token
"""

# A fixed-window counter that works on Redis 6.2 too (EXPIRE … NX needs 7.0).
_COUNT_IN_WINDOW_LUA = """
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return n
"""

# Compare-and-delete: a holder whose lease already passed to another never deletes theirs.
_RELEASE_LEASE_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def _apply_argv(
    event_version: int,
    event_fields: Mapping[str, str],
    snapshot: Mapping[str, str],
    snapshot_version: int,
    terminal: bool,
) -> list[str | int]:
    """The ARGV of the apply-event script (see its comment)."""
    argv: list[str | int] = [
        event_version,
        snapshot_version,
        TERMINAL_TTL_SECONDS if terminal else 0,
        STREAM_MAXLEN,
        len(event_fields),
    ]
    for key, value in event_fields.items():
        argv += [key, value]
    for key, value in snapshot.items():
        argv += [key, value]
    return argv


SOCKET_TIMEOUT_SECONDS = 3.0  # one call outside a web request (workers, CLI)


POOL_CONNECTIONS = 100  # per process and client; callers beyond it wait their turn


def connect(
    url: str,
    socket_timeout: float = SOCKET_TIMEOUT_SECONDS,
    breaker: CircuitBreaker | None = None,
) -> redis.Redis:
    """A client that fails fast when Redis hangs (see pos.redis_guard).

    Each call waits at most `socket_timeout`, inside a web request at most what is left of
    the request's Redis budget; after a timeout the client's breaker skips Redis for a short
    cool-down. A dropped connection (Redis restarted) is retried once at once; a timeout never
    is — a retry would only wait again. Set explicitly: redis-py's own default differs between
    `Redis()` (10 retries with back-off) and `from_url` (none).

    The pool blocks (at most `socket_timeout`) when all its connections are busy instead of
    failing: a web worker's thousands of live-page greenlets share `POOL_CONNECTIONS`, where
    redis-py's default pool refuses the 101st caller with "Too many connections".
    """
    pool = redis.BlockingConnectionPool.from_url(
        url,
        max_connections=POOL_CONNECTIONS,
        timeout=socket_timeout,
        decode_responses=True,
        socket_timeout=socket_timeout,
        socket_connect_timeout=socket_timeout,
        health_check_interval=30,
        retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
        connection_class=guarded_connection_class(url),
        cc_breaker=breaker or CircuitBreaker(),
    )
    return redis.Redis.from_pool(pool)


class Coordinator:
    """Typed access to everything the web tier and the workers share through Redis."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self._apply = client.register_script(_APPLY_EVENT_LUA)
        self._acquire = client.register_script(_ACQUIRE_LEASE_LUA)
        self._release = client.register_script(_RELEASE_LEASE_LUA)
        self._count = client.register_script(_COUNT_IN_WINDOW_LUA)
        self._held: set[tuple[str, str]] = set()  # leases acquired here, for a graceful stop

    # --- health -----------------------------------------------------------------------------
    def ping(self) -> bool:
        try:
            return bool(self.client.ping())
        except RedisError:
            return False

    # --- live state and the stream ----------------------------------------------------------
    def apply_event(
        self,
        invoice_id: str,
        event_version: int,
        event_fields: Mapping[str, str],
        snapshot: Mapping[str, str],
        snapshot_version: int,
        terminal: bool,
    ) -> tuple[bool, bool]:
        """Mirror an event: (snapshot moved forward?, event appended to the stream?)."""
        argv = _apply_argv(event_version, event_fields, snapshot, snapshot_version, terminal)
        try:
            result = int(self._apply(keys=[invoice_key(invoice_id), EVENT_STREAM], args=argv))
        except RedisError as exc:
            raise CoordinationUnavailableError(f"Redis is unavailable: {exc}") from exc
        return bool(result & 1), bool(result & 2)

    def apply_events(
        self, batch: Sequence[tuple[str, int, Mapping[str, str], Mapping[str, str], int, bool]]
    ) -> None:
        """`apply_event` for many events in one pipeline, in order (same guarantees each)."""
        pipe = self.client.pipeline(transaction=False)
        for invoice_id, event_version, event_fields, snapshot, snapshot_version, terminal in batch:
            argv = _apply_argv(event_version, event_fields, snapshot, snapshot_version, terminal)
            self._apply(keys=[invoice_key(invoice_id), EVENT_STREAM], args=argv, client=pipe)
        self._run(pipe)

    def put_snapshot(
        self,
        invoice_id: str,
        snapshot: Mapping[str, str],
        version: int,
        streamed: int,
        terminal: bool,
    ) -> None:
        """Overwrite the live snapshot during a rebuild (the database is the truth)."""
        key = invoice_key(invoice_id)
        pipe = self.client.pipeline(transaction=True)
        pipe.delete(key)
        fields = {**snapshot, "version": str(version), "streamed": str(streamed)}
        pipe.hset(key, mapping=fields)  # type: ignore[arg-type]  # redis-py's Mapping is invariant
        if terminal:
            pipe.expire(key, TERMINAL_TTL_SECONDS)
        self._run(pipe)

    def get_live(self, invoice_id: str) -> dict[str, str] | None:
        try:
            data: dict[str, str] = self.client.hgetall(invoice_key(invoice_id))  # type: ignore[assignment]
        except RedisError as exc:
            raise CoordinationUnavailableError(f"Redis is unavailable: {exc}") from exc
        return data or None

    # --- watch index ------------------------------------------------------------------------
    def watch(self, method: str, key: str, invoice_id: str) -> None:
        self._call(lambda: self.client.hset(watch_key(method), key, invoice_id))

    def watch_many(self, method: str, mapping: Mapping[str, str]) -> None:
        if mapping:
            fields = dict(mapping)
            # redis-py types `mapping` as an invariant Mapping of bytes|str|…; str is fine.
            self._call(lambda: self.client.hset(watch_key(method), mapping=fields))  # type: ignore[arg-type]

    def unwatch(self, method: str, keys: Sequence[str]) -> None:
        if keys:
            self._call(lambda: self.client.hdel(watch_key(method), *keys))

    def lookup(self, method: str, keys: Sequence[str]) -> dict[str, str]:
        """Which of these addresses / references belong to watched invoices."""
        if not keys:
            return {}
        values = self._call(lambda: self.client.hmget(watch_key(method), list(keys)))
        return {k: v for k, v in zip(keys, values, strict=True) if v is not None}

    def watched_count(self, method: str) -> int:
        return int(self._call(lambda: self.client.hlen(watch_key(method))))

    # --- flush detection --------------------------------------------------------------------
    def epoch(self) -> str | None:
        value = self._call(lambda: self.client.get(EPOCH_KEY))
        return None if value is None else str(value)

    def set_epoch(self, value: str) -> None:
        self._call(lambda: self.client.set(EPOCH_KEY, value))

    # --- watermarks: "this watcher had a complete view of its chain at time T" ---------------
    def set_watermark(self, method: str, at: datetime) -> None:
        self._call(lambda: self.client.set(f"cc:watermark:{method}", at.isoformat()))

    def watermark(self, method: str) -> datetime | None:
        raw = self._call(lambda: self.client.get(f"cc:watermark:{method}"))
        return None if raw is None else datetime.fromisoformat(str(raw))

    # --- leases -----------------------------------------------------------------------------
    def acquire_lease(self, name: str, holder: str, ttl_ms: int, floor: int = 0) -> int | None:
        """The fencing token if `holder` now leads `name`, else None.

        `floor` is the highest token the durable record has seen for this lease (e.g.
        `chain_cursors.fence`): the token returned is always above it, even after Redis lost
        its counter. Leases taken through this object are remembered for `release_leases`.
        """
        token = int(
            self._call(
                lambda: self._acquire(
                    keys=[f"cc:lease:{name}", f"cc:fence:{name}"], args=[holder, ttl_ms, floor]
                )
            )
        )
        if token < 0:
            self._held.discard((name, holder))
            return None
        self._held.add((name, holder))
        return token

    def release_lease(self, name: str, holder: str) -> bool:
        """Give the lease up if `holder` still has it (True); never deletes another's lease."""
        self._held.discard((name, holder))
        return bool(self._call(lambda: self._release(keys=[f"cc:lease:{name}"], args=[holder])))

    def held_leases(self) -> list[tuple[str, str]]:
        """(name, holder) of every lease this object acquired and has not released."""
        return sorted(self._held)

    def release_leases(self) -> int:
        """Release every lease taken through this object (a graceful stop); how many were ours.

        Each release is a compare-and-delete, so a lease that already passed to another
        worker stays theirs. A new leader then takes over at once instead of after the TTL.
        """
        released = 0
        for name, holder in self.held_leases():
            released += self.release_lease(name, holder)
        return released

    # --- heartbeats (for /healthz) ----------------------------------------------------------
    def record_heartbeats(self, at: datetime, duties: Iterable[str]) -> None:
        """Note that these worker duties just ran successfully (`cc:heartbeat`)."""
        fields = {name: at.isoformat() for name in duties}
        if fields:
            # redis-py types `mapping` as an invariant Mapping of bytes|str|…; str is fine.
            self._call(lambda: self.client.hset(HEARTBEAT_KEY, mapping=fields))  # type: ignore[arg-type]

    def heartbeats(self) -> dict[str, datetime]:
        """Duty name -> when it last ran successfully in any worker."""
        raw: dict[str, str] = self._call(lambda: self.client.hgetall(HEARTBEAT_KEY))
        return {name: datetime.fromisoformat(at) for name, at in raw.items()}

    # --- rate limits ------------------------------------------------------------------------
    def count_in_window(self, key: str, window_seconds: int) -> int:
        """Add one to a counter that resets `window_seconds` after its first hit."""
        return int(self._call(lambda: self._count(keys=[key], args=[window_seconds])))

    def window_count(self, key: str) -> tuple[int, int]:
        """(hits so far, seconds until the window resets)."""
        pipe = self.client.pipeline()
        pipe.get(key)
        pipe.ttl(key)
        hits, ttl = self._run(pipe)
        return int(hits or 0), max(int(ttl), 0)

    # --- rates ------------------------------------------------------------------------------
    def cached_rate(self, pair: str) -> RateQuote | None:
        try:
            raw = self.client.get(f"cc:rate:{pair}")
        except RedisError:
            return None  # a missing cache only means asking the sources again
        return None if raw is None else RateQuote.from_json(str(raw))

    def cache_rate(self, quote: RateQuote, ttl_seconds: int) -> None:
        try:
            self.client.set(f"cc:rate:{quote.pair}", quote.to_json(), ex=ttl_seconds)
        except RedisError as exc:
            log.warning("could not cache rate: %s", exc)

    # --- stream reading (live pages) --------------------------------------------------------
    def read_events(
        self, last_id: str, block_ms: int, count: int = 100
    ) -> list[tuple[str, dict[str, str]]]:
        result = self._call(
            lambda: self.client.xread({EVENT_STREAM: last_id}, count=count, block=block_ms)
        )
        entries: list[tuple[str, dict[str, str]]] = []
        for _stream, items in result or []:
            entries.extend(items)
        return entries

    # --- helpers ----------------------------------------------------------------------------
    def _call(self, fn: Any) -> Any:
        try:
            return fn()
        except RedisError as exc:
            raise CoordinationUnavailableError(f"Redis is unavailable: {exc}") from exc

    def _run(self, pipe: Any) -> list[Any]:
        return self._call(pipe.execute)  # type: ignore[no-any-return]


def chunked(items: Iterable[Any], size: int) -> Iterable[list[Any]]:
    batch: list[Any] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
