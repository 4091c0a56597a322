"""Refunds of money owed back (DESIGN §7): create → claim → send → confirm, or cancel.

What an invoice owes back is what its booking put on `owed_back` (paid over, paid after the
late window, paid to an invoice that expired short or was invalidated), in tiyn and in the
atomic units the shopper sent; refunds already made or in flight (not cancelled) are taken off.

1. The owner or an operator creates a refund: a claim link `/r/<token>` (unguessable) for the
   whole amount still owed back, or part of it.
2. The shopper opens the link and enters their own address: a Bitcoin address of the zone's
   network, or a Solana wallet that can own the KZTE token account (validated by
   `pos.refund_destinations`; the KZTE refund pays that wallet's associated token account).
3. Whoever holds the crypto sends it — the zone in `tenge` mode, the merchant in `direct` —
   from a wallet the server does not hold, and records the txid / signature.
4. The refund watcher (`settlement.refund_watch`) finds that transaction on chain, checks that
   it pays the claimed destination at least the claimed amount (and, `tenge`, that it spends
   from the zone's own destinations), waits for finality, and only then posts
   Dr zone:refunds_due / Cr zone:clearing:<method> (`direct`: the merchant's memorandum
   refunds_owed / crypto_received), with the quantity on the clearing leg.

A settled sale can also be returned by its merchant (`create_return`, the owner's "Return
sale"): a `sale_return` refund of the sale's value, or part of it, in tenge. The booking moves
that much out of the merchant's payable (`tenge`; the zone keeps its fee) or its memorandum
sales (`direct`) to what is owed back, at once; cancelling it before it is sent reverses that.
Its crypto is the sale's at the rate locked on the invoice, rounded down to the atomic unit
(the shopper never gets back more than that part paid); from there it is claimed, sent and
confirmed as any refund.
"""

from __future__ import annotations

import re
import secrets
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from pos import accounts, chart, ledger_queue, money, refund_destinations
from pos.db import utcnow
from pos.i18n import N_
from pos.models import Invoice, SettlementMode
from pos.settings import Settings
from pos.states import InvoiceStatus, PaymentMethod
from settlement.ledger.booking import sale_returns, split
from settlement.ledger.errors import LedgerError
from settlement.ledger.models import Refund, RefundKind, RefundStatus, Side, TransactionKind
from settlement.ledger.posting import Leg, Posting, write_posting

ACTIVE = (RefundStatus.CLAIMABLE, RefundStatus.CLAIMED, RefundStatus.SENT, RefundStatus.CONFIRMED)
_BTC_TXID = re.compile(r"^[0-9a-f]{64}$")


class RefundError(LedgerError):
    """A refund that cannot be created, claimed, sent or cancelled as asked."""


def available(session: Session, settings: Settings, invoice: Invoice) -> tuple[int, int]:
    """(tiyn, atomic) still owed back: the booking's owed-back less refunds not cancelled."""
    owed_tiyn, owed_atomic = split(invoice, settings).owed_back
    taken_tiyn, taken_atomic = session.execute(
        select(func.sum(Refund.amount_tiyn), func.sum(Refund.amount_atomic)).where(
            Refund.invoice_id == invoice.id,
            Refund.kind == RefundKind.OWED_BACK,
            Refund.status.in_(ACTIVE),
        )
    ).one()
    return owed_tiyn - int(taken_tiyn or 0), owed_atomic - int(taken_atomic or 0)


def returnable(session: Session, settings: Settings, invoice: Invoice) -> int:
    """Tiyn of a settled sale its merchant can still return: the sale less returns made."""
    if invoice.status is not InvoiceStatus.SETTLED:
        return 0
    returns = sale_returns(session, invoice.id)
    sale = split(invoice, settings, returns)
    return max(sale.sale_tiyn - sum(tiyn for _id, tiyn in returns), 0)


def return_atomic(invoice: Invoice, settings: Settings, tiyn: int) -> int:
    """The crypto of `tiyn` of the sale: its share of what the sale took, rounded down."""
    sale = split(invoice, settings)
    if sale.sale_tiyn <= 0:
        return 0
    # The sale's atomic units: the allocation's, less the satoshi ceiling above the price.
    sale_atomic = sale.allocated_atomic * sale.sale_tiyn // sale.allocated_tiyn
    return sale_atomic * tiyn // sale.sale_tiyn


def get(session: Session, refund_id: int, merchant_id: int | None = None) -> Refund:
    """One refund; another merchant's does not exist for them."""
    return _get(session, refund_id, merchant_id)


def _get(session: Session, refund_id: int, merchant_id: int | None) -> Refund:
    refund = session.get(Refund, refund_id)
    if refund is None or (merchant_id is not None and refund.merchant_id != merchant_id):
        raise RefundError(N_("there is no refund %(refund)s"), refund=refund_id)
    return refund


def _invoice(session: Session, invoice_id: str, merchant_id: int | None) -> Invoice:
    """The invoice; another merchant's does not exist for them."""
    invoice = session.get(Invoice, invoice_id)
    if invoice is None or (merchant_id is not None and invoice.merchant_id != merchant_id):
        raise RefundError(N_("there is no invoice %(invoice)s"), invoice=invoice_id)
    return invoice


def _claimable(
    session: Session,
    invoice: Invoice,
    kind: RefundKind,
    tiyn: int,
    atomic: int,
    user_id: int | None,
    now: datetime | None,
) -> Refund:
    """A new refund row with its claim token, awaiting the shopper's address."""
    refund = Refund(
        token=secrets.token_urlsafe(24),
        invoice_id=invoice.id,
        merchant_id=invoice.merchant_id,
        method=invoice.method.value,
        settlement_mode=invoice.settlement_mode.value,
        kind=kind,
        amount_tiyn=tiyn,
        amount_atomic=atomic,
        status=RefundStatus.CLAIMABLE,
        created_by_user_id=user_id,
        created_at=now or utcnow(),
    )
    session.add(refund)
    session.flush()
    return refund


def create(
    session: Session,
    settings: Settings,
    invoice_id: str,
    *,
    amount_atomic: int | None = None,
    merchant_id: int | None = None,
    user_id: int | None = None,
    now: datetime | None = None,
) -> Refund:
    """A claimable refund of what `invoice_id` still owes back (all of it by default)."""
    invoice = _invoice(session, invoice_id, merchant_id)
    owed_tiyn, owed_atomic = available(session, settings, invoice)
    if owed_atomic <= 0 or owed_tiyn <= 0:
        raise RefundError(
            N_("invoice %(invoice)s owes nothing back (or its refunds cover it)"),
            invoice=invoice_id,
        )
    atomic = owed_atomic if amount_atomic is None else amount_atomic
    if not 0 < atomic <= owed_atomic:
        raise RefundError(
            N_("invoice %(invoice)s owes back at most %(atomic)s atomic units"),
            invoice=invoice_id,
            atomic=owed_atomic,
        )
    tiyn = owed_tiyn if atomic == owed_atomic else owed_tiyn * atomic // owed_atomic
    if tiyn <= 0:
        raise RefundError(N_("that part is worth less than a tiyn; refund more of it"))
    refund = _claimable(session, invoice, RefundKind.OWED_BACK, tiyn, atomic, user_id, now)
    accounts.audit(
        session,
        "refund.created",
        actor_user_id=user_id,
        merchant_id=invoice.merchant_id,
        detail={"refund_id": refund.id, "invoice_id": invoice.id, "amount_atomic": atomic},
    )
    return refund


def create_return(
    session: Session,
    settings: Settings,
    invoice_id: str,
    *,
    amount_tiyn: int | None = None,
    merchant_id: int | None = None,
    user_id: int | None = None,
    now: datetime | None = None,
) -> Refund:
    """The merchant returns a settled sale, all of it by default: a claimable `sale_return`."""
    invoice = _invoice(session, invoice_id, merchant_id)
    if invoice.status is not InvoiceStatus.SETTLED:
        raise RefundError(N_("only a settled sale can be returned"))
    ledger_queue.lock_invoice(session, invoice.id)  # two returns at once cannot both fit
    left = returnable(session, settings, invoice)
    if left <= 0:
        raise RefundError(N_("this sale has been returned in full already"))
    tiyn = left if amount_tiyn is None else amount_tiyn
    if not 0 < tiyn <= left:
        raise RefundError(
            N_("at most %(amount)s ₸ of this sale can be returned"), amount=money.format_kzt(left)
        )
    atomic = return_atomic(invoice, settings, tiyn)
    if atomic <= 0:
        raise RefundError(N_("that part is worth less than one unit of the coin; return more"))
    refund = _claimable(session, invoice, RefundKind.SALE_RETURN, tiyn, atomic, user_id, now)
    ledger_queue.enqueue(session, invoice.id)  # the booking moves it out of the sale at once
    accounts.audit(
        session,
        "refund.sale_returned",
        actor_user_id=user_id,
        merchant_id=invoice.merchant_id,
        detail={"refund_id": refund.id, "invoice_id": invoice.id, "amount_tiyn": tiyn},
    )
    return refund


def by_token(session: Session, token: str) -> Refund:
    refund = session.scalar(select(Refund).where(Refund.token == token)) if token else None
    if refund is None:
        raise RefundError(N_("this refund link is not valid"))
    return refund


def claim(session: Session, settings: Settings, token: str, destination: str) -> Refund:
    """The shopper says where to send it; allowed until it is sent."""
    refund = by_token(session, token)
    if refund.status not in (RefundStatus.CLAIMABLE, RefundStatus.CLAIMED):
        raise RefundError(N_("this refund is already %(status)s"), status=refund.status)
    if refund.method == PaymentMethod.BTC.value:
        refund.destination = refund_destinations.parse_btc_refund_address(
            destination, settings.bitcoin_network
        )
        refund.destination_account = None
    else:
        mint = settings.kzte_mint or ""
        wallet = refund_destinations.parse_kzte_refund_wallet(destination, mint=mint)
        refund.destination = wallet
        refund.destination_account = refund_destinations.kzte_refund_token_account(wallet, mint)
    refund.status, refund.claimed_at = RefundStatus.CLAIMED, utcnow()
    accounts.audit(
        session,
        "refund.claimed",
        merchant_id=refund.merchant_id,
        detail={"refund_id": refund.id, "destination": refund.destination},
    )
    session.flush()
    return refund


def record_sent(
    session: Session,
    refund_id: int,
    txid: str,
    *,
    merchant_id: int | None = None,
    user_id: int | None = None,
    search_from_height: int | None = None,
) -> Refund:
    """The sender's transaction id; the watcher takes it from here. Until it is confirmed a
    wrong txid can be replaced by the right one (the watcher says what does not match)."""
    refund = _get(session, refund_id, merchant_id)
    if refund.status not in (RefundStatus.CLAIMED, RefundStatus.SENT):
        raise RefundError(
            N_("refund %(refund)s is %(status)s; only a claimed refund can be sent"),
            refund=refund.id,
            status=refund.status,
        )
    refund.block_hash = None
    cleaned = txid.strip()
    if refund.method == PaymentMethod.BTC.value:
        cleaned = cleaned.lower()
        if not _BTC_TXID.match(cleaned):
            raise RefundError(N_("a Bitcoin txid is 64 hexadecimal characters"))
    else:
        from solders.signature import Signature

        try:
            Signature.from_string(cleaned)
        except ValueError:
            raise RefundError(N_("that is not a Solana transaction signature")) from None
    if session.scalar(select(Refund.id).where(Refund.txid == cleaned, Refund.id != refund.id)):
        raise RefundError(N_("that transaction is already recorded for another refund"))
    refund.txid, refund.status, refund.sent_at = cleaned, RefundStatus.SENT, utcnow()
    refund.search_from_height, refund.problem = search_from_height, None
    accounts.audit(
        session,
        "refund.sent",
        actor_user_id=user_id,
        merchant_id=refund.merchant_id,
        detail={"refund_id": refund.id, "txid": cleaned},
    )
    session.flush()
    return refund


def cancel(
    session: Session, refund_id: int, *, merchant_id: int | None = None, user_id: int | None = None
) -> Refund:
    refund = _get(session, refund_id, merchant_id)
    if refund.status not in (RefundStatus.CLAIMABLE, RefundStatus.CLAIMED):
        raise RefundError(
            N_("refund %(refund)s is %(status)s and cannot be cancelled"),
            refund=refund.id,
            status=refund.status,
        )
    refund.status = RefundStatus.CANCELLED
    if refund.kind is RefundKind.SALE_RETURN:
        ledger_queue.enqueue(session, refund.invoice_id)  # the booking reverses the return
    accounts.audit(
        session,
        "refund.cancelled",
        actor_user_id=user_id,
        merchant_id=refund.merchant_id,
        detail={"refund_id": refund.id},
    )
    session.flush()
    return refund


def confirm(session: Session, refund: Refund, now: datetime | None = None) -> Refund:
    """The watcher found it final on chain: post it (once; its key is the refund's)."""
    now = now or utcnow()
    method = PaymentMethod(refund.method)
    if refund.settlement_mode == SettlementMode.DIRECT.value:
        owed, held = (
            chart.refunds_owed(refund.merchant_id),
            chart.crypto_received(refund.merchant_id, method),
        )
    else:
        owed, held = chart.REFUNDS_DUE, chart.clearing(method)
    txn, _new = write_posting(
        session,
        Posting(
            key=f"refund:{refund.id}",
            kind=TransactionKind.REFUND,
            legs=[
                Leg(owed, Side.DEBIT, refund.amount_tiyn),
                Leg(held, Side.CREDIT, refund.amount_tiyn, refund.amount_atomic),
            ],
            effective_at=now,
            invoice_id=refund.invoice_id,
            merchant_id=refund.merchant_id,
            method=refund.method,
            description=f"refund {refund.id} of invoice {refund.invoice_id}, tx {refund.txid}",
        ),
    )
    refund.status, refund.confirmed_at, refund.transaction_id = RefundStatus.CONFIRMED, now, txn.id
    refund.problem = None
    session.flush()
    return refund


def list_refunds(
    session: Session, merchant_id: int | None = None, status: RefundStatus | None = None
) -> list[Refund]:
    query = select(Refund).order_by(Refund.id.desc())
    if merchant_id is not None:
        query = query.where(Refund.merchant_id == merchant_id)
    if status is not None:
        query = query.where(Refund.status == status)
    return list(session.scalars(query.limit(1000)).all())


def as_dict(refund: Refund, claim_url: str | None = None) -> dict[str, object]:
    return {
        "id": refund.id,
        "invoice_id": refund.invoice_id,
        "merchant_id": refund.merchant_id,
        "method": refund.method,
        "settlement_mode": refund.settlement_mode,
        "kind": refund.kind.value,
        "amount_tiyn": refund.amount_tiyn,
        "amount_atomic": refund.amount_atomic,
        "status": refund.status.value,
        "destination": refund.destination,
        "txid": refund.txid,
        "problem": refund.problem,
        "claim_path": f"/r/{refund.token}",
        "claim_url": claim_url,
    }
