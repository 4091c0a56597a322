"""QR codes for payment URIs, as PNG bytes or SVG text."""

from __future__ import annotations

import io

import qrcode
import qrcode.image.svg
from qrcode.constants import ERROR_CORRECT_M


def _make(uri: str) -> qrcode.QRCode:
    code = qrcode.QRCode(error_correction=ERROR_CORRECT_M, border=4, box_size=8)
    code.add_data(uri)
    code.make(fit=True)
    return code


def qr_png(uri: str) -> bytes:
    buffer = io.BytesIO()
    _make(uri).make_image().save(buffer)
    return buffer.getvalue()


def qr_svg(uri: str) -> str:
    image = _make(uri).make_image(image_factory=qrcode.image.svg.SvgPathImage)
    return image.to_string(encoding="unicode")  # type: ignore[no-any-return]
