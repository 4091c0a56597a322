"""The demo shops' catalogs and looks: products by category with pictures drawn at seed time.

No binary files in the repository: each picture is a flat colour per category with the
product's initials, drawn with Pillow and stored through the same pipeline as an upload.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

from PIL import Image, ImageDraw, ImageFont
from sqlalchemy.orm import Session

from pos import branding, catalog


@dataclass(frozen=True)
class DemoProduct:
    name: str
    price_tiyn: int
    category: str


@dataclass(frozen=True)
class DemoLook:
    accent_colour: str
    store_language: str | None
    logo_text: str
    logo_colour: tuple[int, int, int]


PRODUCTS: dict[str, tuple[DemoProduct, ...]] = {
    "coffee": (
        DemoProduct("Espresso", 90_000, "Coffee"),
        DemoProduct("Cappuccino", 140_000, "Coffee"),
        DemoProduct("Flat white", 160_000, "Coffee"),
        DemoProduct("Raf with honey", 190_000, "Coffee"),
        DemoProduct("Black tea with thyme", 110_000, "Tea"),
        DemoProduct("Masala chai", 150_000, "Tea"),
        DemoProduct("Croissant", 120_000, "Bakery"),
        DemoProduct("Baursak box", 80_000, "Bakery"),
        DemoProduct("Apple pie (Aport)", 170_000, "Bakery"),
        DemoProduct("Shubat, 0.5 l", 220_000, "Cold drinks"),
    ),
    "books": (
        DemoProduct("Abai: Book of Words", 450_000, "Classics"),
        DemoProduct("The Path of Abai", 890_000, "Classics"),
        DemoProduct("Mukhtar Auezov: stories", 520_000, "Classics"),
        DemoProduct("Kazakh in 30 days", 640_000, "Languages"),
        DemoProduct("Russian-Kazakh dictionary", 780_000, "Languages"),
        DemoProduct("Almaty city map", 250_000, "Maps and guides"),
        DemoProduct("Tian Shan hiking guide", 980_000, "Maps and guides"),
        DemoProduct("Notebook, A5", 150_000, "Stationery"),
        DemoProduct("Gift card", 500_000, ""),
    ),
}

LOOKS: dict[str, DemoLook] = {
    "coffee": DemoLook("#7c2d12", None, "AC", (124, 45, 18)),
    "books": DemoLook("#1e3a8a", "kk", "QB", (30, 58, 138)),
}

_CATEGORY_COLOURS = [
    (180, 83, 9),
    (21, 128, 61),
    (29, 78, 216),
    (190, 24, 93),
    (109, 40, 217),
    (15, 118, 110),
]


def initials(name: str) -> str:
    words = [w for w in name.replace("(", " ").split() if w[:1].isalnum()]
    return "".join(w[0] for w in words[:2]).upper() or "?"


def draw_picture(text: str, colour: tuple[int, int, int], size: int = 256) -> bytes:
    """A PNG: a flat colour, a lighter circle and `text` in white (about 2 KB)."""
    image = Image.new("RGB", (size, size), colour)
    draw = ImageDraw.Draw(image)
    light = tuple(min(255, c + 50) for c in colour)
    margin = size // 8
    draw.ellipse((margin, margin, size - margin, size - margin), fill=light)
    font = ImageFont.load_default(size=size // 3)
    draw.text((size / 2, size / 2), text, fill=(255, 255, 255), font=font, anchor="mm")
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def seed_products(session: Session, merchant_id: int, slug: str) -> int:
    """Add the shop's demo products with pictures, once (an existing catalog is left alone);
    set its logo, accent colour and store language. Returns the products added."""
    if catalog.list_items(session, merchant_id, active_only=False):
        return 0
    products = PRODUCTS.get(slug, ())
    categories = sorted({p.category for p in products if p.category})
    for product in products:
        item = catalog.add_item(
            session, merchant_id, product.name, product.price_tiyn, product.category
        )
        colour = (
            _CATEGORY_COLOURS[categories.index(product.category) % len(_CATEGORY_COLOURS)]
            if product.category
            else (71, 85, 105)
        )
        catalog.set_image(session, item, draw_picture(initials(product.name), colour))
    look = LOOKS.get(slug)
    if look is not None:
        branding.save_look(session, merchant_id, look.accent_colour, look.store_language or "")
        branding.set_logo(session, merchant_id, draw_picture(look.logo_text, look.logo_colour))
    return len(products)
