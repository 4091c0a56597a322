"""Marking the domain's user-facing messages for translation, without Flask.

`N_("...")` returns the text unchanged; Babel finds it (`python -m merchant_portal.i18n update`
extracts `pos/` with the keyword `N_`), and the portal translates an error's message when it
shows it (`merchant_portal.errors.translated`). Values go in as %-parameters, never formatted
into the text first, so the translatable text stays one fixed string:

    raise ValidationError(N_("%(text)s is not an amount in tenge"), field="amount", text=text)
"""

from __future__ import annotations


def N_(message: str) -> str:
    """Mark `message` for extraction; translation happens where it is shown."""
    return message
