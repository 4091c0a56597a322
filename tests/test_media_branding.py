"""Uploaded images and branding rules, without Flask: what is refused, what is stored."""

from __future__ import annotations

import io
import struct
import zlib

import pytest
from PIL import Image
from sqlalchemy.orm import Session, sessionmaker

from pos import branding, catalog, media
from pos.errors import ValidationError
from pos.settings import Settings

import factories
from image_support import jpeg_with_exif, png_bytes


def _reason(raw: bytes) -> str:
    with pytest.raises(media.ImageRejectedError) as caught:
        media.make_thumbnail(raw)
    return caught.value.reason


def _huge_png_header(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims `width` x `height`: a decompression bomb's first bytes."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )


def test_a_thumbnail_is_a_square_webp_without_metadata() -> None:
    thumb = media.make_thumbnail(jpeg_with_exif())
    image = Image.open(io.BytesIO(thumb.data))
    assert image.format == "WEBP" and image.size == (256, 256)
    assert not image.getexif() and "exif" not in image.info and "icc_profile" not in image.info
    assert b"SpyCam" not in thumb.data and b"secret comment" not in thumb.data
    assert thumb.sha256 == media.make_thumbnail(jpeg_with_exif()).sha256  # deterministic


def test_png_and_webp_uploads_are_accepted() -> None:
    out = io.BytesIO()
    Image.new("RGBA", (300, 500), (0, 0, 255, 128)).save(out, "WEBP")
    for raw in (png_bytes(), out.getvalue()):
        assert Image.open(io.BytesIO(media.make_thumbnail(raw).data)).size == (256, 256)


def test_what_is_not_an_accepted_image_is_refused() -> None:
    gif = io.BytesIO()
    Image.new("RGB", (10, 10)).save(gif, "GIF")
    assert _reason(b"") == "empty"
    assert _reason(b"<svg xmlns='http://www.w3.org/2000/svg'/>") == "not_an_image"
    assert _reason(gif.getvalue()) == "not_an_image"  # a real image, not an accepted format
    assert _reason(png_bytes()[:40]) == "not_an_image"  # cut short
    assert _reason(b"\x89PNG" + b"\x00" * (media.MAX_UPLOAD_BYTES)) == "too_large"


def test_a_decompression_bomb_is_refused_before_decoding() -> None:
    assert _reason(_huge_png_header(8000, 6000)) == "too_many_pixels"  # 48 MP
    assert _reason(_huge_png_header(100_000, 100_000)) == "too_many_pixels"  # Pillow's bomb


def test_one_image_uploaded_twice_is_stored_once(
    session_factory: sessionmaker[Session], settings: Settings
) -> None:
    with session_factory.begin() as session:
        first = media.store_upload(session, png_bytes())
        again = media.store_upload(session, png_bytes())
        assert first is again
        assert media.find_blob(session, first.sha256, "webp") is first
        assert media.find_blob(session, first.sha256, "png") is None
        assert media.find_blob(session, "../../etc/passwd", "webp") is None


@pytest.mark.parametrize(
    ("text", "colour"), [("", None), ("#0B6E4F", "#0b6e4f"), ("1d4ed8", "#1d4ed8")]
)
def test_readable_accent_colours_are_kept(text: str, colour: str | None) -> None:
    assert branding.parse_accent_colour(text) == colour


def test_a_light_accent_is_refused_with_a_darker_shade_that_passes() -> None:
    with pytest.raises(ValidationError, match="too light") as caught:
        branding.parse_accent_colour("#ffd700")  # gold: 1.4:1 with white
    suggestion = branding.darker_passing("#ffd700")
    assert suggestion in str(caught.value)
    assert branding.contrast_with_white(suggestion) >= branding.MIN_CONTRAST
    assert branding.parse_accent_colour(suggestion) == suggestion
    for bad in ("red", "#12345", "#1234567", "#ggg000", "javascript:1"):
        with pytest.raises(ValidationError):
            branding.parse_accent_colour(bad)


def test_contrast_matches_the_wcag_examples() -> None:
    assert round(branding.contrast_with_white("#000000"), 1) == 21.0
    assert round(branding.contrast_with_white("#ffffff"), 1) == 1.0
    assert round(branding.contrast_with_white("#767676"), 1) == 4.5


def test_branding_and_pictures_belong_to_one_merchant(
    session_factory: sessionmaker[Session], settings: Settings
) -> None:
    with session_factory.begin() as session:
        a = factories.merchant(session, settings, "Shop A", "a")
        b = factories.merchant(session, settings, "Shop B", "b")
        branding.save_look(session, a.id, "#1d4ed8", "kk")
        logo = branding.set_logo(session, a.id, png_bytes())
        assert branding.get_branding(session, a.id) == branding.Branding(
            logo.sha256, "#1d4ed8", "kk"
        )
        assert branding.get_branding(session, b.id) == branding.NO_BRANDING
        with pytest.raises(ValidationError):
            branding.save_look(session, b.id, "#1d4ed8", "de")
        item = catalog.add_item(session, a.id, "Latte", 120_000, "  Hot   drinks ")
        assert item.category == "Hot drinks"
        with pytest.raises(ValidationError):
            catalog.add_item(session, a.id, "Tea", 100_000, "x" * 41)


def test_groups_are_alphabetical_with_uncategorised_last(
    session_factory: sessionmaker[Session], settings: Settings
) -> None:
    with session_factory.begin() as session:
        shop = factories.merchant(session, settings, "Shop A", "a")
        for name, category in [
            ("Bun", "Food"),
            ("Tea", "drinks"),
            ("Gift card", ""),
            ("Ale", "Food"),
        ]:
            catalog.add_item(session, shop.id, name, 100_000, category)
        items = catalog.list_items(session, shop.id)
        groups = catalog.group_by_category(items)
        assert [(c, [i.name for i in g]) for c, g in groups] == [
            ("drinks", ["Tea"]),
            ("Food", ["Ale", "Bun"]),
            (None, ["Gift card"]),
        ]
        assert catalog.categories(items) == ["drinks", "Food"]
        assert [c for c, _g in catalog.group_by_category(items, "Food")] == ["Food"]
        assert catalog.group_by_category(items, "Nope") == []
