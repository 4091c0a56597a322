"""The products of a cart sale, kept beside its invoice (for sales per product).

The terminal's cart mode builds lines from the catalog (`pos.catalog.build_cart`); they are
stored with the invoice as they were sold — name and unit price copied, so renaming or
repricing a product later does not rewrite past sales. A keypad sale has no lines, and a tip is
part of the invoice's price but of no line. Services never commit.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import CheckConstraint, ForeignKey, String
from sqlalchemy.orm import Mapped, Session, mapped_column

from pos.catalog import CartLine
from pos.db import Base


class InvoiceLine(Base):
    """One product line of a cart invoice."""

    __tablename__ = "invoice_lines"
    __table_args__ = (
        CheckConstraint("quantity > 0", name="quantity_positive"),
        CheckConstraint("unit_price_tiyn > 0", name="unit_price_positive"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    invoice_id: Mapped[str] = mapped_column(ForeignKey("invoices.id"), index=True)
    # The catalog item it came from (None never happens today; kept nullable so deleting a
    # product one day does not need to delete sales).
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
