"""A merchant's product catalog for the terminal's cart mode (services never commit)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from itertools import groupby

from sqlalchemy import CheckConstraint, ForeignKey, String, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from pos import media
from pos.db import Base, utcnow
from pos.errors import NotFoundError, ValidationError
from pos.i18n import N_

MAX_QUANTITY = 999
MAX_ITEMS_PER_MERCHANT = 200
MAX_CATEGORY_CHARS = 40
MAX_NAME_CHARS = 80


class CatalogItem(Base):
    """One product or service with a fixed KZT price."""

    __tablename__ = "catalog_items"
    __table_args__ = (CheckConstraint("price_tiyn > 0", name="price_positive"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    merchant_id: Mapped[int] = mapped_column(ForeignKey("merchants.id"), index=True)
    name: Mapped[str] = mapped_column(String(80))
    price_tiyn: Mapped[int]
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # The terminal's grid groups products by it; None: "Other", shown last.
    category: Mapped[str | None] = mapped_column(String(MAX_CATEGORY_CHARS), default=None)
    image_sha256: Mapped[str | None] = mapped_column(ForeignKey("media_blobs.sha256"), default=None)


@dataclass(frozen=True)
class CartLine:
    """A line as sold: the product's name and price copied (the catalog may change later)."""

    item_id: int | None  # None: a free line an API client named and priced itself
    name: str
    quantity: int
    price_tiyn: int

    @property
    def total_tiyn(self) -> int:
        return self.quantity * self.price_tiyn


def list_items(session: Session, merchant_id: int, active_only: bool = True) -> list[CatalogItem]:
    """The merchant's items by name (only the active ones unless told otherwise)."""
    query = select(CatalogItem).where(CatalogItem.merchant_id == merchant_id)
    if active_only:
        query = query.where(CatalogItem.active.is_(True))
    return list(session.scalars(query.order_by(CatalogItem.name, CatalogItem.id)))


def clean_category(text: str) -> str | None:
    """A category as typed, with spaces tidied; None for none. At most 40 characters."""
    category = " ".join(text.split())
    if len(category) > MAX_CATEGORY_CHARS:
        raise ValidationError(
            f"a category name has at most {MAX_CATEGORY_CHARS} characters", field="category"
        )
    return category or None


def add_item(
    session: Session, merchant_id: int, name: str, price_tiyn: int, category: str = ""
) -> CatalogItem:
    """Add a product; names need 1 to 80 characters and prices must be positive."""
    name = _product_name(name, "name")
    if price_tiyn <= 0:
        raise ValidationError(N_("the price must be more than zero"), field="price")
    if len(list_items(session, merchant_id, active_only=False)) >= MAX_ITEMS_PER_MERCHANT:
        raise ValidationError(
            N_("a catalog holds at most %(count)d products"),
            field="name",
            count=MAX_ITEMS_PER_MERCHANT,
        )
    item = CatalogItem(
        merchant_id=merchant_id,
        name=name,
        price_tiyn=price_tiyn,
        active=True,
        category=clean_category(category),
    )
    session.add(item)
    session.flush()
    return item


def _product_name(text: str, field: str) -> str:
    name = text.strip()
    if not 1 <= len(name) <= MAX_NAME_CHARS:
        raise ValidationError(N_("the product name needs 1 to 80 characters"), field=field)
    return name


def get_item(session: Session, merchant_id: int, item_id: int) -> CatalogItem:
    """A product of this merchant; another merchant's product is simply not found."""
    item = session.get(CatalogItem, item_id)
    if item is None or item.merchant_id != merchant_id:
        raise NotFoundError(N_("no such product"))
    return item


def set_category(session: Session, item: CatalogItem, text: str) -> None:
    item.category = clean_category(text)
    session.flush()


def set_image(session: Session, item: CatalogItem, raw: bytes) -> media.MediaBlob:
    """Check, clean and store the upload as the product's picture (`ValidationError` else)."""
    blob = media.store_upload(session, raw)
    item.image_sha256 = blob.sha256
    session.flush()
    return blob


def categories(items: list[CatalogItem]) -> list[str]:
    """The categories in use, alphabetically (products without one are not a category)."""
    return sorted({item.category for item in items if item.category}, key=str.casefold)


def group_by_category(
    items: list[CatalogItem], only: str | None = None
) -> list[tuple[str | None, list[CatalogItem]]]:
    """[(category, its items by name)], alphabetically, uncategorised ones last (as None).

    `only` keeps one category (an unknown one keeps nothing: the page says so).
    """

    def key(item: CatalogItem) -> tuple[bool, str]:
        return (item.category is None, (item.category or "").casefold())

    ordered = sorted(items, key=lambda item: (*key(item), item.name.casefold(), item.id))
    groups = [
        (group[0].category, group) for group in (list(g) for _k, g in groupby(ordered, key=key))
    ]
    if only:
        groups = [(name, group) for name, group in groups if name == only]
    return groups


def product_line(
    session: Session, merchant_id: int, item_id: int, quantity: int, field: str = "cart"
) -> CartLine:
    """`quantity` of the merchant's product, at its name and price now: the one rule for the
    terminal's cart and the API's lines. An unknown, inactive or another merchant's product is
    refused with the same words (which of them is never told)."""
    if not 0 < quantity <= MAX_QUANTITY:
        raise ValidationError(
            N_("quantities go from 1 to %(count)d"), field=field, count=MAX_QUANTITY
        )
    item = session.get(CatalogItem, item_id)
    if item is None or item.merchant_id != merchant_id or not item.active:
        raise ValidationError(N_("a product in the cart is no longer sold"), field=field)
    return CartLine(item.id, item.name, quantity, item.price_tiyn)


def free_line(name: str, unit_price_tiyn: int, quantity: int, field: str) -> CartLine:
    """A line of no catalog product, named and priced by an API client (same limits)."""
    if not 0 < quantity <= MAX_QUANTITY:
        raise ValidationError(
            N_("quantities go from 1 to %(count)d"), field=field, count=MAX_QUANTITY
        )
    if unit_price_tiyn <= 0:
        raise ValidationError(N_("the price must be more than zero"), field=field)
    return CartLine(None, _product_name(name, field), quantity, unit_price_tiyn)


def build_cart(session: Session, merchant_id: int, quantities: dict[int, int]) -> list[CartLine]:
    """Cart lines for {item id: quantity}; unknown, inactive or foreign items are refused."""
    lines: list[CartLine] = []
    for item_id, quantity in sorted(quantities.items()):
        if quantity == 0:
            continue
        if not 0 < quantity <= MAX_QUANTITY:
            raise ValidationError(
                N_("quantities go from 0 to %(count)d"), field="cart", count=MAX_QUANTITY
            )
        lines.append(product_line(session, merchant_id, item_id, quantity))
    if not lines:
        raise ValidationError(N_("the cart is empty: add at least one product"), field="cart")
    return lines


def cart_description(lines: list[CartLine], limit: int = 200) -> str:
    """'2 x Coffee, 1 x Bun', cut to fit the invoice description."""
    text = ", ".join(f"{line.quantity} x {line.name}" for line in lines)
    return text if len(text) <= limit else text[: limit - 1] + "…"
