"""Invoice services: create, change status, publish to Redis, rebuild Redis, expire.

Services take a `Session` and never commit: the caller owns the transaction. Events written in
that transaction are the outbox; `publish_invoice_events` mirrors them into Redis after commit,
and `relay_unpublished` retries whatever Redis missed.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from pos import ledger_queue, money
from pos.coordination import Coordinator, chunked
from pos.db import utcnow
from pos.errors import (
    AllocationCollisionError,
    ConcurrentUpdateError,
    CoordinationUnavailableError,
    MerchantNotActiveError,
    NotFoundError,
    PaymentMethodUnavailableError,
    ValidationError,
)
from pos.i18n import N_
from pos.methods import bitcoin, kzte
from pos.models import (
    BtcAccountKey,
    Invoice,
    InvoiceEvent,
    Merchant,
    MerchantStatus,
    SettlementMode,
)
from pos.rates import RateBook, RateQuote
from pos.settings import Settings
from pos.states import EventType, InvoiceStatus, PaymentMethod, transition

log = logging.getLogger(__name__)

_ID_ALPHABET = "23456789abcdefghijkmnpqrstuvwxyz"  # no 0/o/1/l: read aloud at a counter
MIN_BTC_DUE_SAT = 1_000  # well above bitcoin.DUST_LIMIT_SAT
# A freshly allocated address, reference or id found taken is allocated again this many times.
ALLOCATION_ATTEMPTS = 5
# How SQLite ("invoices.btc_address") and PostgreSQL ("uq_invoices_btc_address",
# "pk_invoices") name the unique columns an invoice is allocated (SQLite names whichever
# unique index it checks first).
_ALLOCATED_COLUMNS = (
    "btc_derivation_index",  # (btc_account_key_id, btc_derivation_index) on either backend
    "invoices.btc_address",
    "invoices.kzte_reference",
    "invoices.id",
    "invoices_btc_address",
    "invoices_kzte_reference",
    "pk_invoices",
)
TERMINAL = frozenset({InvoiceStatus.EXPIRED, InvoiceStatus.INVALID, InvoiceStatus.SETTLED})


def new_invoice_id() -> str:
    """20 characters from a 32-letter alphabet: 100 bits, unguessable, fits a URL."""
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(20))


@dataclass(frozen=True)
class InvoiceRequest:
    merchant_id: int
    price_tiyn: int
    method: PaymentMethod
    description: str = ""
    order_id: str | None = None
    created_by_user_id: int | None = None


def create_invoice(
    session: Session,
    settings: Settings,
    rates: RateBook,
    request: InvoiceRequest,
    now: datetime | None = None,
) -> Invoice:
    """Quote, lock the rate, allocate the address or reference, and record `invoice.created`."""
    now = now or utcnow()
    merchant = session.get(Merchant, request.merchant_id)
    if merchant is None:
        raise NotFoundError(N_("no such merchant"))
    if merchant.status is not MerchantStatus.ACTIVE:
        raise MerchantNotActiveError(
            N_("merchant %(name)s is %(state)s; invoices cannot be created"),
            name=repr(merchant.name),
            state=merchant.status,
        )
    _check_price(settings, request.price_tiyn)
    if len(request.description) > 200:
        raise ValidationError(N_("description is limited to 200 characters"), field="description")

    invoice = Invoice(
        id=new_invoice_id(),
        merchant_id=merchant.id,
        created_by_user_id=request.created_by_user_id,
        method=request.method,
        status=InvoiceStatus.NEW,
        version=1,
        price_tiyn=request.price_tiyn,
        description=request.description,
        order_id=request.order_id,
        created_at=now,
        expires_at=now + timedelta(minutes=merchant.expiry_minutes),
        amount_paid_atomic=0,
        settlement_mode=merchant.settlement_mode,
    )
    for attempt in range(1, ALLOCATION_ATTEMPTS + 1):
        if request.method is PaymentMethod.BTC:
            _quote_btc(session, settings, rates, merchant, invoice, now)
        else:
            _quote_kzte(session, settings, rates, merchant, invoice, now)
        try:
            with session.begin_nested():
                session.add(invoice)
                session.flush()
            break
        except IntegrityError as exc:
            # The address, reference or id is some other invoice's (an address an old invoice
            # of a re-added key took, say): take the next one, never a 500.
            if not _is_allocation_collision(exc):
                raise
            log.warning("invoice %s: %s taken, allocating again", invoice.id, exc.orig)
            if attempt == ALLOCATION_ATTEMPTS:
                raise AllocationCollisionError(
                    N_(
                        "the payment address or reference picked for this invoice is already in "
                        "use; nothing was created, try again"
                    )
                ) from None
            invoice.id = new_invoice_id()
    _add_event(session, invoice, EventType.CREATED, None, {"price_tiyn": invoice.price_tiyn})
    session.flush()
    return invoice


def _is_allocation_collision(error: IntegrityError) -> bool:
    text = str(error.orig).lower()
    return any(name in text for name in _ALLOCATED_COLUMNS)


def _check_price(settings: Settings, price_tiyn: int) -> None:
    if price_tiyn <= 0:
        raise ValidationError(N_("the amount must be more than zero"), field="amount")
    if price_tiyn < settings.min_invoice_tiyn:
        raise ValidationError(
            N_("the smallest invoice is %(amount)s ₸"),
            field="amount",
            amount=money.format_kzt(settings.min_invoice_tiyn),
        )
    if price_tiyn > settings.max_invoice_tiyn:
        raise ValidationError(
            N_("the largest invoice is %(amount)s ₸"),
            field="amount",
            amount=money.format_kzt(settings.max_invoice_tiyn),
        )


def _quote_btc(
    session: Session,
    settings: Settings,
    rates: RateBook,
    merchant: Merchant,
    invoice: Invoice,
    now: datetime,
) -> None:
    if invoice.settlement_mode is SettlementMode.TENGE:
        if not settings.zone_btc_xpub:
            raise PaymentMethodUnavailableError(
                N_("the zone has no Bitcoin account key (ZONE_BTC_XPUB); Bitcoin payments are off")
            )
        xpub = settings.zone_btc_xpub
    elif merchant.btc_xpub:
        xpub = merchant.btc_xpub
    else:
        raise PaymentMethodUnavailableError(N_("this merchant has not set up Bitcoin payments"))
    quote = rates.btc_kzt(now)  # raises RateUnavailableError with a clear message
    due_sat = money.btc_due_sat(invoice.price_tiyn, quote.rate)
    if due_sat < MIN_BTC_DUE_SAT:
        raise ValidationError(N_("the amount is too small to pay in Bitcoin"), field="amount")
    # Atomic index allocation, per account key: concurrent invoices never share an address.
    if invoice.settlement_mode is SettlementMode.TENGE:
        key_id = _zone_key_id(session, xpub)  # one zone-wide index for every tenge merchant
    else:
        key_id = _account_key_id(session, merchant, xpub)
    index = (
        session.execute(
            update(BtcAccountKey)
            .where(BtcAccountKey.id == key_id)
            .values(next_index=BtcAccountKey.next_index + 1)
            .returning(BtcAccountKey.next_index)
        ).scalar_one()
        - 1
    )
    invoice.btc_account_key_id = key_id
    _lock_rate(invoice, quote)
    invoice.amount_due_atomic = due_sat
    invoice.btc_derivation_index = index
    invoice.btc_address = bitcoin.derive_address(xpub, index, settings.bitcoin_network)


def _account_key_id(session: Session, merchant: Merchant, xpub: str) -> int:
    """The id of the merchant's current key row (made on first use for keys set directly)."""
    identity = bitcoin.account_identity(xpub)
    found = session.scalar(
        select(BtcAccountKey.id).where(
            BtcAccountKey.identity == identity, BtcAccountKey.merchant_id == merchant.id
        )
    )
    if found is not None:
        return found
    try:
        with session.begin_nested():
            row = BtcAccountKey(merchant_id=merchant.id, xpub=xpub, identity=identity)
            session.add(row)
    except IntegrityError:
        raise PaymentMethodUnavailableError(
            N_("this merchant's Bitcoin account key is registered to another merchant")
        ) from None
    return row.id


def _zone_key_id(session: Session, xpub: str) -> int:
    """The zone's key row (merchant NULL), made on first use; a merchant's key is refused."""
    identity = bitcoin.account_identity(xpub)
    row = session.scalar(select(BtcAccountKey).where(BtcAccountKey.identity == identity))
    if row is not None and row.merchant_id is not None:
        raise PaymentMethodUnavailableError(
            N_("ZONE_BTC_XPUB is a merchant's registered account key; the zone needs its own")
        )
    if row is not None:
        return row.id
    try:
        with session.begin_nested():
            row = BtcAccountKey(merchant_id=None, xpub=xpub, identity=identity)
            session.add(row)
    except IntegrityError:  # another invoice made it meanwhile
        found = session.scalar(
            select(BtcAccountKey.id).where(
                BtcAccountKey.identity == identity, BtcAccountKey.merchant_id.is_(None)
            )
        )
        if found is None:
            raise
        return found
    return row.id


def _lock_rate(invoice: Invoice, quote: RateQuote) -> None:
    """Lock the rate, and keep what it was made of: each source, its value and its time."""
    invoice.rate, invoice.rate_source, invoice.rate_as_of = quote.rate, quote.source, quote.as_of
    invoice.rate_components = quote.to_dict()


def _quote_kzte(
    session: Session,
    settings: Settings,
    rates: RateBook,
    merchant: Merchant,
    invoice: Invoice,
    now: datetime,
) -> None:
    if invoice.settlement_mode is SettlementMode.TENGE:
        if not settings.zone_kzte_wallet:
            raise PaymentMethodUnavailableError(
                N_("the zone has no KZTE wallet (ZONE_KZTE_WALLET); KZTE payments are off")
            )
        recipient = settings.zone_kzte_wallet  # the reference tells the invoices apart
    elif merchant.solana_wallet:
        recipient = merchant.solana_wallet
    else:
        raise PaymentMethodUnavailableError(N_("this merchant has not set up KZTE payments"))
    zone_wallet_owner = (
        session.scalar(
            select(Merchant.id).where(Merchant.solana_wallet == settings.zone_kzte_wallet)
        )
        if settings.zone_kzte_wallet
        else None
    )
    if zone_wallet_owner is not None:
        # Set before the checks existed, or ZONE_KZTE_WALLET changed since: whose payment a
        # transfer to it is could not be told, so neither side's KZTE invoices are made.
        raise PaymentMethodUnavailableError(
            N_("ZONE_KZTE_WALLET is a merchant's registered wallet; the zone needs its own")
        )
    if not settings.kzte_mint:
        raise PaymentMethodUnavailableError(
            N_("KZTE is not configured in this zone (KZTE_MINT is not set)")
        )
    _lock_rate(invoice, rates.kzte_kzt(now))  # raises KzteDepegError while KZTE is depegged
    invoice.amount_due_atomic = money.kzte_due_base_units(
        invoice.price_tiyn, settings.kzte_decimals
    )
    invoice.kzte_recipient = recipient
    invoice.kzte_mint = settings.kzte_mint
    invoice.kzte_reference = kzte.new_reference()


def _add_event(
    session: Session,
    invoice: Invoice,
    event_type: EventType,
    from_status: InvoiceStatus | None,
    data: dict[str, Any],
) -> InvoiceEvent:
    event = InvoiceEvent(
        invoice_id=invoice.id,
        invoice_version=invoice.version,
        type=event_type.value,
        from_status=None if from_status is None else from_status.value,
        to_status=invoice.status.value,
        data=data,
        created_at=utcnow(),
    )
    session.add(event)
    session.info.setdefault("touched_invoices", set()).add(invoice.id)
    if event_type not in (EventType.CREATED, EventType.PAYMENT_REJECTED):
        # Nothing to book before anything happened, nor for a transfer that did not count.
        ledger_queue.enqueue(session, invoice.id)
    return event


def _bump_version(session: Session, invoice: Invoice) -> None:
    """Optimistic lock: the row moves from version v to v+1 only if nobody else moved it."""
    old = invoice.version
    changed = session.execute(
        update(Invoice)
        .where(Invoice.id == invoice.id, Invoice.version == old)
        .values(version=old + 1)
    ).rowcount  # type: ignore[attr-defined]
    if changed != 1:
        raise ConcurrentUpdateError(f"invoice {invoice.id} was changed by someone else")
    invoice.version = old + 1  # keep the object in step without a reload


def change_status(
    session: Session,
    invoice: Invoice,
    target: InvoiceStatus,
    data: dict[str, Any] | None = None,
    now: datetime | None = None,
) -> InvoiceEvent:
    """Apply one transition from the table and record its event (illegal ones raise)."""
    now = now or utcnow()
    event_type = transition(invoice.status, target)
    _bump_version(session, invoice)
    previous = invoice.status
    invoice.status = target
    if target is InvoiceStatus.PROCESSING and invoice.detected_at is None:
        invoice.detected_at = now
    if target is InvoiceStatus.SETTLED:
        invoice.settled_at = now
        invoice.detected_at = invoice.detected_at or now
    if previous is InvoiceStatus.SETTLED:
        invoice.settled_at = None
    return _add_event(session, invoice, event_type, previous, dict(data or {}))


FLAG_EVENTS = {
    "paid_partial": EventType.PAID_PARTIAL,
    "paid_over": EventType.PAID_OVER,
    "paid_late": EventType.PAID_LATE,
    "marked": EventType.MARKED,
}


def set_flag(
    session: Session, invoice: Invoice, flag: str, data: dict[str, Any] | None = None
) -> InvoiceEvent | None:
    """Raise an exception flag once; a flag already set records nothing."""
    if flag not in FLAG_EVENTS:
        raise ValueError(f"unknown flag {flag}")
    if getattr(invoice, flag):
        return None
    _bump_version(session, invoice)
    setattr(invoice, flag, True)
    return _add_event(session, invoice, FLAG_EVENTS[flag], invoice.status, dict(data or {}))


def set_amount_paid(session: Session, invoice: Invoice, paid_atomic: int) -> InvoiceEvent:
    """Record a new running total of counted payments (an event, so live pages follow)."""
    if paid_atomic < 0:
        raise ValueError("a paid amount is never negative")
    _bump_version(session, invoice)
    previous = invoice.amount_paid_atomic
    invoice.amount_paid_atomic = paid_atomic
    return _add_event(
        session,
        invoice,
        EventType.PAYMENT_SEEN,
        invoice.status,
        {"paid_atomic": paid_atomic, "previous_atomic": previous},
    )


# Why a transfer that names an invoice does not pay it: settlement.kzte_validation's codes, and
# too_late (any method) for a payment first seen after the late window (settlement.payments).
# The portal translates them for the owner's timeline and the shopper's checkout.
REJECTION_REASONS = ("wrong_mint", "wrong_recipient", "wrong_memo", "too_late")


def record_rejected_payment(
    session: Session, invoice: Invoice, txid: str, reason: str, detail: str
) -> InvoiceEvent | None:
    """Note in the invoice's timeline that transaction `txid` was not accepted as a payment
    (e.g. the right reference but another token, paid to someone else's account, or after
    the invoice had closed): money the shopper sent cannot count for this invoice, and the
    owner must see why.
    Nothing else changes. Once per transaction; a second report of it records nothing."""
    if reason not in REJECTION_REASONS:
        raise ValueError(f"unknown rejection reason {reason}")
    earlier = session.scalars(
        select(InvoiceEvent.data).where(
            InvoiceEvent.invoice_id == invoice.id,
            InvoiceEvent.type == EventType.PAYMENT_REJECTED.value,
        )
    ).all()
    if any(data.get("txid") == txid for data in earlier):
        return None
    _bump_version(session, invoice)
    data = {"txid": txid, "reason": reason, "detail": detail[:300]}
    return _add_event(session, invoice, EventType.PAYMENT_REJECTED, invoice.status, data)


def mark(
    session: Session, invoice: Invoice, target: InvoiceStatus, reason: str, user_id: int | None
) -> InvoiceEvent:
    """A person settles or invalidates an invoice by hand, with a reason kept in the event."""
    if target not in (InvoiceStatus.SETTLED, InvoiceStatus.INVALID):
        raise ValidationError(
            N_("an invoice can only be marked settled or invalid"), field="status"
        )
    if not reason.strip():
        raise ValidationError(N_("a reason is required"), field="reason")
    # What was paid at the mark is what a marked settlement books, whatever arrives later.
    data = {"reason": reason, "by_user_id": user_id, "paid_atomic": invoice.amount_paid_atomic}
    event = change_status(session, invoice, target, data)
    set_flag(session, invoice, "marked", {"reason": reason, "by_user_id": user_id})
    return event


def expire_due(
    session: Session,
    now: datetime | None = None,
    limit: int = 500,
    cutoffs: dict[PaymentMethod, datetime | None] | None = None,
) -> list[str]:
    """Move unpaid invoices whose window has passed to `expired`; return their ids.

    `cutoffs` holds, per method, the moment its chain watcher last saw the whole chain: an
    invoice expires only once the watcher has looked past its expiry, so a payment made in time
    while the node was unreachable is never expired by mistake. None: the watcher has not
    reported yet, so nothing of that method expires.
    """
    now = now or utcnow()
    conditions = []
    for method in PaymentMethod:
        cutoff = now if cutoffs is None or method not in cutoffs else cutoffs[method]
        if cutoff is not None:
            conditions.append(
                and_(Invoice.method == method, Invoice.expires_at <= min(cutoff, now))
            )
    if not conditions:
        return []
    due = session.scalars(
        select(Invoice)
        .where(Invoice.status == InvoiceStatus.NEW, or_(*conditions))
        .order_by(Invoice.expires_at)
        .limit(limit)
    ).all()
    return [invoice.id for invoice in due if expire_one(session, invoice, now)]


def expire_one(session: Session, invoice: Invoice, now: datetime) -> bool:
    """Expire one invoice in its own savepoint; False if someone changed it meanwhile.

    A person or a watcher who moved it first wins; if it is still new and due, the next sweep
    expires it.
    """
    try:
        with session.begin_nested():
            change_status(
                session,
                invoice,
                InvoiceStatus.EXPIRED,
                {"paid_atomic": invoice.amount_paid_atomic},
                now,
            )
    except ConcurrentUpdateError:
        session.expire(invoice)
        return False
    return True


def unpaid_address_run(session: Session, merchant_id: int, limit: int = 100) -> int:
    """How many of the merchant's newest derived BTC addresses in a row received nothing.

    Wallets stop looking for payments after a gap of 20 unused addresses (BIP44 gap limit);
    the merchant page warns as this run approaches it, so no payment becomes invisible in the
    owner's own wallet. Only addresses of the merchant's current account key count.
    """
    merchant = session.get(Merchant, merchant_id)
    if merchant is None or not merchant.btc_xpub:
        return 0
    paid_flags = session.scalars(
        select(Invoice.amount_paid_atomic > 0)
        .join(BtcAccountKey, BtcAccountKey.id == Invoice.btc_account_key_id)
        .where(
            BtcAccountKey.merchant_id == merchant_id,
            BtcAccountKey.identity == bitcoin.account_identity(merchant.btc_xpub),
        )
        .order_by(Invoice.btc_derivation_index.desc())
        .limit(limit)
    ).all()
    run = 0
    for paid in paid_flags:
        if paid:
            break
        run += 1
    return run


def get_invoice(session: Session, invoice_id: str, merchant_id: int | None = None) -> Invoice:
    """An invoice by id; with `merchant_id`, another merchant's invoice is simply not found."""
    invoice = session.get(Invoice, invoice_id)
    if invoice is None or (merchant_id is not None and invoice.merchant_id != merchant_id):
        raise NotFoundError(N_("no such invoice"))
    return invoice


# --- Redis mirror ---------------------------------------------------------------------------


def snapshot(invoice: Invoice) -> dict[str, str]:
    """The small live view pages and workers read (a few dozen bytes per open invoice)."""
    return {
        "status": invoice.status.value,
        "method": invoice.method.value,
        "merchant": str(invoice.merchant_id),
        "due": str(invoice.amount_due_atomic),
        "paid": str(invoice.amount_paid_atomic),
        "exp": str(int(invoice.expires_at.timestamp())),
        "flags": ",".join(invoice.flags),
    }


def _event_fields(event: InvoiceEvent, invoice: Invoice) -> dict[str, str]:
    return {
        "id": event.id,
        "type": event.type,
        "invoice": event.invoice_id,
        "merchant": str(invoice.merchant_id),
        "version": str(event.invoice_version),
        "from": event.from_status or "",
        "to": event.to_status,
        "at": event.created_at.isoformat(),
        "data": json.dumps(event.data, sort_keys=True),
    }


def _watch_entry(invoice: Invoice) -> tuple[str, str] | None:
    if invoice.method is PaymentMethod.BTC and invoice.btc_address:
        return "btc", invoice.btc_address
    if invoice.method is PaymentMethod.KZTE and invoice.kzte_reference:
        return "kzte", invoice.kzte_reference
    return None


def publish_events(
    factory: sessionmaker[Session], coordinator: Coordinator, invoice_ids: Sequence[str]
) -> int:
    """Mirror the invoices' unpublished events into Redis, oldest first; return how many.

    One database round for the batch and one Redis pipeline: a watcher pass that settles a
    thousand invoices publishes them in one go. The Lua script makes a repeat harmless, so a
    crash between Redis and the commit below only means the relay sends some again.
    """
    if not invoice_ids:
        return 0
    published = 0
    with factory() as session:
        for batch in chunked(sorted(set(invoice_ids)), 500):
            owners = {
                i.id: i for i in session.scalars(select(Invoice).where(Invoice.id.in_(batch)))
            }
            events = session.scalars(
                select(InvoiceEvent)
                .where(InvoiceEvent.invoice_id.in_(batch), InvoiceEvent.published_at.is_(None))
                .order_by(InvoiceEvent.invoice_id, InvoiceEvent.invoice_version)
            ).all()
            if not events:
                continue
            watches: dict[str, dict[str, str]] = {}
            for invoice in owners.values():
                entry = _watch_entry(invoice)
                if entry is not None:
                    watches.setdefault(entry[0], {})[entry[1]] = invoice.id
            for method, mapping in watches.items():
                coordinator.watch_many(method, mapping)
            coordinator.apply_events(
                [
                    (
                        event.invoice_id,
                        event.invoice_version,
                        _event_fields(event, owners[event.invoice_id]),
                        snapshot(owners[event.invoice_id]),
                        owners[event.invoice_id].version,
                        owners[event.invoice_id].status in TERMINAL,
                    )
                    for event in events
                ]
            )
            now = utcnow()
            for event in events:
                event.published_at = now
            session.commit()
            published += len(events)
    return published


def publish_invoice_events(
    factory: sessionmaker[Session], coordinator: Coordinator, invoice_id: str
) -> int:
    """Mirror one invoice's unpublished events into Redis; return how many."""
    return publish_events(factory, coordinator, [invoice_id])


def publish_after_commit(
    factory: sessionmaker[Session], coordinator: Coordinator | None, session: Session
) -> None:
    """Call right after a commit: push the touched invoices' events; failures wait for the relay."""
    touched: set[str] = session.info.pop("touched_invoices", set())
    if coordinator is None or not touched:
        return
    try:
        publish_events(factory, coordinator, sorted(touched))
    except CoordinationUnavailableError as exc:
        log.warning("events of %d invoice(s) wait for the relay: %s", len(touched), exc)


def relay_unpublished(
    factory: sessionmaker[Session], coordinator: Coordinator, limit: int = 1000
) -> int:
    """Publish events that missed Redis (it was down, or a process died after commit)."""
    with factory() as session:
        invoice_ids = session.scalars(
            select(InvoiceEvent.invoice_id)
            .where(InvoiceEvent.published_at.is_(None))
            .group_by(InvoiceEvent.invoice_id)
            .limit(limit)
        ).all()
    return publish_events(factory, coordinator, invoice_ids)


def rebuild_live_state(
    factory: sessionmaker[Session],
    coordinator: Coordinator,
    settings: Settings,
    now: datetime | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> int:
    """Rewrite Redis from the database: snapshots and the watch index of every live invoice.

    Live means anything a watcher or a page may still need: open, processing, settled within
    the late window (a reorg can still take it back) and expired within the late window.
    """
    now = now or utcnow()
    horizon = now - timedelta(hours=settings.late_watch_hours)
    with factory() as session:
        query = (
            select(Invoice)
            .where(
                or_(
                    Invoice.status.in_([InvoiceStatus.NEW, InvoiceStatus.PROCESSING]),
                    Invoice.created_at >= horizon,
                )
            )
            .order_by(Invoice.created_at)
        )
        total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
        done = 0
        for batch in chunked(session.scalars(query).yield_per(1000), 1000):
            published = _published_versions(session, [inv.id for inv in batch])
            watches: dict[str, dict[str, str]] = {"btc": {}, "kzte": {}}
            for invoice in batch:
                coordinator.put_snapshot(
                    invoice.id,
                    snapshot(invoice),
                    invoice.version,
                    published.get(invoice.id, 0),
                    invoice.status in TERMINAL,
                )
                entry = _watch_entry(invoice)
                if entry is not None:
                    watches[entry[0]][entry[1]] = invoice.id
            for method, mapping in watches.items():
                coordinator.watch_many(method, mapping)
            done += len(batch)
            if progress is not None:
                progress(done, total)
    coordinator.set_epoch(now.isoformat())
    relay_unpublished(factory, coordinator)
    return done


def _published_versions(session: Session, invoice_ids: list[str]) -> dict[str, int]:
    rows = session.execute(
        select(InvoiceEvent.invoice_id, func.max(InvoiceEvent.invoice_version))
        .where(InvoiceEvent.invoice_id.in_(invoice_ids), InvoiceEvent.published_at.is_not(None))
        .group_by(InvoiceEvent.invoice_id)
    ).all()
    return {invoice_id: int(version) for invoice_id, version in rows}


def live_view(session: Session, coordinator: Coordinator | None, invoice_id: str) -> dict[str, str]:
    """What a live page shows: Redis when it has the invoice, else the database.

    Redis can lag the database by one relay round when it was briefly down; it never runs ahead.
    """
    if coordinator is not None:
        try:
            live = coordinator.get_live(invoice_id)
        except CoordinationUnavailableError:
            live = None  # the database answers; the page just loses its fast path
        if live is not None:
            return live
    invoice = get_invoice(session, invoice_id)
    return {**snapshot(invoice), "version": str(invoice.version)}
