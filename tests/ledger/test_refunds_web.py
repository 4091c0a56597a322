"""Issue #14 refunds through the portal and the CLI: claim links, the shopper's claim page in
en/ru/kk, who may record what, and one merchant never touching another's refunds."""

from __future__ import annotations

import json
import re

import pytest
from flask import Flask
from ledger_support import MakeInvoice, book_all, pay
from solders.keypair import Keypair
from sqlalchemy.orm import Session

from pos.cli import main
from pos.models import Merchant, Role
from pos.runtime import Runtime
from settlement.ledger import refunds
from settlement.ledger.models import Refund, RefundStatus

import factories
from portal_helpers import csrf_from, login

pytestmark = pytest.mark.db


@pytest.fixture
def overpaid(runtime: Runtime, session: Session, make_invoice: MakeInvoice, shop: Merchant) -> str:
    factories.user(session, "owner@shop.test", Role.OWNER, shop.id)
    other = factories.merchant(session, runtime.settings, "Other", "refund-other")
    factories.user(session, "owner@other.test", Role.OWNER, other.id)
    factories.user(session, "ops@refunds.test", Role.OPERATOR)
    session.commit()
    invoice = make_invoice(100_000)  # KZTE, `tenge`
    pay(session, invoice, invoice.amount_due_atomic + 50_000_000)  # 50 ₸ over
    book_all(session, runtime.settings)
    return invoice.id


def _signature() -> str:
    from solders.hash import Hash
    from solders.message import Message
    from solders.transaction import Transaction

    payer = Keypair()
    tx = Transaction([payer], Message([], payer.pubkey()), Hash.default())
    return str(tx.signatures[0])


def test_claim_link_page_and_who_records_what(
    app: Flask, runtime: Runtime, session: Session, overpaid: str
) -> None:
    owner = app.test_client()
    login(owner, "owner@shop.test", factories.PASSWORD)
    token = csrf_from(owner, "/refunds/")
    made = owner.post("/refunds/", data={"invoice_id": overpaid, "csrf_token": token})
    assert made.status_code == 303
    page = owner.get("/refunds/").get_data(as_text=True)
    link = re.search(r"/r/([A-Za-z0-9_-]{20,})", page)
    assert link is not None
    claim_path = link.group(0)
    [refund] = refunds.list_refunds(session)
    assert (refund.amount_tiyn, refund.amount_atomic) == (5_000, 50_000_000)

    shopper = app.test_client()
    first = shopper.get(claim_path)
    assert first.status_code == 200 and "50 KZTE" in first.get_data(as_text=True)
    shopper.set_cookie("lang", "ru")
    assert "Получите возврат" in shopper.get(claim_path).get_data(as_text=True)
    shopper.set_cookie("lang", "en")
    csrf = csrf_from(shopper, claim_path)
    program = shopper.post(
        claim_path,
        data={"destination": "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA", "csrf_token": csrf},
    )
    assert program.status_code == 422  # a program id can never receive a refund
    session.expire_all()
    assert session.get_one(Refund, refund.id).status is RefundStatus.CLAIMABLE
    wallet = str(Keypair().pubkey())
    good = shopper.post(claim_path, data={"destination": wallet, "csrf_token": csrf})
    assert good.status_code == 200 and wallet in good.get_data(as_text=True)
    session.expire_all()
    claimed = session.get_one(Refund, refund.id)
    assert claimed.status is RefundStatus.CLAIMED and claimed.destination_account
    assert shopper.get("/r/not-a-real-token").status_code == 404

    # The zone holds a `tenge` merchant's crypto: its owner cannot record a send.
    signature = _signature()
    forbidden = owner.post(
        f"/refunds/{refund.id}/sent", data={"txid": signature, "csrf_token": token}
    )
    assert forbidden.status_code == 403
    stranger = app.test_client()
    login(stranger, "owner@other.test", factories.PASSWORD)
    assert overpaid not in stranger.get("/refunds/").get_data(as_text=True)
    cancel = stranger.post(
        f"/refunds/{refund.id}/cancel", data={"csrf_token": csrf_from(stranger, "/refunds/")}
    )
    assert cancel.status_code == 303
    session.expire_all()
    assert session.get_one(Refund, refund.id).status is RefundStatus.CLAIMED  # untouched

    ops = app.test_client()
    login(ops, "ops@refunds.test", factories.PASSWORD)
    ops_token = csrf_from(ops, "/refunds/")
    bad = ops.post(f"/refunds/{refund.id}/sent", data={"txid": "nope", "csrf_token": ops_token})
    assert bad.status_code == 303
    assert "not a Solana transaction signature" in ops.get("/refunds/").get_data(as_text=True)
    ops.post(f"/refunds/{refund.id}/sent", data={"txid": signature, "csrf_token": ops_token})
    session.expire_all()
    sent = session.get_one(Refund, refund.id)
    assert sent.status is RefundStatus.SENT and sent.txid == signature
    after = shopper.get(claim_path).get_data(as_text=True)
    assert "sent; waiting for the network" in after and 'name="destination"' not in after


def test_refunds_from_the_cli(
    runtime: Runtime,
    session: Session,
    overpaid: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    s = runtime.settings
    for name, value in {
        "CRYPTOCITY_MODE": "demo",
        "CRYPTOCITY_DATA_DIR": str(s.data_dir),
        "DATABASE_URL": s.database_url,
        "REDIS_URL": s.redis_url or "",
        "KZTE_MINT": s.kzte_mint or "",
    }.items():
        monkeypatch.setenv(name, value)

    def run(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = main(list(args))
        out, err = capsys.readouterr()
        return code, out, err

    code, out, _err = run(
        "refunds", "create", "--invoice", overpaid, "--amount-atomic", "20000000", "--json"
    )
    assert code == 0
    created = json.loads(out)
    assert (created["amount_atomic"], created["amount_tiyn"]) == (20_000_000, 2_000)
    assert created["claim_url"].endswith(created["claim_path"])
    code, _out, err = run("refunds", "create", "--invoice", overpaid, "--amount-atomic", "40000000")
    assert code != 0 and "at most 30000000" in err
    code, out, _err = run("refunds", "list", "--json")
    assert [r["status"] for r in json.loads(out)["refunds"]] == ["claimable"]
    code, _out, err = run("refunds", "record-sent", str(created["id"]), "--txid", _signature())
    assert code != 0 and "only a claimed refund" in err
    code, out, _err = run("refunds", "cancel", str(created["id"]), "--json")
    assert code == 0 and json.loads(out)["status"] == "cancelled"
    # The sale itself, given back in part: a return of 100 ₸ of it.
    code, out, _err = run("refunds", "return", "--invoice", overpaid, "--amount", "100", "--json")
    assert code == 0
    returned = json.loads(out)
    assert (returned["kind"], returned["amount_tiyn"]) == ("sale_return", 10_000)
    code, _out, err = run("refunds", "return", "--invoice", overpaid, "--amount", "1 000 000")
    assert code != 0 and "of this sale can be returned" in err
    code, _out, err = run("refunds", "return", "--invoice", overpaid, "--amount", "ten")
    assert code != 0 and "is not an amount in tenge" in err
