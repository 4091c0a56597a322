"""`/healthz`: is the database reachable, is Redis reachable, is the schema current, and is each
worker duty's heartbeat fresh (see settlement.duty_health and the README for the JSON)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from merchant_portal.context import coordinator, runtime
from pos.db import utcnow
from pos.errors import CoordinationUnavailableError
from pos.migrate import is_current
from settlement.duty_health import duty_health

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> tuple[dict[str, Any], int]:
    rt = runtime()
    database = "ok"
    try:
        with rt.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        if not is_current(rt.engine, rt.settings.database_url):
            database = "schema out of date: run `cryptocity db upgrade`"
    except SQLAlchemyError as exc:
        database = f"unreachable: {type(exc).__name__}"
    redis_status = "ok" if coordinator().ping() else "unreachable"
    workers: dict[str, Any] = {"workers": None, "duties": {}, "stale_duties": []}
    failing: list[str] = []
    if redis_status == "ok":
        try:
            report = duty_health(coordinator(), utcnow())
            workers, failing = report.as_json(), report.failing
        except CoordinationUnavailableError:
            redis_status = "unreachable"
    healthy = database == "ok" and redis_status == "ok" and not failing
    status = (
        "ok" if healthy and not workers["stale_duties"] else "warning" if healthy else "degraded"
    )
    body = {
        "status": status,
        "database": database,
        "redis": redis_status,
        "mode": rt.settings.mode.value,
        **workers,
    }
    return body, 200 if healthy else 503
