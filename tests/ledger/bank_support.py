"""Bank details for ledger test merchants: payouts without them stay out of the bank export."""

from __future__ import annotations

from sqlalchemy.orm import Session

from pos import accounts
from pos.models import Merchant

BIC = "HSBKKZKX"  # Halyk Bank


def kz_iban(merchant_id: int) -> str:
    """A real-shaped Kazakhstan IBAN per merchant, check digits by ISO 13616 written out here."""
    bban = f"601KZT{merchant_id:010d}"  # bank code 601, then 13 characters
    digits = "".join(str(int(char, 36)) for char in bban + "KZ00")
    return f"KZ{98 - int(digits) % 97:02d}{bban}"


def give_bank_details(session: Session, merchant: Merchant) -> str:
    """Set the merchant's account (holder "<name> LLP", HSBKKZKX); returns the IBAN."""
    session.flush()  # the merchant's id
    iban = kz_iban(merchant.id)
    accounts.set_bank_details(session, merchant, f"{merchant.name} LLP", iban, BIC)
    return iban
