"""Every string the portal can show has a Russian and a Kazakh translation, and the compiled
catalogs a till loads say the same as the `.po` files.

The strings are extracted from the sources right now (not read from the committed
`messages.pot`), so a new `_()` in a template or a view fails here until someone translates it:
run `python -m merchant_portal.i18n update`, fill the empty `msgstr`s, run it again.
"""

from __future__ import annotations

import re

import pytest
from babel.messages.catalog import Catalog, Message
from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po

from merchant_portal.i18n import TRANSLATIONS_DIR, extracted_catalog

TRANSLATED_LANGUAGES = ("ru", "kk")
PLACEHOLDER = re.compile(r"%\((\w+)\)[sd]")


def _po(language: str) -> Catalog:
    path = TRANSLATIONS_DIR / language / "LC_MESSAGES" / "messages.po"
    with path.open("rb") as po_file:
        return read_po(po_file, locale=language)


def _mo(language: str) -> Catalog:
    path = TRANSLATIONS_DIR / language / "LC_MESSAGES" / "messages.mo"
    with path.open("rb") as mo_file:
        return read_mo(mo_file)


def _forms(message: Message) -> tuple[str, ...]:
    string = message.string
    return tuple(string) if isinstance(string, (tuple, list)) else (str(string or ""),)


def _ids(message: Message) -> tuple[str, ...]:
    return tuple(message.id) if isinstance(message.id, (tuple, list)) else (str(message.id),)


@pytest.fixture(scope="module")
def source_strings() -> list[Message]:
    return [message for message in extracted_catalog() if message.id]


def test_the_sources_have_strings_to_translate(source_strings: list[Message]) -> None:
    # Guards the tests below against an extraction that silently finds nothing.
    ids = {_ids(message)[0] for message in source_strings}
    assert "Wrong e-mail or password." in ids
    assert len(ids) > 300


@pytest.mark.parametrize("language", TRANSLATED_LANGUAGES)
def test_every_portal_string_is_translated(language: str, source_strings: list[Message]) -> None:
    catalog = _po(language)
    untranslated = []
    for message in source_strings:
        entry = catalog.get(message.id, context=message.context)
        if entry is None or entry.fuzzy or not all(form.strip() for form in _forms(entry)):
            untranslated.append(_ids(message)[0])
    assert not untranslated, (
        f"{len(untranslated)} string(s) have no {language} translation "
        f"(run `python -m merchant_portal.i18n update` and fill them in): {untranslated}"
    )


@pytest.mark.parametrize("language", TRANSLATED_LANGUAGES)
def test_translations_keep_every_placeholder(language: str) -> None:
    # A lost %(amount)s shows the shopper a sentence without its number; an extra one is a
    # KeyError at render time.
    broken = []
    for message in _po(language):
        if not message.id or not message.string:
            continue
        expected = set(PLACEHOLDER.findall(" ".join(_ids(message))))
        for form in _forms(message):
            if form and set(PLACEHOLDER.findall(form)) != expected:
                broken.append((_ids(message)[0], form))
    assert not broken, broken


@pytest.mark.parametrize("language", TRANSLATED_LANGUAGES)
def test_the_compiled_catalog_matches_the_po_file(language: str) -> None:
    po = {
        (_ids(message)[0], message.context): _forms(message)
        for message in _po(language)
        if message.id and not message.fuzzy and all(_forms(message))
    }
    mo = {
        (_ids(message)[0], message.context): _forms(message)
        for message in _mo(language)
        if message.id
    }
    differing = po.keys() ^ mo.keys() | {key for key in po if mo.get(key) != po[key]}
    stale = sorted(key[0] for key in differing)
    assert not stale, f"{language}.mo is stale (run `… merchant_portal.i18n compile`): {stale}"


def test_the_committed_template_lists_the_source_strings(source_strings: list[Message]) -> None:
    with (TRANSLATIONS_DIR / "messages.pot").open("rb") as pot_file:
        committed = {_ids(message)[0] for message in read_po(pot_file) if message.id}
    extracted = {_ids(message)[0] for message in source_strings}
    assert committed == extracted, "run `python -m merchant_portal.i18n update`"
