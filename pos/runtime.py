"""Opens the connections a program needs, from `Settings`, with one clear error per failure."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field

from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from pos.coordination import Coordinator, connect
from pos.db import make_engine, make_session_factory
from pos.errors import ConfigError
from pos.migrate import is_current
from pos.rates import RateBook
from pos.redis_server import EmbeddedRedis
from pos.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    settings: Settings
    engine: Engine
    session_factory: sessionmaker[Session]
    coordinator: Coordinator
    rates: RateBook
    redis_url: str
    # Demo mode's server in the data dir: watched, restarted when gone, never stopped here
    # (it outlives every program but `cryptocity demo`, which owns and stops it).
    embedded_redis: EmbeddedRedis | None = field(default=None)
    _supervisor_stop: threading.Event = field(default_factory=threading.Event)

    def revive_redis(self) -> bool:
        """Restart the embedded Redis if it stopped answering; True if it was restarted.

        Without an embedded server (REDIS_URL set by the operator) there is nothing to do:
        the operator's Redis is the operator's to run.
        """
        embedded = self.embedded_redis
        if embedded is None or embedded.alive():
            return False
        log.warning("the embedded Redis is gone: restarting it in %s", embedded.directory)
        try:
            embedded.start()
        except ConfigError as exc:
            log.error("could not restart the embedded Redis: %s", exc)
            return False
        log.info("the embedded Redis answers again")
        return True

    def supervise_redis(self, interval_seconds: float = 2.0) -> None:
        """Check the embedded Redis every so often in a daemon thread (long-running programs)."""
        if self.embedded_redis is None:
            return

        def watch() -> None:
            while not self._supervisor_stop.wait(interval_seconds):
                self.revive_redis()

        threading.Thread(target=watch, name="embedded-redis-supervisor", daemon=True).start()

    def close(self) -> None:
        self._supervisor_stop.set()
        self.coordinator.client.close()
        self.engine.dispose()


def open_database(settings: Settings, check_schema: bool = True) -> Engine:
    engine = make_engine(settings.database_url)
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        if check_schema and not is_current(engine, settings.database_url):
            raise ConfigError("the database schema is not up to date: run `cryptocity db upgrade`")
    except (OperationalError, DBAPIError) as exc:
        engine.dispose()
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        raise ConfigError(f"cannot open the database at DATABASE_URL: {reason}") from None
    return engine


def open_redis(settings: Settings) -> tuple[str, EmbeddedRedis | None]:
    """The Redis URL to use, starting the embedded server when demo mode has none configured.

    `cryptocity demo` hands its children the embedded server's URL in REDIS_URL; that URL is
    still the embedded server, so they get it back too (to restart it if it dies).
    """
    embedded = EmbeddedRedis(settings.data_dir / "redis")
    if settings.redis_url is not None and not (
        settings.is_demo and settings.redis_url == embedded.url
    ):
        return settings.redis_url, None
    return embedded.start(), embedded


def make_rate_book(settings: Settings, coordinator: Coordinator) -> RateBook:
    """Local feeds (sandbox, file:) are read directly; network feeds from what the worker's
    refresh-rates duty stored in Redis (pos.rate_store), so no request waits on an exchange."""
    from pos.rate_config import rate_book  # local imports: keep this edit to this function
    from pos.rate_store import RateStore

    return rate_book(settings, RateStore(coordinator).last_quote)


def connect_runtime(settings: Settings) -> Runtime:
    """Build the connections without touching them: the web tier reports health per request.

    The web tier runs for hours, so in demo mode it also keeps the embedded Redis alive.
    """
    engine = make_engine(settings.database_url)
    redis_url, embedded = open_redis(settings)
    coordinator = Coordinator(connect(redis_url))
    runtime = Runtime(
        settings,
        engine,
        make_session_factory(engine),
        coordinator,
        make_rate_book(settings, coordinator),
        redis_url,
        embedded,
    )
    runtime.supervise_redis()
    return runtime


def open_runtime(settings: Settings, check_schema: bool = True) -> Runtime:
    """Connect to the database and Redis; raise `ConfigError` if either cannot be used."""
    engine = open_database(settings, check_schema)
    redis_url, embedded = open_redis(settings)
    coordinator = Coordinator(connect(redis_url))
    if not coordinator.ping():
        engine.dispose()
        coordinator.client.close()
        raise ConfigError(f"Redis at REDIS_URL ({_safe(redis_url)}) is unreachable")
    return Runtime(
        settings,
        engine,
        make_session_factory(engine),
        coordinator,
        make_rate_book(settings, coordinator),
        redis_url,
        embedded,
    )


def _safe(url: str) -> str:
    """A URL without its password, for error messages."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urlunsplit(parts._replace(netloc=netloc))
    return url
