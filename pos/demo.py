"""`cryptocity demo`: migrate, seed demo data, run everything, stop everything on Ctrl-C.

Demo mode only: fixed demo passwords and demo merchant keys derived from public seeds (the
merchants' *wallets* are simulated here; the server itself still sees only public keys).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from pos import accounts
from pos.db import make_engine, make_session_factory
from pos.demo_history import HistoryCounts, Progress, seed_history
from pos.demo_products import seed_products
from pos.demo_wallets import demo_account_xpub, demo_solana_wallet
from pos.errors import ConfigError
from pos.migrate import upgrade
from pos.models import Merchant, Role, SettlementMode, User
from pos.redis_server import EmbeddedRedis
from pos.settings import Settings

DEMO_PASSWORD = "cryptocity-demo"


@dataclass(frozen=True)
class DemoMerchant:
    name: str
    slug: str
    settlement_mode: SettlementMode


# One of each mode: the coffee shop is paid tenge by the zone, the bookshop keeps its crypto.
DEMO_MERCHANTS = (
    DemoMerchant("Alatau Coffee", "coffee", SettlementMode.TENGE),
    DemoMerchant("Qazaq Books", "books", SettlementMode.DIRECT),
)


def seed_demo_data(settings: Settings) -> list[tuple[str, str, str]]:
    """Create the demo operator, merchants, owners, cashiers and products once; return the
    logins."""
    engine = make_engine(settings.database_url)
    factory = make_session_factory(engine)
    logins: list[tuple[str, str, str]] = [("operator", "operator@cryptocity.demo", DEMO_PASSWORD)]
    with factory.begin() as session:
        if session.scalar(select(User).where(User.email == logins[0][1])) is None:
            accounts.create_user(
                session, logins[0][1], DEMO_PASSWORD, Role.OPERATOR, display_name="Zone operator"
            )
        for demo in DEMO_MERCHANTS:
            merchant = session.scalar(select(Merchant).where(Merchant.name == demo.name))
            if merchant is None:
                merchant = accounts.create_merchant(
                    session,
                    settings,
                    demo.name,
                    btc_xpub=demo_account_xpub(demo.slug, settings.bitcoin_network),
                    solana_wallet=demo_solana_wallet(demo.slug),
                    settlement_mode=demo.settlement_mode,
                )
            for role in (Role.OWNER, Role.CASHIER):
                email = f"{role.value}@{demo.slug}.demo"
                logins.append((f"{role.value} of {demo.name}", email, DEMO_PASSWORD))
                if session.scalar(select(User).where(User.email == email)) is None:
                    accounts.create_user(
                        session,
                        email,
                        DEMO_PASSWORD,
                        role,
                        merchant.id,
                        display_name=f"{demo.name} {role.value}",
                    )
            seed_products(session, merchant.id, demo.slug)
    engine.dispose()
    return logins


def seed_demo_history(
    settings: Settings, progress: Progress | None = None, now: datetime | None = None
) -> dict[str, HistoryCounts]:
    """Thirty days of sales per demo shop, once (see pos.demo_history); counts per shop.

    `now`: the moment the history leads up to (tests pick one; the demo runs up to now)."""
    engine = make_engine(settings.database_url)
    factory = make_session_factory(engine)
    made: dict[str, HistoryCounts] = {}
    try:
        for demo in DEMO_MERCHANTS:
            with factory.begin() as session:  # one shop per transaction: progress is kept
                merchant = session.scalar(select(Merchant).where(Merchant.name == demo.name))
                if merchant is None:
                    continue
                people = {
                    user.email: user.id
                    for user in session.scalars(select(User).where(User.merchant_id == merchant.id))
                }
                made[demo.slug] = seed_history(
                    session,
                    settings,
                    merchant,
                    demo.slug,
                    cashier_id=people.get(f"cashier@{demo.slug}.demo"),
                    owner_id=people.get(f"owner@{demo.slug}.demo"),
                    now=now,
                    progress=progress,
                )
    finally:
        engine.dispose()
    return made


def _print(message: str) -> None:
    print(message, flush=True)


def _seed_history_with_progress(settings: Settings) -> None:
    started = time.monotonic()
    print("demo history: 30 days of sales (first start only)", flush=True)
    if settings.kzte_mint is None:
        print("  no KZTE mint (started without the chains): BTC sales only", flush=True)
    made = seed_demo_history(settings, progress=_print)
    for slug, counts in made.items():
        if counts.invoices:
            print(
                f"  {slug}: {counts.invoices} invoices ({counts.settled} paid, {counts.overpaid} "
                f"overpaid, {counts.partial} partly paid, {counts.expired} expired; "
                f"{counts.refunds} refunds; {counts.payouts} payouts paid, "
                f"{counts.fee_invoices} fee invoices)",
                flush=True,
            )
        else:
            print(f"  {slug}: history already there", flush=True)
    print(f"demo history: done in {time.monotonic() - started:.1f} s", flush=True)


def _wait_healthy(url: str, process: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ConfigError("the web server exited during start-up; see the log above")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    raise ConfigError(f"{url} did not answer within {timeout:.0f} s")


def run_demo(settings: Settings, with_chains: bool = True) -> int:
    """Start Redis, migrate, seed, start the chains, worker and web; wait for Ctrl-C."""
    if not settings.is_demo:
        raise ConfigError("`cryptocity demo` runs only with CRYPTOCITY_MODE=demo")
    print(f"data dir: {settings.data_dir}", flush=True)
    embedded = None
    env = dict(os.environ, CRYPTOCITY_MODE="demo", CRYPTOCITY_DATA_DIR=str(settings.data_dir))
    if settings.redis_url is None:
        embedded = EmbeddedRedis(settings.data_dir / "redis")
        env["REDIS_URL"] = embedded.start()
        print(f"redis: embedded at {env['REDIS_URL']}", flush=True)
    children: list[subprocess.Popen[bytes]] = []
    command = [sys.executable, "-m", "pos.cli"]
    try:
        print("database: migrating", flush=True)
        upgrade(settings.database_url)
        logins = seed_demo_data(settings)
        if with_chains:
            from sandbox.demo_chains import start_demo_chains

            children += start_demo_chains(settings, env)
        # After the chains: the Solana sandbox has written the KZTE mint the settings read.
        _seed_history_with_progress(Settings.from_env(env) if with_chains else settings)
        # Own sessions: Ctrl-C reaches only this supervisor, which stops each child once.
        children.append(subprocess.Popen([*command, "worker"], env=env, start_new_session=True))
        web = subprocess.Popen(
            [*command, "web", "--bind", settings.web_bind], env=env, start_new_session=True
        )
        children.append(web)
        base = f"http://{settings.web_bind}"
        _wait_healthy(f"{base}/healthz", web, timeout=90)
        print(f"\nCryptoCity Pay demo is running at {base}\n", flush=True)
        for role, email, password in logins:
            print(f"  {role:<28} {email:<28} {password}", flush=True)
        print("\nPress Ctrl-C to stop everything.", flush=True)
        signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
        while all(child.poll() is None for child in children):
            time.sleep(1)
        print("a demo process exited; stopping the rest", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nstopping…", flush=True)
        return 0
    finally:
        # A second signal (`timeout`, an impatient `docker stop`, Ctrl-C twice) must not cut
        # the clean-up short: that left the worker and the sandbox nodes running, orphaned.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        for child in reversed(children):
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in reversed(children):
            try:
                child.wait(timeout=15)
            except subprocess.TimeoutExpired:
                child.kill()
        if embedded is not None:
            embedded.stop()
