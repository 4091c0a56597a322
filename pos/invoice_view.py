"""How an invoice is shown: payment URI, amounts in major units, a JSON-ready dict."""

from __future__ import annotations

from typing import Any

from pos import money
from pos.methods import bitcoin, kzte
from pos.models import Invoice
from pos.settings import Settings
from pos.states import PaymentMethod


def crypto_decimals(invoice: Invoice, settings: Settings) -> int:
    return 8 if invoice.method is PaymentMethod.BTC else settings.kzte_decimals


def crypto_symbol(invoice: Invoice) -> str:
    return "BTC" if invoice.method is PaymentMethod.BTC else "KZTE"


def atomic_unit(invoice: Invoice) -> str:
    return "sat" if invoice.method is PaymentMethod.BTC else "base_units"


def remaining_atomic(invoice: Invoice) -> int:
    return max(invoice.amount_due_atomic - invoice.amount_paid_atomic, 0)


def amount_to_request(invoice: Invoice) -> int:
    """What the payment request asks for: the rest still due (the full amount before payment).

    A BTC remainder below the dust limit is asked for as the dust limit: wallets cannot send
    less, and an output below it would not count. The extra is an overpayment, owed back.
    """
    due = remaining_atomic(invoice) or invoice.amount_due_atomic
    if invoice.method is PaymentMethod.BTC:
        return max(due, bitcoin.DUST_LIMIT_SAT)
    return due


def payment_uri(invoice: Invoice, settings: Settings, merchant_name: str) -> str:
    """The BIP21 or Solana Pay URI for `amount_to_request`."""
    message = invoice.description or f"Invoice {invoice.id}"
    due = amount_to_request(invoice)
    if invoice.method is PaymentMethod.BTC:
        assert invoice.btc_address is not None
        return bitcoin.bip21_uri(invoice.btc_address, due, merchant_name, message)
    assert invoice.kzte_recipient and invoice.kzte_mint and invoice.kzte_reference
    return kzte.solana_pay_uri(
        invoice.kzte_recipient,
        due,
        settings.kzte_decimals,
        invoice.kzte_mint,
        invoice.kzte_reference,
        label=merchant_name,
        message=message,
        memo=invoice.id,
    )


def invoice_as_dict(
    invoice: Invoice, settings: Settings, merchant_name: str, with_history: bool = True
) -> dict[str, Any]:
    decimals = crypto_decimals(invoice, settings)
    data: dict[str, Any] = {
        "id": invoice.id,
        "merchant_id": invoice.merchant_id,
        "status": invoice.status.value,
        "flags": invoice.flags,
        "method": invoice.method.value,
        "price_tiyn": invoice.price_tiyn,
        "price_kzt": money.format_kzt(invoice.price_tiyn).replace("\u202f", ""),
        "rate_kzt": str(invoice.rate),
        "rate_source": invoice.rate_source,
        "rate_as_of": invoice.rate_as_of.isoformat(),
        "rate_components": invoice.rate_components,
        "asset": crypto_symbol(invoice),
        "unit": atomic_unit(invoice),
        "amount_due_atomic": invoice.amount_due_atomic,
        "amount_due": money.format_units(invoice.amount_due_atomic, decimals),
        "amount_paid_atomic": invoice.amount_paid_atomic,
        "btc_address": invoice.btc_address,
        "btc_derivation_index": invoice.btc_derivation_index,
        "kzte_recipient": invoice.kzte_recipient,
        "kzte_mint": invoice.kzte_mint,
        "kzte_reference": invoice.kzte_reference,
        "payment_uri": payment_uri(invoice, settings, merchant_name),
        "description": invoice.description,
        "order_id": invoice.order_id,
        "created_at": invoice.created_at.isoformat(),
        "expires_at": invoice.expires_at.isoformat(),
        "detected_at": invoice.detected_at.isoformat() if invoice.detected_at else None,
        "settled_at": invoice.settled_at.isoformat() if invoice.settled_at else None,
        "version": invoice.version,
    }
    if with_history:
        data["payments"] = [
            {
                "chain": p.chain,
                "txid": p.txid,
                "output_index": p.output_index,
                "amount_atomic": p.amount_atomic,
                "status": p.status.value,
                "confirmations": p.confirmations,
            }
            for p in invoice.payments
        ]
        data["events"] = [
            {
                "id": e.id,
                "version": e.invoice_version,
                "type": e.type,
                "from": e.from_status,
                "to": e.to_status,
                "at": e.created_at.isoformat(),
                "data": e.data,
            }
            for e in invoice.events
        ]
    return data
