"""Caps on open live pages (SSE streams) per client address and per invoice, across processes.

Each open stream is a member of two Redis sorted sets, one per client address and one per
invoice, scored with the moment it stops counting (the stream's lifetime plus a margin, in
Redis' own clock). A stream that ends removes itself; one whose process was killed simply
expires, so a crash never leaks a slot for longer than one stream lifetime. Checking and
taking a slot is one Lua script: two pages racing for the last slot cannot both get it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from enum import StrEnum

from redis.exceptions import RedisError

from pos.coordination import Coordinator
from pos.errors import CoordinationUnavailableError

EXPIRY_MARGIN_SECONDS = 30

_TAKE_SLOT_LUA = """
local now = tonumber(redis.call('TIME')[1])
local until_ts = now + tonumber(ARGV[2])
for i = 1, 2 do redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now) end
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then return 1 end
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[4]) then return 2 end
for i = 1, 2 do
  redis.call('ZADD', KEYS[i], until_ts, ARGV[1])
  redis.call('EXPIRE', KEYS[i], tonumber(ARGV[2]))
end
return 0
"""


class Refusal(StrEnum):
    """Why a stream was refused (the page polls status.json instead)."""

    PER_IP = "per_ip"
    PER_INVOICE = "per_invoice"


def ip_key(client_ip: str) -> str:
    return f"cc:sse:ip:{client_ip}"


def invoice_key(invoice_id: str) -> str:
    return f"cc:sse:inv:{invoice_id}"


@dataclass(frozen=True)
class StreamSlot:
    """One open stream's place in both counts; `release` is idempotent."""

    coordinator: Coordinator
    keys: tuple[str, str]
    member: str

    def release(self) -> None:
        try:
            pipe = self.coordinator.client.pipeline(transaction=False)
            for key in self.keys:
                pipe.zrem(key, self.member)
            pipe.execute()
        except RedisError:
            pass  # Redis is gone: the member expires by itself (the reason for the scores)


def take_slot(
    coordinator: Coordinator,
    client_ip: str,
    invoice_id: str,
    per_ip: int,
    per_invoice: int,
    lifetime_seconds: float,
    margin_seconds: int = EXPIRY_MARGIN_SECONDS,
) -> StreamSlot | Refusal:
    """A slot for one more stream, or why there is none.

    Raises CoordinationUnavailableError when Redis does not answer (the caller decides).
    """
    keys = (ip_key(client_ip), invoice_key(invoice_id))
    member = uuid.uuid4().hex
    ttl = max(int(lifetime_seconds) + margin_seconds, 1)
    try:
        verdict = int(
            coordinator.client.eval(_TAKE_SLOT_LUA, 2, *keys, member, ttl, per_ip, per_invoice)
        )
    except RedisError as exc:
        raise CoordinationUnavailableError(f"Redis is unavailable: {exc}") from exc
    if verdict == 1:
        return Refusal.PER_IP
    if verdict == 2:
        return Refusal.PER_INVOICE
    return StreamSlot(coordinator, keys, member)
