"""Uploaded images (product photos, shop logos): checked, cleaned, resized and stored by hash.

An upload is only ever decoded by Pillow after its header passed the limits below, so a
"decompression bomb" (a few kilobytes that decode to gigapixels) is refused before any pixel is
allocated. What is stored is never the upload itself: it is a freshly encoded square WebP
thumbnail without EXIF, GPS, ICC or comments, so nothing the camera wrote leaks to shoppers.

The bytes live in the database (`media_blobs`, keyed by their SHA-256), so every web process
and both SQLite and PostgreSQL serve the same files, and a URL that names the hash can be cached
forever: other bytes get another URL.
"""

from __future__ import annotations

import hashlib
import io
import re
import warnings
from dataclasses import dataclass
from datetime import datetime

from PIL import Image, ImageOps, UnidentifiedImageError
from sqlalchemy import LargeBinary, String
from sqlalchemy.orm import Mapped, Session, mapped_column

from pos.db import Base, utcnow
from pos.errors import ValidationError

MAX_UPLOAD_BYTES = 5 * 1024 * 1024
MAX_PIXELS = 40_000_000  # 40 megapixels: more than any phone photo, far below a bomb
ACCEPTED_FORMATS = frozenset({"JPEG", "PNG", "WEBP"})
THUMBNAIL_PX = 256
OUTPUT_FORMAT, OUTPUT_EXT, OUTPUT_TYPE = "WEBP", "webp", "image/webp"
CONTENT_TYPES = {"webp": "image/webp", "png": "image/png"}
SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")


class ImageRejectedError(ValidationError):
    """The upload is empty, too big, too many pixels, or no JPEG/PNG/WebP; `reason` says which
    (the portal words it in the user's language)."""

    def __init__(self, reason: str, message: str, field: str) -> None:
        super().__init__(message, field=field)
        self.reason = reason


class MediaBlob(Base):
    """One stored image; its name is the SHA-256 of its bytes, so it never changes."""

    __tablename__ = "media_blobs"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    ext: Mapped[str] = mapped_column(String(8))
    content_type: Mapped[str] = mapped_column(String(40))
    data: Mapped[bytes] = mapped_column(LargeBinary)
    width: Mapped[int]
    height: Mapped[int]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


@dataclass(frozen=True)
class Thumbnail:
    data: bytes
    width: int
    height: int

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


def make_thumbnail(raw: bytes, size: int = THUMBNAIL_PX, field: str = "image") -> Thumbnail:
    """A square `size` px WebP of an uploaded JPEG, PNG or WebP; `ValidationError` otherwise.

    Checks, in order: the byte size, that Pillow recognises one of the accepted formats, and
    the pixel count from the header — all before decoding. Then the orientation tag is applied
    (the only metadata worth keeping), the centre is cropped square and resized.
    """
    if not raw:
        raise ImageRejectedError("empty", "choose an image file", field)
    if len(raw) > MAX_UPLOAD_BYTES:
        raise ImageRejectedError("too_large", "the image is larger than 5 MB", field)
    try:
        with warnings.catch_warnings():
            # Pillow's own bomb warning is an error here; our limit is lower anyway.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(raw), formats=sorted(ACCEPTED_FORMATS)) as probe:
                width, height = probe.size
                if width * height > MAX_PIXELS:
                    raise ImageRejectedError(
                        "too_many_pixels", "the image has more than 40 megapixels", field
                    )
                probe.seek(0)  # the first frame of an animation
                probe.load()
                upright = ImageOps.exif_transpose(probe)
                rgba = upright.convert("RGBA")
    except ImageRejectedError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        # Pillow's own guard, in `open`, for headers claiming far more than our limit.
        raise ImageRejectedError(
            "too_many_pixels", "the image has more than 40 megapixels", field
        ) from None
    except (
        UnidentifiedImageError,
        OSError,
        ValueError,
        SyntaxError,  # Pillow raises it for some broken PNG chunks
        EOFError,
    ):
        raise ImageRejectedError(
            "not_an_image", "this is not a JPEG, PNG or WebP image (or it is damaged)", field
        ) from None
    square = ImageOps.fit(rgba, (size, size), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    # A fresh image carries no EXIF, ICC profile or comments; nothing is passed to `save`.
    square.save(out, OUTPUT_FORMAT, quality=85, method=4)
    return Thumbnail(out.getvalue(), size, size)


def store_thumbnail(session: Session, thumbnail: Thumbnail) -> MediaBlob:
    """Keep the bytes once (the same image uploaded twice is one row)."""
    existing = session.get(MediaBlob, thumbnail.sha256)
    if existing is not None:
        return existing
    blob = MediaBlob(
        sha256=thumbnail.sha256,
        ext=OUTPUT_EXT,
        content_type=OUTPUT_TYPE,
        data=thumbnail.data,
        width=thumbnail.width,
        height=thumbnail.height,
    )
    session.add(blob)
    session.flush()
    return blob


def store_upload(session: Session, raw: bytes, field: str = "image") -> MediaBlob:
    """Check, clean, resize and store an upload; `ValidationError` for anything else."""
    return store_thumbnail(session, make_thumbnail(raw, field=field))


def find_blob(session: Session, sha256: str, ext: str) -> MediaBlob | None:
    """The stored image with this hash and extension; None for any other name."""
    if not SHA256_HEX.match(sha256):
        return None
    blob = session.get(MediaBlob, sha256)
    return blob if blob is not None and blob.ext == ext else None
