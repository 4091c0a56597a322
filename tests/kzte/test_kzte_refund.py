"""Issue #14 refunds on the sandbox Solana validator: an overpaid `tenge` KZTE invoice owes the
difference back; the shopper claims it with their wallet; the zone's wallet sends it; the
refund watcher finds the transfer finalized and only then posts it. A transfer that does not
come from the zone's token account is never taken for the refund."""

from __future__ import annotations

import hashlib
import time
from decimal import Decimal
from pathlib import Path

import pytest
from kzte_support import Shop
from solders.keypair import Keypair

from pos import accounts
from pos.models import SettlementMode
from pos.states import InvoiceStatus
from sandbox.solana.keys import save_keypair
from sandbox.solana.wallet import pay_uri
from settlement import refund_watch
from settlement.ledger import refunds
from settlement.ledger.balances import balance_map
from settlement.ledger.booking import drain_queue
from settlement.ledger.models import Refund, RefundStatus

pytestmark = pytest.mark.db


def _zone_wallet_dir(tmp_path: Path) -> Path:
    """The test zone's wallet (demo_solana_wallet("test zone") in tests/conftest.py)."""
    seed = hashlib.sha256(b"cryptocity demo solana test zone").digest()
    directory = tmp_path / "zone-wallet"
    directory.mkdir()
    save_keypair(directory / "wallet.json", Keypair.from_seed(seed))
    return directory


def _send(shop: Shop, wallet_dir: Path, to: str, base_units: int) -> str:
    amount = Decimal(base_units) / Decimal(10**shop.rt.settings.kzte_decimals)
    uri = f"solana:{to}?amount={amount}&spl-token={shop.rt.settings.kzte_mint}"
    [signature] = pay_uri(
        uri,
        rpc_url=shop.validator.rpc_url,
        wallet_dir=wallet_dir,
        faucet_data_dir=shop.validator.data_dir,
    )
    return signature


def _watch_until(shop: Shop, refund_id: int, done: RefundStatus, tries: int = 60) -> Refund:
    for _ in range(tries):
        refund_watch.run(shop.rt)
        with shop.rt.session_factory() as session:
            refund = session.get_one(Refund, refund_id)
            if refund.status is done:
                session.expunge(refund)
                return refund
        time.sleep(0.5)
    raise AssertionError(f"refund {refund_id} stuck: {refund.status} {refund.problem}")


def test_an_overpayment_is_claimed_sent_by_the_zone_and_posted_once_final(
    shop: Shop, tmp_path: Path
) -> None:
    assert shop.rt.settings.zone_kzte_wallet == str(
        Keypair.from_seed(hashlib.sha256(b"cryptocity demo solana test zone").digest()).pubkey()
    )
    with shop.rt.session_factory.begin() as session:
        tenge = accounts.create_merchant(
            session, shop.rt.settings, "Refunding Shop", settlement_mode=SettlementMode.TENGE
        )
        shop.merchant_id = tenge.id
    invoice = shop.invoice(1000_00)
    shop.pay(shop.uri(invoice.id), Decimal("1.25"))  # 250 ₸ over
    shop.drive_until(invoice.id, lambda i: i.status is InvoiceStatus.SETTLED, "settled")
    drain_queue(shop.rt.session_factory, shop.rt.settings)
    over_units = invoice.amount_due_atomic // 4
    with shop.rt.session_factory() as session:
        assert balance_map(session)["zone:refunds_due"] == (25_000, None)
        refund = refunds.create(session, shop.rt.settings, invoice.id)
        session.commit()
        assert (refund.amount_tiyn, refund.amount_atomic) == (25_000, over_units)
        with pytest.raises(refunds.RefundError, match="owes nothing back"):
            refunds.create(session, shop.rt.settings, invoice.id)  # all of it is claimed
        token, refund_id = refund.token, refund.id

    shopper = Keypair()
    with shop.rt.session_factory() as session:
        refunds.claim(session, shop.rt.settings, token, str(shopper.pubkey()))
        session.commit()

    # Someone else (the shopper's own wallet here) pays the claimant: not the zone's refund.
    stranger = _send(shop, shop.shopper_dir, str(shopper.pubkey()), over_units)
    with shop.rt.session_factory() as session:
        refunds.record_sent(session, refund_id, stranger)
        session.commit()
    for _ in range(60):
        refund_watch.run(shop.rt)
        with shop.rt.session_factory() as session:
            seen = session.get_one(Refund, refund_id)
            if seen.problem and "zone's token account" in seen.problem:
                break
        time.sleep(0.5)
    assert seen.status is RefundStatus.SENT and "zone's token account" in (seen.problem or "")

    # The right transaction: the zone's wallet sends it, and its signature replaces the wrong one.
    signature = _send(shop, _zone_wallet_dir(tmp_path), str(shopper.pubkey()), over_units)
    with shop.rt.session_factory() as session:
        refunds.record_sent(session, refund_id, signature)
        session.commit()
    done = _watch_until(shop, refund_id, RefundStatus.CONFIRMED)
    assert done.problem is None and done.transaction_id is not None
    with shop.rt.session_factory() as session:
        balances = balance_map(session)
    assert balances["zone:refunds_due"] == (0, None)
    clearing_tiyn, clearing_units = balances["zone:clearing:kzte"]
    assert clearing_tiyn == 100_000 and clearing_units == invoice.amount_due_atomic
    refund_watch.run(shop.rt)  # nothing more to do: posted once
    with shop.rt.session_factory() as session:
        assert balance_map(session)["zone:clearing:kzte"] == (clearing_tiyn, clearing_units)
