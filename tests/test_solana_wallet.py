"""A Solana wallet is one merchant's, never the zone's, and never a program, mint or PDA
(issue #19 items 1 and 11): the offline checks, the setup page, the CLI, the unique index and
the race a unique index is the last guard for."""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient
from solders.keypair import Keypair
from solders.pubkey import Pubkey
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from pos import accounts, invoices
from pos.errors import PaymentMethodUnavailableError, ValidationError
from pos.methods import kzte
from pos.models import Merchant, Role, SettlementMode
from pos.runtime import Runtime
from pos.states import PaymentMethod
from settlement import wallet_check

import factories
from portal_helpers import csrf_from, login

TOKEN_PROGRAM = "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA"
ATA_PROGRAM = "ATokenGPvbdGVxr1b2hvZbsiqW5xWH25efTNsLJA8knL"


def _ata(owner: str, mint: str) -> str:
    """The associated token account of `owner` for `mint`: a PDA, off the curve."""
    seeds = [bytes(Pubkey.from_string(k)) for k in (owner, TOKEN_PROGRAM, mint)]
    return str(Pubkey.find_program_address(seeds, Pubkey.from_string(ATA_PROGRAM))[0])


@pytest.mark.parametrize(
    "program",
    [
        "11111111111111111111111111111111",
        TOKEN_PROGRAM,
        "TokenzQdBNbLqP5VEhdkAS6EPFLC1PHnBqCXEpPxuEb",
        ATA_PROGRAM,
        "MemoSq4gqABAXKb96qnH8TysNcWxMyWCqXgDLGmfcHr",
        "Stake11111111111111111111111111111111111111",
        "SysvarRent111111111111111111111111111111111",
        "ComputeBudget111111111111111111111111111111",
    ],
)
def test_a_program_or_sysvar_is_not_a_wallet(program: str) -> None:
    with pytest.raises(ValidationError, match="not a wallet") as raised:
        kzte.parse_wallet(program)
    assert raised.value.field == "solana_wallet"


def test_the_mint_and_a_token_account_are_not_wallets() -> None:
    mint, owner = str(Keypair().pubkey()), str(Keypair().pubkey())
    assert Pubkey.from_string(mint).is_on_curve()  # the curve check alone let the mint in
    with pytest.raises(ValidationError, match="KZTE token mint"):
        kzte.parse_wallet(mint, mint=mint)
    with pytest.raises(ValidationError, match="off the ed25519 curve"):
        kzte.parse_wallet(_ata(owner, mint), mint=mint)
    assert kzte.parse_wallet(f"  {owner} ", mint=mint) == owner


def test_a_wallet_belongs_to_one_merchant(runtime: Runtime, session: Session) -> None:
    first = factories.merchant(session, runtime.settings, "Shop A", "a")
    other = factories.merchant(session, runtime.settings, "Shop B", "b")
    session.commit()
    assert first.solana_wallet is not None
    with pytest.raises(ValidationError, match="another merchant") as raised:
        accounts.set_solana_wallet(session, runtime.settings, other, first.solana_wallet)
    assert raised.value.field == "solana_wallet"
    with pytest.raises(ValidationError, match="another merchant"):
        accounts.create_merchant(
            session, runtime.settings, "Shop C", solana_wallet=first.solana_wallet
        )
    # Saving one's own wallet again is no conflict.
    assert not accounts.set_solana_wallet(session, runtime.settings, first, first.solana_wallet)


def test_the_zone_wallet_is_nobodys(runtime: Runtime, session: Session) -> None:
    zone = runtime.settings.zone_kzte_wallet
    assert zone is not None
    with pytest.raises(ValidationError, match="zone's own KZTE wallet"):
        accounts.create_merchant(session, runtime.settings, "Shop Z", solana_wallet=zone)


@pytest.mark.parametrize("mode", [SettlementMode.TENGE, SettlementMode.DIRECT])
def test_no_kzte_invoice_while_the_zone_wallet_is_a_merchants(
    runtime: Runtime, session: Session, mode: SettlementMode
) -> None:
    shop = factories.merchant(session, runtime.settings, "Shop A", "a", mode=mode)
    session.commit()
    # ZONE_KZTE_WALLET changed to a wallet a merchant registered before: refused, not shared.
    settings = runtime.settings.with_overrides(zone_kzte_wallet=shop.solana_wallet)
    request = invoices.InvoiceRequest(shop.id, 250_000, PaymentMethod.KZTE)
    with pytest.raises(PaymentMethodUnavailableError, match="ZONE_KZTE_WALLET"):
        invoices.create_invoice(session, settings, runtime.rates, request)


def test_the_database_refuses_a_shared_wallet(runtime: Runtime, session: Session) -> None:
    first = factories.merchant(session, runtime.settings, "Shop A", "a")
    other = factories.merchant(session, runtime.settings, "Shop B", "b")
    session.commit()
    # Past every check, straight to the table: the unique index is the last guard.
    with pytest.raises(IntegrityError) as raised:
        session.execute(
            update(Merchant)
            .where(Merchant.id == other.id)
            .values(solana_wallet=first.solana_wallet)
        )
    session.rollback()
    mapped = accounts.destination_taken(raised.value)
    assert mapped is not None and mapped.field == "solana_wallet"
    # Any number of merchants may have no wallet yet (a partial index: NULLs never clash).
    session.execute(update(Merchant).values(solana_wallet=None))
    session.commit()


def _owner_client(app_client: FlaskClient) -> FlaskClient:
    login(app_client, "owner@b.test", factories.PASSWORD)
    return app_client


@pytest.fixture
def two_shops(runtime: Runtime) -> dict[str, int | str]:
    with runtime.session_factory.begin() as session:
        first = factories.merchant(session, runtime.settings, "Shop A", "a")
        other = factories.merchant(session, runtime.settings, "Shop B", "b")
        factories.user(session, "owner@b.test", Role.OWNER, other.id)
        return {"first": first.id, "other": other.id, "wallet": first.solana_wallet or ""}


def _save_wallet(client: FlaskClient, wallet: str) -> tuple[int, str]:
    token = csrf_from(client, "/merchant/setup/solana")
    response = client.post(
        "/merchant/setup/solana", data={"csrf_token": token, "solana_wallet": wallet}
    )
    return response.status_code, response.get_data(as_text=True)


def _wallet_of(runtime: Runtime, merchant_id: int | str) -> str | None:
    with runtime.session_factory() as session:
        return session.scalar(select(Merchant.solana_wallet).where(Merchant.id == merchant_id))


def test_the_setup_page_refuses_anothers_wallet_the_zones_a_program_and_the_mint(
    client: FlaskClient, runtime: Runtime, two_shops: dict[str, int | str]
) -> None:
    owner = _owner_client(client)
    before = _wallet_of(runtime, two_shops["other"])
    for wallet, message in [
        (str(two_shops["wallet"]), "another merchant"),
        (runtime.settings.zone_kzte_wallet or "", "zone"),
        ("11111111111111111111111111111111", "not a wallet"),
        (runtime.settings.kzte_mint or "", "KZTE token mint"),
    ]:
        status, page = _save_wallet(owner, wallet)
        assert status == 400 and 'id="solana_wallet-error"' in page, wallet
        assert message in page.replace("&#39;", "'"), wallet
    assert _wallet_of(runtime, two_shops["other"]) == before


def test_a_race_lost_at_commit_is_the_same_clear_error(
    client: FlaskClient,
    runtime: Runtime,
    two_shops: dict[str, int | str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    owner = _owner_client(client)
    wallet = str(Keypair().pubkey())

    def someone_else_saves_it_first(_rpc_url: str, address: str) -> bool:
        # Stands in for the node call (no node in these tests), which runs between the check
        # and the commit: exactly where another owner's request can take the wallet.
        with runtime.session_factory.begin() as other_session:
            other_session.execute(
                update(Merchant)
                .where(Merchant.id == two_shops["first"])
                .values(solana_wallet=address)
            )
        return True

    monkeypatch.setattr(wallet_check, "check_wallet_on_chain", someone_else_saves_it_first)
    status, page = _save_wallet(owner, wallet)
    assert status == 400 and 'id="solana_wallet-error"' in page  # not a 500
    assert "another merchant" in page.replace("&#39;", "'")
    assert _wallet_of(runtime, two_shops["first"]) == wallet


def test_an_unreachable_node_leaves_the_offline_checks(caplog: pytest.LogCaptureFixture) -> None:
    # Port 9 (discard) on localhost: nothing listens, the connection is refused at once.
    wallet = str(Keypair().pubkey())
    assert wallet_check.check_wallet_on_chain("http://127.0.0.1:9", wallet) is False
    assert "accepted on the offline checks only" in caplog.text


def test_the_cli_refuses_a_taken_or_zone_wallet(
    runtime: Runtime,
    two_shops: dict[str, int | str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from pos.cli import main

    settings = runtime.settings
    monkeypatch.setenv("CRYPTOCITY_MODE", "demo")
    monkeypatch.setenv("CRYPTOCITY_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("DATABASE_URL", settings.database_url)
    monkeypatch.setenv("REDIS_URL", settings.redis_url or "")
    monkeypatch.setenv("KZTE_MINT", settings.kzte_mint or "")
    monkeypatch.setenv("SOLANA_RPC_URL", "http://127.0.0.1:9")  # no node: offline checks
    for wallet, message in [
        (str(two_shops["wallet"]), "another merchant"),
        (settings.kzte_mint or "", "KZTE token mint"),
    ]:
        capsys.readouterr()
        code = main(["merchant", "create", "--name", "Copycat", "--solana-wallet", wallet])
        assert code == 2 and message in capsys.readouterr().err
