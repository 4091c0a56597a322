"""The products of a cart sale, kept beside its invoice (for sales per product).

The terminal's cart mode builds lines from the catalog (`pos.catalog.build_cart`); an API client
sends them with the invoice (`pos.catalog.product_line` for a product of the catalog, the same
rule, or `free_line` for one it names and prices itself). Either way `record_lines` stores them
with the invoice as they were sold — name and unit price copied, so renaming or repricing a
product later does not rewrite past sales. A keypad sale has no lines, and a tip is part of the
invoice's price but of no line. Services never commit.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence

from sqlalchemy import CheckConstraint, ForeignKey, String, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from pos import money
from pos.catalog import CartLine
from pos.db import Base
from pos.errors import ValidationError
from pos.i18n import N_


class InvoiceLine(Base):
    """One product line of a cart invoice."""

    __tablename__ = "invoice_lines"
    __table_args__ = (
        CheckConstraint("quantity > 0", name="quantity_positive"),
        CheckConstraint("unit_price_tiyn > 0", name="unit_price_positive"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    invoice_id: Mapped[str] = mapped_column(ForeignKey("invoices.id"), index=True)
    # The catalog item it came from; None for a free line of the API (and so deleting a
    # product one day need not delete sales).
    catalog_item_id: Mapped[int | None] = mapped_column(ForeignKey("catalog_items.id"), index=True)
    name: Mapped[str] = mapped_column(String(80))
    quantity: Mapped[int]
    unit_price_tiyn: Mapped[int]

    @property
    def total_tiyn(self) -> int:
        return self.quantity * self.unit_price_tiyn


def record_lines(session: Session, invoice_id: str, lines: Iterable[CartLine]) -> None:
    """Store the cart's lines with the invoice just created (in the caller's transaction)."""
    session.add_all(
        InvoiceLine(
            invoice_id=invoice_id,
            catalog_item_id=line.item_id,
            name=line.name,
            quantity=line.quantity,
            unit_price_tiyn=line.price_tiyn,
        )
        for line in lines
    )
    session.flush()


def lines_price(lines: Sequence[CartLine], price_tiyn: int | None) -> int:
    """The price of an invoice made of `lines` alone (no tip): their total. A price given as
    well must be exactly that total, so the sales per product add up to the sale."""
    total = sum(line.total_tiyn for line in lines)
    if price_tiyn is not None and price_tiyn != total:
        raise ValidationError(
            N_("the price %(price)s ₸ is not the total of the lines, %(total)s ₸"),
            field="price_tiyn",
            price=money.format_kzt(price_tiyn),
            total=money.format_kzt(total),
        )
    return total


def lines_of(session: Session, invoice_ids: Sequence[str]) -> dict[str, list[InvoiceLine]]:
    """The stored lines of each invoice (in the order they were sold); none for a keypad sale."""
    found: dict[str, list[InvoiceLine]] = defaultdict(list)
    if invoice_ids:
        query = select(InvoiceLine).where(InvoiceLine.invoice_id.in_(list(invoice_ids)))
        for line in session.scalars(query.order_by(InvoiceLine.id)):
            found[line.invoice_id].append(line)
    return found
