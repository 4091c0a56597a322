"""Which duties the running workers run, and whether each one's heartbeat is fresh (/healthz).

Each worker registers its duty schedule in Redis (`cc:workers`, a hash: worker -> JSON with
the duties' intervals and an expiry a little beyond its next refresh); each successful run of a
duty refreshes `cc:heartbeat` (see pos.coordination). A duty is *stale* when its last heartbeat
(in any worker) is older than `stale_after_seconds`: `STALE_INTERVALS` of its intervals, at
least `MIN_STALE_SECONDS`. An *essential* duty depends only on our own database and Redis
(rebuild, relay, expiry, ledger posting): its staleness means the worker itself is stuck, and
fails the health check. The others wait on the outside world (chain nodes, webhook receivers,
rate sources): their staleness is reported, and the check still passes.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from redis.exceptions import RedisError

from pos.coordination import Coordinator
from pos.errors import CoordinationUnavailableError

log = logging.getLogger(__name__)

WORKERS_KEY = "cc:workers"
REGISTER_EVERY_SECONDS = 10.0
REGISTRATION_TTL = timedelta(seconds=30)  # a worker killed without a goodbye drops out then
STALE_INTERVALS = 5
MIN_STALE_SECONDS = 15.0


@dataclass(frozen=True)
class DutySpec:
    """What /healthz needs to know about a duty."""

    name: str
    interval_seconds: float
    essential: bool

    @property
    def stale_after_seconds(self) -> float:
        return max(self.interval_seconds * STALE_INTERVALS, MIN_STALE_SECONDS)


def register(
    coordinator: Coordinator,
    holder: str,
    duties: Iterable[DutySpec],
    started_at: datetime,
    now: datetime,
) -> None:
    """Announce (or refresh) this worker's schedule; drop registrations that expired."""
    entry = {
        "started_at": started_at.isoformat(),
        "expires_at": (now + REGISTRATION_TTL).isoformat(),
        "duties": [
            {"name": d.name, "interval_seconds": d.interval_seconds, "essential": d.essential}
            for d in duties
        ],
    }
    try:
        expired = [h for h, e in _registrations(coordinator).items() if _expired(e, now)]
        pipe = coordinator.client.pipeline(transaction=False)
        if expired:
            pipe.hdel(WORKERS_KEY, *expired)
        pipe.hset(WORKERS_KEY, holder, json.dumps(entry))
        pipe.execute()
    except RedisError as exc:
        raise CoordinationUnavailableError(f"Redis is unavailable: {exc}") from exc


def unregister(coordinator: Coordinator, holder: str) -> None:
    """A graceful stop: this worker's duties are no longer expected to beat."""
    try:
        coordinator.client.hdel(WORKERS_KEY, holder)
    except RedisError as exc:
        raise CoordinationUnavailableError(f"Redis is unavailable: {exc}") from exc


def _registrations(coordinator: Coordinator) -> dict[str, dict[str, Any]]:
    raw: dict[str, str] = coordinator.client.hgetall(WORKERS_KEY)  # type: ignore[assignment]
    entries: dict[str, dict[str, Any]] = {}
    for holder, text in raw.items():
        try:
            entries[holder] = json.loads(text)
        except ValueError:
            log.warning("unreadable worker registration for %s in %s", holder, WORKERS_KEY)
    return entries


def _expired(entry: dict[str, Any], now: datetime) -> bool:
    try:
        return datetime.fromisoformat(str(entry["expires_at"])) < now
    except (KeyError, ValueError):
        return True


@dataclass(frozen=True)
class DutyHealth:
    workers: int
    duties: dict[str, dict[str, Any]]
    stale: list[str]
    failing: list[str]  # stale essential duties: the health check fails

    def as_json(self) -> dict[str, Any]:
        return {"workers": self.workers, "duties": self.duties, "stale_duties": self.stale}


def duty_health(coordinator: Coordinator, now: datetime) -> DutyHealth:
    """Each registered duty's last heartbeat, its age and whether it is stale.

    Raises CoordinationUnavailableError when Redis does not answer.
    """
    try:
        live = {h: e for h, e in _registrations(coordinator).items() if not _expired(e, now)}
    except RedisError as exc:
        raise CoordinationUnavailableError(f"Redis is unavailable: {exc}") from exc
    beats = coordinator.heartbeats()
    specs: dict[str, DutySpec] = {}
    since: dict[str, datetime] = {}  # a duty never run yet counts from its worker's start
    for entry in live.values():
        started = datetime.fromisoformat(str(entry.get("started_at", now.isoformat())))
        for raw in entry.get("duties", []):
            spec = DutySpec(
                str(raw["name"]), float(raw["interval_seconds"]), bool(raw["essential"])
            )
            known = specs.get(spec.name)
            if known is not None:  # workers of different versions: the stricter view wins
                spec = DutySpec(
                    spec.name,
                    min(spec.interval_seconds, known.interval_seconds),
                    spec.essential or known.essential,
                )
            specs[spec.name] = spec
            since[spec.name] = min(since.get(spec.name, started), started)
    duties: dict[str, dict[str, Any]] = {}
    stale: list[str] = []
    failing: list[str] = []
    for name in sorted(specs):
        spec = specs[name]
        last = beats.get(name)
        age = (now - (last or since[name])).total_seconds()
        is_stale = age > spec.stale_after_seconds
        duties[name] = {
            "last_run": last.isoformat() if last else None,
            "age_seconds": round(max(age, 0.0), 1),
            "interval_seconds": spec.interval_seconds,
            "stale_after_seconds": spec.stale_after_seconds,
            "essential": spec.essential,
            "stale": is_stale,
        }
        if is_stale:
            stale.append(name)
            if spec.essential:
                failing.append(name)
    return DutyHealth(len(live), duties, stale, failing)
