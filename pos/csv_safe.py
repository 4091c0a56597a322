"""CSV text for every export the project writes, safe to open in a spreadsheet.

A spreadsheet runs a cell that starts with `=`, `+`, `-` or `@` (or a tab / CR before one) as a
formula: a merchant name or a description like `=HYPERLINK(...)` would run on the operator's
machine. Prefixing such a cell with `'` makes it text. A guard on the first character alone is
not enough: a spreadsheet in a locale whose list separator is `;` splits the unquoted cell
`x;=cmd|' /C calc'!A0` in two, and the second part starts with `=`. So a text cell is neutralised
when any part of it, split on the characters a spreadsheet may take for a separator, starts with
a formula character, and a neutralised cell (or one holding such a separator) is always quoted,
so no spreadsheet splits it.

Numbers stay numbers: ints and Decimals are written as they are, and so is a text cell that is a
plain decimal number (`-1500`, `15.00`), so negative amounts keep summing in the money columns.
No Flask import: the portal, the CLI and the settlement reports all use this one writer.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

FORMULA_STARTS = ("=", "+", "-", "@")
# What a spreadsheet may take for a cell or row separator when it opens a CSV (by locale, by
# guess, or by ignoring our quotes).
SEPARATORS = ",;\t|\r\n"
# A part of a cell that runs: at the start of the cell or after a separator, past any blanks,
# control characters or a quote a spreadsheet skips, a formula sign.
_RUNNABLE_PART = re.compile(r"(^|[,;\t|\r\n])(?=[\s\x00-\x1f\"]*[=+\-@])")
_PLAIN_NUMBER = re.compile(r"-?\d+([.,]\d+)?")
# Characters a cell is quoted for (ours: every separator-like one, and the quote itself).
_NEEDS_QUOTES = re.compile(r"[,;\t|\r\n\"]")


def neutralise(text: str) -> str:
    """The text as a spreadsheet keeps it as text: `'` before every part that could run.

    The `'` goes at the start of the cell and right after each separator that a formula follows,
    so `x;=cmd|' /C calc'!A0` becomes `x;'=cmd|' /C calc'!A0`: split on `;` or not, no part of
    it starts with `=`. A plain decimal number (`-1500`) is left as it is.
    """
    if _PLAIN_NUMBER.fullmatch(text):
        return text
    if text[:1] in ("\t", "\r"):  # a leading tab or CR is where some spreadsheets start a formula
        text = "'" + text
    return _RUNNABLE_PART.sub(lambda m: m.group(1) + "'", text)


def cell_text(value: Any) -> str:
    """One cell as CSV text: numbers as they are, text neutralised and quoted when needed."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int | float | Decimal):
        return str(value)
    raw = str(value)
    text = neutralise(raw)
    if text != raw or _NEEDS_QUOTES.search(text):
        return '"' + text.replace('"', '""') + '"'
    return text


def row_text(row: Iterable[Any]) -> str:
    """One CSV line (with its newline)."""
    return ",".join(cell_text(v) for v in row) + "\n"


def csv_text(header: Iterable[str], rows: Iterable[Iterable[Any]]) -> str:
    """A whole CSV file: the header line, then one line per row."""
    buffer = io.StringIO()
    buffer.write(row_text(header))
    for row in rows:
        buffer.write(row_text(row))
    return buffer.getvalue()
