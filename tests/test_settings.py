import secrets
from collections.abc import Callable
from pathlib import Path

import pytest

from pos.errors import ConfigError
from pos.settings import BitcoinNetwork, Mode, Settings


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {"CRYPTOCITY_DATA_DIR": str(tmp_path), **extra}


def test_demo_defaults_need_nothing(tmp_path: Path) -> None:
    settings = Settings.from_env(_env(tmp_path))
    assert settings.mode is Mode.DEMO
    assert settings.database_url == f"sqlite:///{tmp_path / 'cryptocity.db'}"
    assert settings.redis_url is None  # the embedded Redis
    assert settings.bitcoin_network is BitcoinNetwork.REGTEST
    assert settings.btc_rate_sources == ("sandbox",)
    # The demo secret is random but stable across restarts.
    assert len(settings.secret_key) >= 32
    assert Settings.from_env(_env(tmp_path)).secret_key == settings.secret_key


def test_demo_reads_the_sandbox_solana_file(tmp_path: Path) -> None:
    mint = "So11111111111111111111111111111111111111112"
    (tmp_path / "sandbox").mkdir()
    (tmp_path / "sandbox" / "solana.json").write_text(
        '{"rpc_url": "http://127.0.0.1:9999", "ws_url": "ws://127.0.0.1:10000", '
        f'"kzte_mint": "{mint}", "kzte_decimals": 6}}'
    )
    settings = Settings.from_env(_env(tmp_path))
    assert (settings.solana_rpc_url, settings.kzte_mint) == ("http://127.0.0.1:9999", mint)
    # An explicit environment always wins over the sandbox file.
    assert (
        Settings.from_env(
            _env(tmp_path, SOLANA_RPC_URL="https://api.devnet.solana.com")
        ).solana_rpc_url
        == "https://api.devnet.solana.com"
    )


PRODUCTION = {
    "CRYPTOCITY_MODE": "production",
    "SECRET_KEY": "tG7q-Vw2rPz9Lk4sYb8NcX1mHd6JfQ3u",
    "REDIS_URL": "redis://127.0.0.1:6379/0",
    "BITCOIN_RPC_URL": "http://u:p@node:8332",
    "DATABASE_URL": "postgresql://cc:pw@db:5432/cc",
}


def test_production_settings(tmp_path: Path) -> None:
    settings = Settings.from_env(_env(tmp_path, **PRODUCTION))
    assert settings.mode is Mode.PRODUCTION
    assert settings.database_url.startswith("postgresql+psycopg://")  # psycopg 3 is what we ship
    assert settings.bitcoin_network is BitcoinNetwork.MAINNET
    assert settings.btc_rate_sources == ()


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"SECRET_KEY": ""}, "SECRET_KEY is required in production"),
        ({"SECRET_KEY": "short"}, "at least 32"),
        ({"SECRET_KEY": "x" * 48}, "SECRET_KEY is too predictable"),
        ({"SECRET_KEY": "ab" * 24}, "SECRET_KEY is too predictable"),
        ({"SECRET_KEY": "secretkey" * 5}, "SECRET_KEY is too predictable"),
        ({"REDIS_URL": ""}, "REDIS_URL is required"),
        ({"REDIS_URL": "http://nope"}, "REDIS_URL must start with"),
        ({"DATABASE_URL": "not a url"}, "DATABASE_URL is malformed"),
        ({"DATABASE_URL": "mysql://a@b/c"}, "unsupported database"),
        ({"BITCOIN_RPC_URL": "node:8332"}, "BITCOIN_RPC_URL must be an http"),
        ({"BITCOIN_RPC_URL": "http://u:p@node:notaport"}, "malformed port"),
        ({"BITCOIN_NETWORK": "litecoin"}, "BITCOIN_NETWORK must be one of"),
        ({"CRYPTOCITY_MODE": "staging"}, "CRYPTOCITY_MODE must be one of"),
        ({"KZTE_MINT": "not-a-key"}, "KZTE_MINT is not a Solana address"),
        ({"KZTE_DECIMALS": "x"}, "KZTE_DECIMALS must be a whole number"),
        ({"KZTE_DECIMALS": "19"}, "KZTE_DECIMALS must be between"),
        ({"BTC_KZT_RATE_SOURCES": "sandbox"}, "demo mode only"),
        ({"BTC_KZT_RATE_SOURCES": "ftp://x"}, "unknown source"),
        ({"SOLANA_WS_URL": "http://x"}, "SOLANA_WS_URL must start with ws"),
    ],
)
def test_bad_config_is_one_clear_error(
    tmp_path: Path, override: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings.from_env(_env(tmp_path, **{**PRODUCTION, **override}))


@pytest.mark.parametrize("make", [lambda: secrets.token_urlsafe(32), lambda: secrets.token_hex(16)])
def test_production_accepts_a_random_secret_key(tmp_path: Path, make: Callable[[], str]) -> None:
    for _ in range(50):  # random keys of the usual recipes always pass, short hex ones too
        key = make()
        settings = Settings.from_env(_env(tmp_path, **{**PRODUCTION, "SECRET_KEY": key}))
        assert settings.secret_key == key


def test_demo_mode_keeps_any_secret_key(tmp_path: Path) -> None:
    settings = Settings.from_env(_env(tmp_path, SECRET_KEY="x" * 48))
    assert settings.secret_key == "x" * 48
