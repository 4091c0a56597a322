"""The owner's branding page: logo, accent colour and store language for the shopper's pages;
and what the choice page, checkout and receipt take from it.

Only the signed-in owner's own merchant is ever read or changed (the merchant id comes from the
session, never from the form or the URL), so one shop cannot see or touch another's look.
"""

from __future__ import annotations

from flask import Blueprint, g, redirect, render_template, request, url_for
from flask_babel import gettext, refresh
from flask_login import current_user
from werkzeug.wrappers import Response

from merchant_portal.context import db
from merchant_portal.forms import form_values
from merchant_portal.i18n import LANGUAGES
from merchant_portal.security import require_role
from pos import branding, media
from pos.errors import ValidationError

bp = Blueprint("branding", __name__, url_prefix="/merchant/branding")
STORE_LANGUAGE = "store_language"  # the `g` key `i18n.select_locale` reads


def image_error(exc: ValidationError) -> str:
    """An upload refusal in the user's language."""
    reason = exc.reason if isinstance(exc, media.ImageRejectedError) else ""
    messages = {
        "empty": gettext("Choose an image file."),
        "too_large": gettext("The image is larger than 5 MB."),
        "too_many_pixels": gettext("The image has more than 40 megapixels; send a smaller one."),
        "not_an_image": gettext("This is not a JPEG, PNG or WebP image, or the file is damaged."),
    }
    return str(messages.get(reason, str(exc)))


def look_error(exc: ValidationError) -> str:
    """A refused colour or language in the user's language."""
    if isinstance(exc, branding.AccentTooLightError):
        ratio = f"{exc.ratio:.1f}"
        return str(
            gettext(
                "%(colour)s is too light: white text on it has a contrast of %(ratio)s:1, and "
                "at least 4.5:1 is needed to read it. The nearest darker shade that is "
                "readable is %(suggestion)s.",
                colour=exc.colour,
                ratio=ratio,
                suggestion=exc.suggestion,
            )
        )
    if exc.field == "accent_colour":
        return str(gettext("Write the colour as #rrggbb, for example #0b6e4f."))
    return str(gettext("Choose English, Russian or Kazakh."))


def uploaded_bytes(name: str) -> bytes:
    """The file sent in field `name`, at most the upload limit (b'' if none was chosen)."""
    upload = request.files.get(name)
    if upload is None:
        return b""
    return upload.stream.read(media.MAX_UPLOAD_BYTES + 1)


def use_store_language(merchant_id: int) -> branding.Branding:
    """The merchant's look for a shopper's page; its language applies unless a cookie chose."""
    look = branding.get_branding(db(), merchant_id)
    if look.store_language:
        g.setdefault(STORE_LANGUAGE, look.store_language)
        refresh()  # the locale may have been picked already in this request
    return look


def _render(errors: dict[str, str] | None = None, form: dict[str, str] | None = None) -> str:
    look = branding.get_branding(db(), current_user.merchant_id)
    form = form or {
        "accent_colour": look.accent_colour or "",
        STORE_LANGUAGE: look.store_language or "",
    }
    return render_template(
        "merchant_branding.html",
        look=look,
        brand=look,  # the accent preview: this page loads the same stylesheet
        errors=errors or {},
        form=form,
        languages=LANGUAGES,
    )


@bp.get("")
@require_role("owner")
def index() -> str:
    return _render()


@bp.post("")
@require_role("owner")
def save() -> Response | tuple[str, int]:
    form = form_values(("accent_colour", STORE_LANGUAGE))
    session = db()
    try:
        branding.save_look(
            session, current_user.merchant_id, form["accent_colour"], form[STORE_LANGUAGE]
        )
        session.commit()
    except ValidationError as exc:
        session.rollback()
        return _render({exc.field or "form": look_error(exc)}, form), 400
    return redirect(url_for("branding.index"))


@bp.post("/logo")
@require_role("owner")
def upload_logo() -> Response | tuple[str, int]:
    session = db()
    try:
        branding.set_logo(session, current_user.merchant_id, uploaded_bytes("logo"))
        session.commit()
    except ValidationError as exc:
        session.rollback()
        return _render({"logo": image_error(exc)}), 400
    return redirect(url_for("branding.index"))


@bp.post("/logo/delete")
@require_role("owner")
def remove_logo() -> Response:
    branding.remove_logo(db(), current_user.merchant_id)
    db().commit()
    return redirect(url_for("branding.index"))
