"""`/healthz`: is the database reachable, is Redis reachable, is the schema current."""

from __future__ import annotations

from flask import Blueprint
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from merchant_portal.context import coordinator, runtime
from pos.migrate import is_current

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> tuple[dict[str, str], int]:
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
    healthy = database == "ok" and redis_status == "ok"
    body = {
        "status": "ok" if healthy else "degraded",
        "database": database,
        "redis": redis_status,
        "mode": rt.settings.mode.value,
    }
    return body, 200 if healthy else 503
