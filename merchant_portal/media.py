"""Public, immutable files: stored images at `/media/<sha256>.<ext>` and accent stylesheets.

Both are named by their content (the image's hash, the colour itself), so a browser or proxy
may keep them for a year: a new logo or colour is a new URL. The content type is the stored
one and `nosniff` (set for every answer by `security`) stops a browser from guessing another.

The page's CSP allows no inline styles, so a merchant's accent colour reaches the checkout as a
one-rule stylesheet, `/media/accent/<rrggbb>.css`, that sets the `--accent` custom property.
"""

from __future__ import annotations

from flask import Blueprint, Flask, abort, request
from werkzeug.wrappers import Response

from merchant_portal.context import db
from pos import branding, media
from pos.errors import ValidationError

bp = Blueprint("media", __name__, url_prefix="/media")

IMMUTABLE = "public, max-age=31536000, immutable"
# Upload forms carry an image of up to 5 MB (pos.media) plus the other fields.
UPLOAD_REQUEST_BYTES = media.MAX_UPLOAD_BYTES + 256 * 1024
UPLOAD_ENDPOINTS = frozenset(
    {
        "merchant_staff.add_product",
        "merchant_staff.edit_product",
        "branding.upload_logo",
    }
)


def init_app(app: Flask) -> None:
    """Register before CSRF: the body limit must be raised before anything reads the form."""

    @app.before_request
    def _allow_uploads() -> None:
        if request.endpoint in UPLOAD_ENDPOINTS:
            request.max_content_length = UPLOAD_REQUEST_BYTES


@bp.get("/<sha256>.<ext>")
def file(sha256: str, ext: str) -> Response:
    blob = media.find_blob(db(), sha256, ext)
    if blob is None:
        abort(404)
    return Response(
        blob.data,
        mimetype=blob.content_type,
        headers={"Cache-Control": IMMUTABLE, "X-Content-Type-Options": "nosniff"},
    )


@bp.get("/accent/<colour>.css")
def accent_css(colour: str) -> Response:
    try:
        checked = branding.parse_accent_colour("#" + colour if colour else "")
    except ValidationError:
        abort(404)
    if checked is None or checked != "#" + colour:
        abort(404)  # one URL per colour: lower case only
    css = f":root {{ --accent: {checked}; }}\n"
    return Response(css, mimetype="text/css", headers={"Cache-Control": IMMUTABLE})
