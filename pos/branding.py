"""A merchant's look on the shopper's pages: logo, accent colour and the store's language.

The accent colour paints the checkout's buttons (white text on it) and the "paid" line (it on
white), so a colour is accepted only if it keeps the WCAG AA contrast of 4.5:1 against white;
a lighter one is refused with the nearest darker shade that passes, never silently changed —
the owner sees exactly what the shoppers will see.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, String
from sqlalchemy.orm import Mapped, Session, mapped_column

from pos import media
from pos.db import Base, utcnow
from pos.errors import ValidationError

STORE_LANGUAGES = ("en", "ru", "kk")
MIN_CONTRAST = 4.5  # WCAG 2 AA for normal text
_HEX_COLOUR = re.compile(r"^#?([0-9a-fA-F]{6})$")


class AccentTooLightError(ValidationError):
    """White text on the colour would be below MIN_CONTRAST; `suggestion` is readable."""

    def __init__(self, colour: str, ratio: float, suggestion: str) -> None:
        super().__init__(
            f"{colour} is too light: white text on it has a contrast of {ratio:.1f}:1 and "
            f"needs {MIN_CONTRAST}:1. The nearest darker shade that is readable is {suggestion}",
            field="accent_colour",
        )
        self.colour, self.ratio, self.suggestion = colour, ratio, suggestion


class MerchantBranding(Base):
    """One row per merchant that changed anything; no row: the zone's look, browser language."""

    __tablename__ = "merchant_branding"
    __table_args__ = (
        CheckConstraint("store_language IN ('en', 'ru', 'kk')", name="store_language"),
        CheckConstraint("length(accent_colour) = 7", name="accent_colour"),
    )

    merchant_id: Mapped[int] = mapped_column(ForeignKey("merchants.id"), primary_key=True)
    logo_sha256: Mapped[str | None] = mapped_column(ForeignKey("media_blobs.sha256"), default=None)
    accent_colour: Mapped[str | None] = mapped_column(String(7), default=None)  # '#rrggbb'
    store_language: Mapped[str | None] = mapped_column(String(2), default=None)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


@dataclass(frozen=True)
class Branding:
    """What the shopper's pages need; `logo_sha256` names a `media_blobs` row."""

    logo_sha256: str | None = None
    accent_colour: str | None = None
    store_language: str | None = None


NO_BRANDING = Branding()


def _channel(value: int) -> float:
    c = value / 255
    return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4


def relative_luminance(colour: str) -> float:
    """WCAG relative luminance of '#rrggbb' (0 black … 1 white)."""
    r, g, b = (int(colour[i : i + 2], 16) for i in (1, 3, 5))
    return 0.2126 * _channel(r) + 0.7152 * _channel(g) + 0.0722 * _channel(b)


def contrast_with_white(colour: str) -> float:
    return 1.05 / (relative_luminance(colour) + 0.05)


def darker_passing(colour: str) -> str:
    """The lightest shade of `colour` (same hue, scaled towards black) that passes."""
    r, g, b = (int(colour[i : i + 2], 16) for i in (1, 3, 5))
    for percent in range(100, -1, -1):
        shade = "#{:02x}{:02x}{:02x}".format(*(v * percent // 100 for v in (r, g, b)))
        if contrast_with_white(shade) >= MIN_CONTRAST:
            return shade
    return "#000000"


def parse_accent_colour(text: str) -> str | None:
    """'#rrggbb' in lower case, or None for an empty field; refuses unreadable colours."""
    text = text.strip()
    if not text:
        return None
    match = _HEX_COLOUR.match(text)
    if match is None:
        raise ValidationError("write the colour as #rrggbb, e.g. #0b6e4f", field="accent_colour")
    colour = "#" + match.group(1).lower()
    ratio = contrast_with_white(colour)
    if ratio < MIN_CONTRAST:
        raise AccentTooLightError(colour, ratio, darker_passing(colour))
    return colour


def parse_store_language(text: str) -> str | None:
    text = text.strip()
    if not text:
        return None
    if text not in STORE_LANGUAGES:
        raise ValidationError("choose English, Russian or Kazakh", field="store_language")
    return text


def _row(session: Session, merchant_id: int) -> MerchantBranding:
    row = session.get(MerchantBranding, merchant_id)
    if row is None:
        row = MerchantBranding(merchant_id=merchant_id)
        session.add(row)
    return row


def get_branding(session: Session, merchant_id: int) -> Branding:
    row = session.get(MerchantBranding, merchant_id)
    if row is None:
        return NO_BRANDING
    return Branding(row.logo_sha256, row.accent_colour, row.store_language)


def save_look(
    session: Session, merchant_id: int, accent_colour_text: str, store_language_text: str
) -> Branding:
    """Set the accent colour and store language from the form (empty: the zone's default)."""
    errors: list[ValidationError] = []
    colour = language = None
    try:
        colour = parse_accent_colour(accent_colour_text)
    except ValidationError as exc:
        errors.append(exc)
    try:
        language = parse_store_language(store_language_text)
    except ValidationError as exc:
        errors.append(exc)
    if errors:
        raise errors[0]
    row = _row(session, merchant_id)
    row.accent_colour, row.store_language = colour, language
    session.flush()
    return get_branding(session, merchant_id)


def set_logo(session: Session, merchant_id: int, raw: bytes) -> media.MediaBlob:
    """Check, clean and store the upload as this merchant's logo."""
    blob = media.store_upload(session, raw, field="logo")
    row = _row(session, merchant_id)
    row.logo_sha256 = blob.sha256
    session.flush()
    return blob


def remove_logo(session: Session, merchant_id: int) -> None:
    row = session.get(MerchantBranding, merchant_id)
    if row is not None:
        row.logo_sha256 = None
        session.flush()
