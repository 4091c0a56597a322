"""Shared fixtures: a real Redis server, a real database (SQLite, or PostgreSQL from
TEST_DATABASE_URL), settings, the runtime, and the Flask app and client.

Nothing is mocked: Redis is a real redis-server (TEST_REDIS_URL, else one started here from the
same binary the demo uses), and the schema comes from the real migrations.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from solders.keypair import Keypair
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker

import pos.model_registry  # noqa: F401 - every table, for the per-test cleanup
from pos import chart
from pos.coordination import Coordinator, connect
from pos.db import Base, make_engine, make_session_factory
from pos.demo_wallets import demo_account_xpub, demo_solana_wallet
from pos.migrate import upgrade
from pos.redis_server import EmbeddedRedis
from pos.runtime import Runtime, make_rate_book
from pos.settings import BitcoinNetwork, Mode, Settings

TEST_SECRET = "test-secret-key-that-is-long-enough-for-production"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Every test that touches the database is marked `db`, so CI can run them on PostgreSQL too.
    for item in items:
        if "engine" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.db)


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    configured = os.environ.get("TEST_REDIS_URL")
    if configured:
        yield configured
        return
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis"))
    yield server.start()
    server.stop()


@pytest.fixture
def coordinator(redis_url: str) -> Iterator[Coordinator]:
    client = connect(redis_url)
    client.flushall()
    yield Coordinator(client)
    client.close()


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    configured = os.environ.get("TEST_DATABASE_URL")
    if configured:
        return configured
    return f"sqlite:///{tmp_path_factory.mktemp('db') / 'test.db'}"


@pytest.fixture(scope="session")
def migrated_engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    if engine.dialect.name == "postgresql":
        with engine.begin() as connection:  # a clean slate for the real migrations
            connection.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    upgrade(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def engine(migrated_engine: Engine) -> Iterator[Engine]:
    yield migrated_engine
    tables = [t.name for t in reversed(Base.metadata.sorted_tables)]
    with migrated_engine.begin() as connection:
        if migrated_engine.dialect.name == "postgresql":
            connection.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
        else:
            for table in tables:
                connection.execute(text(f"DELETE FROM {table}"))
    with make_session_factory(migrated_engine).begin() as session:
        chart.open_zone_accounts(session)  # the migration's rows, for the next test


@pytest.fixture
def session_factory(engine: Engine) -> sessionmaker[Session]:
    return make_session_factory(engine)


@pytest.fixture
def session(session_factory: sessionmaker[Session]) -> Iterator[Session]:
    with session_factory() as session:
        yield session


@pytest.fixture
def kzte_mint() -> str:
    return str(Keypair().pubkey())


@pytest.fixture
def settings(tmp_path: Path, database_url: str, redis_url: str, kzte_mint: str) -> Settings:
    return Settings(
        mode=Mode.DEMO,
        data_dir=tmp_path,
        database_url=database_url,
        secret_key=TEST_SECRET,
        redis_url=redis_url,
        bitcoin_rpc_url="http://cryptocity:cryptocity@127.0.0.1:18443",
        bitcoin_network=BitcoinNetwork.REGTEST,
        solana_rpc_url="http://127.0.0.1:8899",
        solana_ws_url="ws://127.0.0.1:8900",
        kzte_mint=kzte_mint,
        kzte_decimals=6,
        btc_rate_sources=("sandbox",),
        # The zone's own destinations, for `tenge` merchants (the default mode).
        zone_btc_xpub=demo_account_xpub("test zone", BitcoinNetwork.REGTEST),
        zone_kzte_wallet=demo_solana_wallet("test zone"),
    )


@pytest.fixture
def runtime(
    settings: Settings,
    engine: Engine,
    session_factory: sessionmaker[Session],
    coordinator: Coordinator,
) -> Runtime:
    return Runtime(
        settings,
        engine,
        session_factory,
        coordinator,
        make_rate_book(settings, coordinator),
        settings.redis_url or "",
    )


@pytest.fixture
def app(runtime: Runtime) -> Flask:
    from merchant_portal import create_app

    return create_app(runtime=runtime, test_config={"TESTING": True})


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()
