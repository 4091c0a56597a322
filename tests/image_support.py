"""Small real images for the upload tests, drawn with Pillow (no binary files committed)."""

from __future__ import annotations

import io

from PIL import Image


def png_bytes(
    colour: tuple[int, int, int] = (200, 40, 40), size: tuple[int, int] = (64, 48)
) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, "PNG")
    return out.getvalue()


def jpeg_with_exif(colour: tuple[int, int, int] = (10, 120, 60)) -> bytes:
    """A JPEG that carries EXIF (camera make, GPS tag, orientation 6: turned 90°)."""
    image = Image.new("RGB", (80, 40), colour)
    exif = Image.Exif()
    exif[0x010F] = "SpyCam"  # Make
    exif[0x0112] = 6  # Orientation
    exif[0x8825] = {2: (51.0, 10.0, 0.0)}  # GPS latitude, as a tag the camera wrote
    out = io.BytesIO()
    image.save(out, "JPEG", exif=exif, comment=b"secret comment")
    return out.getvalue()


def multipart(fields: dict[str, str], files: dict[str, bytes]) -> tuple[bytes, str]:
    """A multipart/form-data body and its content type, built in memory.

    For big uploads: Werkzeug's test client spools a large encoded body to a temporary file it
    never closes (a ResourceWarning, an error under `-W error`).
    """
    boundary = "cc-test-boundary-7d1f"
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        for name, value in fields.items()
    ]
    parts += [
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="x.jpg"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + data
        + b"\r\n"
        for name, data in files.items()
    ]
    return b"".join(
        parts
    ) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"
