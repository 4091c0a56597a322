"""Languages: English, Russian and Kazakh (Flask-Babel), picked from a cookie or Accept-Language.

Catalogs live in `merchant_portal/translations/<lang>/LC_MESSAGES/messages.po`; the compiled
`.mo` files are committed so a till needs no build step. After adding or editing strings run
`python -m merchant_portal.i18n update`: it re-extracts `messages.pot`, merges it into every
`.po` (new strings arrive untranslated, vanished ones are dropped) and compiles the `.mo` files.

The `.po` files are written sorted by message and without source locations, so two branches
that add different strings rarely touch the same lines (a union merge is not safe: it glued
two neighbouring translations into one); `tests/portal/test_translations_complete.py` fails
while any string lacks a translation.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flask import Blueprint, Flask, g, redirect, request, url_for
from flask_babel import Babel, get_locale
from flask_babel import lazy_gettext as _l
from werkzeug.wrappers import Response

from merchant_portal.redirects import safe_next

if TYPE_CHECKING:
    from babel.messages.catalog import Catalog

LANGUAGES: dict[str, str] = {"en": "English", "ru": "Русский", "kk": "Қазақша"}
COOKIE = "lang"
COOKIE_MAX_AGE = 365 * 86_400
TRANSLATIONS_DIR = Path(__file__).parent / "translations"
# Packages beside the portal whose `N_("...")` messages reach people (flash, pages, errors).
DOMAIN_PACKAGES = ("pos", "settlement")

STATUS_LABELS = {
    "new": _l("waiting for payment"),
    "processing": _l("paid, confirming"),
    "settled": _l("paid"),
    "expired": _l("expired"),
    "invalid": _l("invalid"),
}

babel = Babel()
bp = Blueprint("i18n", __name__)


def select_locale() -> str:
    """The language cookie (set by the switch) wins; then the store's language on a shopper's
    page (`branding.use_store_language`); else the browser's Accept-Language."""
    chosen = request.cookies.get(COOKIE, "")
    if chosen in LANGUAGES:
        return chosen
    store: str = g.get("store_language", "")
    if store in LANGUAGES:
        return store
    return request.accept_languages.best_match(list(LANGUAGES), default="en") or "en"


def current_language() -> str:
    locale = get_locale()
    return "en" if locale is None else str(locale.language)


def status_label(status: str) -> str:
    """A shopper-friendly, translated name for an invoice status."""
    label = STATUS_LABELS.get(str(status))
    return str(status) if label is None else str(label)


@bp.get("/lang/<code>")
def switch(code: str) -> Response:
    """Remember a language in a cookie and go back to the page the shopper was on."""
    # Local paths only, like the login redirect: a switch link must not become an open redirect.
    response = redirect(safe_next(request.args.get("next")) or url_for("auth.index"))
    if code in LANGUAGES:
        response.set_cookie(
            COOKIE, code, max_age=COOKIE_MAX_AGE, samesite="Lax", httponly=True, secure=False
        )
    return response


def init_app(app: Flask) -> None:
    babel.init_app(
        app, locale_selector=select_locale, default_translation_directories="translations"
    )

    from merchant_portal import labels

    labels.init_app(app)

    @app.context_processor
    def _languages() -> dict[str, object]:
        return {
            "languages": LANGUAGES,
            "current_language": current_language,
            "status_label": status_label,
        }


def compile_catalogs(directory: Path = TRANSLATIONS_DIR) -> list[Path]:
    """Compile every `messages.po` below `directory` into its `messages.mo`; return the outputs."""
    from babel.messages.mofile import write_mo
    from babel.messages.pofile import read_po

    written: list[Path] = []
    for po_path in sorted(directory.glob("*/LC_MESSAGES/messages.po")):
        with po_path.open("rb") as po_file:
            catalog = read_po(po_file, locale=po_path.parent.parent.name)
        mo_path = po_path.with_suffix(".mo")
        with mo_path.open("wb") as mo_file:
            write_mo(mo_file, catalog)
        written.append(mo_path)
    return written


def extracted_catalog() -> Catalog:
    """Every translatable string in the Python and Jinja sources of the portal."""
    from babel.messages.catalog import Catalog
    from babel.messages.extract import extract_from_dir

    catalog = Catalog(project="CryptoCity Pay")
    method_map = [("**.py", "python"), ("**/templates/**.html", "jinja2")]
    options = {"**/templates/**.html": {"extensions": "jinja2.ext.i18n"}}
    root = Path(__file__).parent
    keywords: dict[str, Any] = {
        "_": None,
        "gettext": None,
        "ngettext": (1, 2),
        "_l": None,
        "lazy_gettext": None,
        "pgettext": ((1, "c"), 2),
        "lazy_pgettext": ((1, "c"), 2),
        "_lp": ((1, "c"), 2),
    }
    found = list(extract_from_dir(str(root), method_map, options, keywords=keywords))
    # The domain core and the ledger raise user-facing errors marked with the no-op `N_`
    # (pos.i18n; no Flask there); the portal translates them when it shows them.
    for package in DOMAIN_PACKAGES:
        found += extract_from_dir(
            str(root.parent / package), [("**.py", "python")], keywords={"N_": None}
        )
    for filename, lineno, message, comments, context in found:
        catalog.add(message, None, [(filename, lineno)], auto_comments=comments, context=context)
    return catalog


def extract_messages(directory: Path = TRANSLATIONS_DIR) -> Path:
    """Write the extracted strings to `messages.pot` (sorted, without locations)."""
    from babel.messages.pofile import write_po

    pot = directory / "messages.pot"
    with pot.open("wb") as out:
        write_po(out, extracted_catalog(), width=100, sort_output=True, no_location=True)
    return pot


def update_catalogs(directory: Path = TRANSLATIONS_DIR) -> list[Path]:
    """Extract, merge the template into every language's `.po`, and compile; return the `.po`s."""
    from babel.messages.pofile import read_po, write_po

    template = extracted_catalog()
    extract_messages(directory)
    updated: list[Path] = []
    for po_path in sorted(directory.glob("*/LC_MESSAGES/messages.po")):
        with po_path.open("rb") as po_file:
            catalog = read_po(po_file, locale=po_path.parent.parent.name)
        # No fuzzy guesses: a new string must be translated by a person, not matched to a
        # similar old one (a wrong amount or status label is worse than an English one).
        catalog.update(template, no_fuzzy_matching=True)
        catalog.obsolete.clear()
        with po_path.open("wb") as out:
            write_po(out, catalog, width=100, sort_output=True, no_location=True)
        updated.append(po_path)
    compile_catalogs(directory)
    return updated


def main(argv: list[str]) -> int:
    if argv[:1] == ["compile"]:
        for path in compile_catalogs():
            print(path)
        return 0
    if argv[:1] == ["extract"]:
        print(extract_messages())
        return 0
    if argv[:1] == ["update"]:
        for path in update_catalogs():
            print(path)
        return 0
    print("usage: python -m merchant_portal.i18n update|compile|extract", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
