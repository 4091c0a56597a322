"""The `cryptocity` console script, run as a real subprocess against the test database/Redis."""

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from pos.coordination import Coordinator
from pos.demo_wallets import demo_account_xpub, demo_solana_wallet
from pos.models import User
from pos.settings import BitcoinNetwork, Settings


@pytest.fixture(autouse=True)
def _fresh_redis(coordinator: Coordinator) -> None:
    """Every CLI test starts with an empty Redis (no cached rate from an earlier test)."""


def _run(
    settings: Settings,
    *args: str,
    extra_env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "CRYPTOCITY_MODE": "demo",
        "CRYPTOCITY_DATA_DIR": str(settings.data_dir),
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": settings.redis_url or "",
        "KZTE_MINT": settings.kzte_mint or "",
        **(extra_env or {}),
    }
    return subprocess.run(
        [sys.executable, "-m", "pos.cli", *args],
        env=env,
        text=True,
        capture_output=True,
        timeout=60,
    )


def _ok(result: subprocess.CompletedProcess[str]) -> dict[str, object]:
    assert result.returncode == 0, result.stderr
    data: dict[str, object] = json.loads(result.stdout)
    return data


def test_merchant_user_invoice_round_trip(
    settings: Settings, engine: Engine, tmp_path: Path
) -> None:
    merchant = _ok(
        _run(
            settings,
            "merchant",
            "create",
            "--name",
            "Alatau Coffee",
            "--btc-xpub",
            demo_account_xpub("cli", BitcoinNetwork.REGTEST),
            "--solana-wallet",
            demo_solana_wallet("cli"),
            "--json",
        )
    )
    assert len(merchant["btc_first_addresses"]) == 5  # type: ignore[arg-type]
    user = _ok(
        _run(
            settings,
            "user",
            "create",
            "--role",
            "cashier",
            "--merchant",
            str(merchant["id"]),
            "--email",
            "Till@Coffee.demo",
            "--json",
        )
    )
    assert user["email"] == "till@coffee.demo" and len(str(user["password"])) >= 10

    for method in ("kzte", "btc"):
        created = _ok(
            _run(
                settings,
                "invoice",
                "create",
                "--merchant",
                str(merchant["id"]),
                "--amount-kzt",
                "2500",
                "--method",
                method,
                "--json",
            )
        )
        shown = _ok(
            _run(
                settings,
                "invoice",
                "show",
                str(created["id"]),
                "--json",
                "--qr-svg",
                str(tmp_path / "qr.svg"),
                "--qr-png",
                str(tmp_path / "qr.png"),
            )
        )
        for key in ("id", "status", "price_tiyn", "amount_due_atomic", "payment_uri", "rate_kzt"):
            assert shown[key] == created[key]
        assert shown["live"]["status"] == "new"  # type: ignore[index]
        assert [e["type"] for e in shown["events"]] == ["invoice.created"]  # type: ignore[union-attr]
        assert (tmp_path / "qr.svg").read_text().startswith("<svg")
        assert (tmp_path / "qr.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert str(created["payment_uri"]).startswith("bitcoin:bcrt1q")
    # A QR file that cannot be written is one line and status 2, not a traceback.
    for option, path in (
        ("--qr-png", tmp_path / "no" / "such" / "qr.png"),
        ("--qr-svg", tmp_path),  # a folder
    ):
        refused = _run(settings, "invoice", "show", str(created["id"]), option, str(path))
        assert refused.returncode == 2
        assert refused.stderr.splitlines() == [
            f"error: cannot write {path}: "
            + ("No such file or directory" if "such" in str(path) else "Is a directory")
        ], refused.stderr


def test_btc_invoice_refused_cleanly_without_a_fresh_rate(
    settings: Settings, engine: Engine, tmp_path: Path
) -> None:
    merchant = _ok(
        _run(
            settings,
            "merchant",
            "create",
            "--name",
            "Qazaq Books",
            "--btc-xpub",
            demo_account_xpub("cli", BitcoinNetwork.REGTEST),
            "--solana-wallet",
            demo_solana_wallet("cli"),
            "--json",
        )
    )
    no_rates = {"BTC_KZT_RATE_SOURCES": f"file:{tmp_path / 'missing.json'}"}
    result = _run(
        settings,
        "invoice",
        "create",
        "--merchant",
        str(merchant["id"]),
        "--amount-kzt",
        "2500",
        "--method",
        "btc",
        extra_env=no_rates,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: no fresh BTC/KZT rate is available, so BTC invoices are paused; "
        "KZTE invoices still work"
    ]
    kzte = _run(
        settings,
        "invoice",
        "create",
        "--merchant",
        str(merchant["id"]),
        "--amount-kzt",
        "2500",
        "--method",
        "kzte",
        "--json",
        extra_env=no_rates,
    )
    assert kzte.returncode == 0


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"REDIS_URL": "redis://127.0.0.1:1/0"}, "error: Redis at REDIS_URL"),
        ({"DATABASE_URL": "postgresql://::nonsense"}, "error: DATABASE_URL is malformed"),
        ({"DATABASE_URL": "sqlite:////nonexistent/dir/x.db"}, "error: cannot open the database"),
        (
            {"CRYPTOCITY_MODE": "production", "SECRET_KEY": ""},
            "error: SECRET_KEY is required in production mode",
        ),
    ],
)
def test_bad_config_exits_with_one_clear_line(
    settings: Settings, engine: Engine, env: dict[str, str], message: str
) -> None:
    result = _run(settings, "merchant", "list", extra_env=env)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(message), result.stderr
    assert "Traceback" not in result.stderr


def test_bad_input_is_a_clear_error(settings: Settings, engine: Engine) -> None:
    result = _run(settings, "merchant", "create", "--name", "X Shop", "--btc-xpub", "xprvnonsense")
    assert result.returncode == 2 and result.stderr.startswith("error: this is not a valid")
    result = _run(settings, "invoice", "show", "nope")
    assert result.returncode == 2 and result.stderr.strip() == "error: no such invoice"
    result = _run(
        settings, "invoice", "create", "--merchant", "1", "--amount-kzt", "1e5", "--method", "kzte"
    )
    assert result.returncode == 2 and "not an amount in tenge" in result.stderr


def test_rates_show_lists_the_components_an_invoice_would_lock(
    settings: Settings, engine: Engine, tmp_path: Path
) -> None:
    now = datetime.now(UTC).isoformat()
    feeds = []
    for name, rate in (("a", "45000000"), ("b", "45100000"), ("c", "45200000")):
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps({"rate": rate, "as_of": now}))
        feeds.append(f"file:{path}")
    sources = {"BTC_KZT_RATE_SOURCES": ",".join(feeds)}
    quote = _ok(_run(settings, "rates", "show", "--json", extra_env=sources))
    assert quote["rate"] == "45100000"  # the median
    legs = quote["legs"]
    assert isinstance(legs, list) and sorted(leg["rate"] for leg in legs) == [
        "45000000",
        "45100000",
        "45200000",
    ]
    text = _run(settings, "rates", "show", extra_env=sources)
    assert text.returncode == 0 and text.stdout.count(" at ") == 3, text.stdout


def test_user_create_applies_the_password_policy_and_forces_a_change(
    settings: Settings, engine: Engine
) -> None:
    merchant = _ok(_run(settings, "merchant", "create", "--name", "Policy Shop", "--json"))
    base = ["user", "create", "--role", "owner", "--merchant", str(merchant["id"])]
    refused = _run(settings, *base, "--email", "p@shop.demo", "--password", "password1234")
    assert refused.returncode == 2 and "too common" in refused.stderr
    short = _run(settings, *base, "--email", "p@shop.demo", "--password", "tiny")
    assert short.returncode == 2 and "at least 12" in short.stderr
    chosen = _ok(
        _run(settings, *base, "--email", "p@shop.demo", "--password", "a long own phrase", "--json")
    )
    generated = _ok(_run(settings, *base, "--email", "g@shop.demo", "--json"))
    with Session(engine) as session:
        forced = {
            u.email: u.must_change_password
            for u in session.scalars(select(User).where(User.merchant_id == merchant["id"]))
        }
    assert forced == {"p@shop.demo": False, "g@shop.demo": True}
    assert chosen["email"] == "p@shop.demo" and "password" in generated
