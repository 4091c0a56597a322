"""Typed settings, read once from the environment.

Nothing here connects to anything. `Settings.from_env()` validates every value and raises
`ConfigError` with one clear sentence; the CLI prints it and exits without a traceback.
"""

from __future__ import annotations

import json
import logging
import math
import os
import secrets
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from pos.errors import ConfigError, ValidationError
from pos.rate_config import parse_btc_sources, parse_kzte_sources

E = TypeVar("E", bound=StrEnum)
log = logging.getLogger(__name__)


class Mode(StrEnum):
    DEMO = "demo"
    PRODUCTION = "production"


class BitcoinNetwork(StrEnum):
    REGTEST = "regtest"
    TESTNET = "testnet"
    SIGNET = "signet"
    MAINNET = "mainnet"


DEMO_BITCOIN_RPC_URL = "http://cryptocity:cryptocity@127.0.0.1:18443"
DEMO_BITCOIN_ZMQ_URL = "tcp://127.0.0.1:28332"
DEMO_SOLANA_RPC_URL = "http://127.0.0.1:8899"
DEMO_SOLANA_WS_URL = "ws://127.0.0.1:8900"
MIN_SECRET_KEY_LENGTH = 32
# By `estimated_entropy_bits`: one character repeated scores 0, two alternating 36 bits. The bar
# sits well below 128 because the estimate undercounts short random keys (secrets.token_hex(16),
# a real 128 bits, scores 95-120); a key that repeats one block is refused on its own.
MIN_SECRET_KEY_BITS = 80
# The public APIs behind the network rate feeds; each is overridable (NBK_RATES_URL, …).
DEFAULT_RATE_API_URLS: Mapping[str, str] = {
    "nbk": "https://nationalbank.kz/rss/get_rates.cfm",
    "exmo": "https://api.exmo.com",
    "binance": "https://api.binance.com",
}
RATE_API_URL_ENV = {"nbk": "NBK_RATES_URL", "exmo": "EXMO_API_URL", "binance": "BINANCE_API_URL"}


@dataclass(frozen=True)
class Settings:
    """Everything the programs need to know about their environment."""

    mode: Mode
    data_dir: Path
    database_url: str
    secret_key: str
    # None means "start the embedded Redis in the data dir" (demo mode only).
    redis_url: str | None
    bitcoin_rpc_url: str
    bitcoin_network: BitcoinNetwork
    solana_rpc_url: str
    solana_ws_url: str
    kzte_mint: str | None
    kzte_decimals: int = 6
    # bitcoind's -zmqpubsequence endpoint: wakes the watcher at once (polling stays the floor).
    bitcoin_zmq_url: str | None = None
    # BTC/KZT rate sources, e.g. ("sandbox",), ("file:/srv/rates/btc_kzt.json",),
    # ("exmo:BTC_KZT", "binance:BTCUSDT*nbk:USD"); the syntax is in pos.rate_config.
    btc_rate_sources: tuple[str, ...] = ("sandbox",)
    rate_max_age_seconds: int = 300
    # KZTE/KZT quotes for the depeg alarm, e.g. ("file:/srv/rates/kzte_kzt.json",).
    kzte_rate_sources: tuple[str, ...] = ()
    rate_max_spread_bp: int = 200  # fresh BTC/KZT sources further apart: BTC invoices refused
    kzte_max_depeg_bp: int = 100  # KZTE further than this from 1:1 KZT: KZTE invoices paused
    fiat_rate_max_age_hours: int = 72  # the official USD/KZT rate is daily; long weekends
    rate_http_timeout_seconds: float = 5.0
    # Base URLs of the network rate feeds (configurable so tests replay them on 127.0.0.1).
    rate_api_urls: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_RATE_API_URLS))
    # When set, /metrics wants `Authorization: Bearer <token>`.
    metrics_token: str | None = None
    min_invoice_tiyn: int = 100_00  # 100 KZT: below it fees and dust make no sense
    max_invoice_tiyn: int = 100_000_000_00  # 100 million KZT per invoice
    default_fee_bp: int = 100  # 1.00 % processing fee unless the merchant's rule differs
    late_watch_hours: int = 24
    # The zone's own destinations for `tenge` merchants (DESIGN §7): a BIP84 account key of
    # the zone's wallet (public only) and its Solana wallet. Unset: `tenge` invoices refused.
    zone_btc_xpub: str | None = None
    zone_kzte_wallet: str | None = None
    web_bind: str = "127.0.0.1:8000"
    # Webhooks to loopback and private addresses (pos.network_policy): tests and benchmarks
    # with a local receiver only. Off by default in every mode; a warning when on.
    webhook_allow_private_networks: bool = False
    # Open live pages (SSE streams) allowed at once, counted across web processes in Redis:
    # per client address (a whole zone behind one proxy shares one: raise it there) and per
    # invoice. Over either, the page polls status.json instead.
    live_streams_per_ip: int = 20
    live_streams_per_invoice: int = 50
    extra: Mapping[str, str] = field(default_factory=dict)

    @property
    def is_demo(self) -> bool:
        return self.mode is Mode.DEMO

    @property
    def sandbox_dir(self) -> Path:
        return self.data_dir / "sandbox"

    def with_overrides(self, **changes: object) -> Settings:
        """A copy with some fields replaced (tests and the demo supervisor use it)."""
        return replace(self, **changes)  # type: ignore[arg-type]

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read and validate the settings; raise `ConfigError` on the first bad value."""
        env = dict(os.environ if environ is None else environ)
        mode = _parse_enum(Mode, env.get("CRYPTOCITY_MODE", "demo"), "CRYPTOCITY_MODE")
        demo = mode is Mode.DEMO
        data_dir = Path(env.get("CRYPTOCITY_DATA_DIR") or "var").expanduser().resolve()

        database_url = _database_url(env.get("DATABASE_URL"), data_dir)
        redis_url = _redis_url(env.get("REDIS_URL"), demo)
        secret_key = _secret_key(env.get("SECRET_KEY"), demo, data_dir)
        network = _parse_enum(
            BitcoinNetwork,
            env.get("BITCOIN_NETWORK", "regtest" if demo else "mainnet"),
            "BITCOIN_NETWORK",
        )
        sandbox_solana = _read_sandbox_solana(data_dir) if demo else {}
        sandbox_decimals = sandbox_solana.get("kzte_decimals", "6")
        bitcoin_rpc_url = env.get("BITCOIN_RPC_URL") or (DEMO_BITCOIN_RPC_URL if demo else "")
        if not bitcoin_rpc_url:
            raise ConfigError("BITCOIN_RPC_URL is required in production mode")
        _check_http_url(bitcoin_rpc_url, "BITCOIN_RPC_URL")
        solana_rpc_url = (
            env.get("SOLANA_RPC_URL") or sandbox_solana.get("rpc_url") or DEMO_SOLANA_RPC_URL
        )
        solana_ws_url = (
            env.get("SOLANA_WS_URL") or sandbox_solana.get("ws_url") or DEMO_SOLANA_WS_URL
        )
        _check_http_url(solana_rpc_url, "SOLANA_RPC_URL")
        if urlsplit(solana_ws_url).scheme not in ("ws", "wss"):
            raise ConfigError(
                f"SOLANA_WS_URL must start with ws:// or wss://, got {solana_ws_url!r}"
            )
        kzte_mint = env.get("KZTE_MINT") or sandbox_solana.get("kzte_mint") or None
        if kzte_mint is not None:
            _check_base58_pubkey(kzte_mint, "KZTE_MINT")
        kzte_decimals = _parse_int(
            env.get("KZTE_DECIMALS") or sandbox_decimals,
            "KZTE_DECIMALS",
            0,
            12,
        )
        sources = tuple(
            spec.name
            for spec in parse_btc_sources(
                _comma_list(env.get("BTC_KZT_RATE_SOURCES", "sandbox" if demo else "")), demo
            )
        )
        kzte_sources = tuple(
            spec.name for spec in parse_kzte_sources(_comma_list(env.get("KZTE_KZT_RATE_SOURCES")))
        )
        rate_api_urls = dict(DEFAULT_RATE_API_URLS)
        for key, variable in RATE_API_URL_ENV.items():
            if env.get(variable):
                _check_http_url(env[variable], variable)
                rate_api_urls[key] = env[variable].rstrip("/")

        zone_btc_xpub, zone_kzte_wallet = _zone_destinations(env, demo, data_dir, network)
        allow_private = _parse_bool(
            env.get("WEBHOOK_ALLOW_PRIVATE_NETWORKS", ""), "WEBHOOK_ALLOW_PRIVATE_NETWORKS"
        )
        if allow_private:
            log.warning(
                "WEBHOOK_ALLOW_PRIVATE_NETWORKS is on: webhooks may reach loopback and private "
                "addresses (for tests with a local receiver; never in production)"
            )
        return cls(
            mode=mode,
            data_dir=data_dir,
            database_url=database_url,
            secret_key=secret_key,
            redis_url=redis_url,
            bitcoin_rpc_url=bitcoin_rpc_url,
            bitcoin_network=network,
            solana_rpc_url=solana_rpc_url,
            solana_ws_url=solana_ws_url,
            kzte_mint=kzte_mint,
            kzte_decimals=kzte_decimals,
            bitcoin_zmq_url=_zmq_url(
                env.get("BITCOIN_ZMQ_URL", DEMO_BITCOIN_ZMQ_URL if demo else "")
            ),
            btc_rate_sources=sources,
            rate_max_age_seconds=_parse_int(
                env.get("RATE_MAX_AGE_SECONDS", "300"), "RATE_MAX_AGE_SECONDS", 5, 86_400
            ),
            kzte_rate_sources=kzte_sources,
            rate_max_spread_bp=_parse_int(
                env.get("RATE_MAX_SPREAD_BP", "200"), "RATE_MAX_SPREAD_BP", 1, 5_000
            ),
            kzte_max_depeg_bp=_parse_int(
                env.get("KZTE_MAX_DEPEG_BP", "100"), "KZTE_MAX_DEPEG_BP", 1, 5_000
            ),
            fiat_rate_max_age_hours=_parse_int(
                env.get("FIAT_RATE_MAX_AGE_HOURS", "72"), "FIAT_RATE_MAX_AGE_HOURS", 1, 720
            ),
            rate_http_timeout_seconds=_parse_int(
                env.get("RATE_HTTP_TIMEOUT_SECONDS", "5"), "RATE_HTTP_TIMEOUT_SECONDS", 1, 60
            ),
            rate_api_urls=rate_api_urls,
            metrics_token=env.get("METRICS_TOKEN") or None,
            default_fee_bp=_parse_int(
                env.get("CRYPTOCITY_FEE_BP", "100"), "CRYPTOCITY_FEE_BP", 0, 10_000
            ),
            zone_btc_xpub=zone_btc_xpub,
            zone_kzte_wallet=zone_kzte_wallet,
            web_bind=env.get("CRYPTOCITY_WEB_BIND", "127.0.0.1:8000"),
            webhook_allow_private_networks=allow_private,
            live_streams_per_ip=_parse_int(
                env.get("LIVE_STREAMS_PER_IP", "20"), "LIVE_STREAMS_PER_IP", 1, 1_000_000
            ),
            live_streams_per_invoice=_parse_int(
                env.get("LIVE_STREAMS_PER_INVOICE", "50"), "LIVE_STREAMS_PER_INVOICE", 1, 1_000_000
            ),
        )


def _comma_list(raw: str | None) -> list[str]:
    return [item.strip() for item in (raw or "").split(",") if item.strip()]


def _parse_enum(enum: type[E], raw: str, name: str) -> E:
    try:
        return enum(raw.strip().lower())
    except ValueError:
        allowed = " | ".join(member.value for member in enum)
        raise ConfigError(f"{name} must be one of {allowed}, got {raw!r}") from None


def _parse_bool(raw: str, name: str) -> bool:
    value = raw.strip().lower()
    if value in ("", "0", "false", "no", "off"):
        return False
    if value in ("1", "true", "yes", "on"):
        return True
    raise ConfigError(f"{name} must be 1 or 0, got {raw!r}")


def _parse_int(raw: str, name: str, low: int, high: int) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, got {raw!r}") from None
    if not low <= value <= high:
        raise ConfigError(f"{name} must be between {low} and {high}, got {value}")
    return value


def _database_url(raw: str | None, data_dir: Path) -> str:
    if not raw:
        return f"sqlite:///{data_dir / 'cryptocity.db'}"
    try:
        url = make_url(raw)
        url.port  # noqa: B018 - a malformed port raises here, not at connect time
    except (ArgumentError, ValueError):
        raise ConfigError(
            "DATABASE_URL is malformed; expected e.g. postgresql://user:pass@host:5432/db "
            "or sqlite:///path/to/file.db"
        ) from None
    backend = url.get_backend_name()
    if backend not in ("sqlite", "postgresql"):
        raise ConfigError(f"DATABASE_URL: unsupported database {backend!r} (sqlite or postgresql)")
    if backend == "postgresql" and url.drivername == "postgresql":
        # We ship psycopg 3; SQLAlchemy's bare "postgresql" means psycopg2.
        url = url.set(drivername="postgresql+psycopg")
    return url.render_as_string(hide_password=False)


def _redis_url(raw: str | None, demo: bool) -> str | None:
    if not raw:
        if demo:
            return None
        raise ConfigError("REDIS_URL is required in production mode")
    if urlsplit(raw).scheme not in ("redis", "rediss", "unix"):
        raise ConfigError(f"REDIS_URL must start with redis://, rediss:// or unix://, got {raw!r}")
    return raw


def estimated_entropy_bits(key: str) -> float:
    """A rough upper bound of a key's randomness: its length times the Shannon entropy of its
    own characters. "x" * 48 has 0 bits; `secrets.token_urlsafe(32)` has about 200."""
    counts = Counter(key)
    per_char = -sum(n / len(key) * math.log2(n / len(key)) for n in counts.values())
    return per_char * len(key)


def _repeats_a_block(key: str) -> bool:
    """True for "abcabcabc…" or "passwordpassword…": a short block, repeated."""
    return any(
        key == (key[:size] * (len(key) // size + 1))[: len(key)]
        for size in range(1, len(key) // 2 + 1)
    )


def _secret_key(raw: str | None, demo: bool, data_dir: Path) -> str:
    if raw:
        if not demo and len(raw) < MIN_SECRET_KEY_LENGTH:
            raise ConfigError(f"SECRET_KEY must be at least {MIN_SECRET_KEY_LENGTH} characters")
        if not demo and (
            estimated_entropy_bits(raw) < MIN_SECRET_KEY_BITS or _repeats_a_block(raw)
        ):
            raise ConfigError(
                "SECRET_KEY is too predictable (repeated or few distinct characters); make one "
                "with: python3 -c 'import secrets; print(secrets.token_urlsafe(48))'"
            )
        return raw
    if not demo:
        raise ConfigError("SECRET_KEY is required in production mode")
    # Demo only: a random key kept in the data dir, so sessions survive a restart.
    key_file = data_dir / "secret_key"
    if key_file.exists():
        return key_file.read_text().strip()
    data_dir.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(48)
    key_file.write_text(key)
    key_file.chmod(0o600)
    return key


def _zone_destinations(
    env: Mapping[str, str], demo: bool, data_dir: Path, network: BitcoinNetwork
) -> tuple[str | None, str | None]:
    """ZONE_BTC_XPUB and ZONE_KZTE_WALLET, validated; the demo zone's sandbox wallet if unset."""
    from pos.methods import bitcoin, kzte  # local imports: keep settings light

    xpub, wallet = env.get("ZONE_BTC_XPUB") or None, env.get("ZONE_KZTE_WALLET") or None
    if demo and (xpub is None or wallet is None):
        from pos.demo_wallets import zone_wallet

        demo_xpub, demo_wallet = zone_wallet(data_dir / "sandbox", network)
        xpub, wallet = xpub or demo_xpub, wallet or demo_wallet
    try:
        if xpub is not None:
            xpub = bitcoin.parse_account_xpub(xpub, network).text
    except ValidationError as exc:
        raise ConfigError(f"ZONE_BTC_XPUB is not a BIP84 account key: {exc}") from None
    try:
        if wallet is not None:
            wallet = kzte.parse_wallet(wallet)
    except ValidationError as exc:
        raise ConfigError(f"ZONE_KZTE_WALLET is not a Solana wallet: {exc}") from None
    return xpub, wallet


def _zmq_url(raw: str) -> str | None:
    if not raw:
        return None
    if urlsplit(raw).scheme not in ("tcp", "ipc"):
        raise ConfigError(f"BITCOIN_ZMQ_URL must look like tcp://host:port, got {raw!r}")
    return raw


def _check_http_url(raw: str, name: str) -> None:
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{name} must be an http(s) URL like http://user:pass@host:port")
    try:
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        raise ConfigError(f"{name} has a malformed port: {raw!r}") from None


def _check_base58_pubkey(raw: str, name: str) -> None:
    from pos.methods.kzte import parse_pubkey  # local import: keeps settings light

    try:
        parse_pubkey(raw)
    except ValidationError as exc:
        raise ConfigError(f"{name} is not a Solana address: {exc}") from None


def _read_sandbox_solana(data_dir: Path) -> dict[str, str]:
    """The sandbox validator writes its URLs and mint here when it starts."""
    path = data_dir / "sandbox" / "solana.json"
    try:
        loaded = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(loaded, dict):
        return {}
    return {str(key): str(value) for key, value in loaded.items() if value is not None}
