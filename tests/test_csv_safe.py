"""The one CSV writer (pos.csv_safe): formulas neutralised, numbers left numbers."""

from __future__ import annotations

import csv
import io
from decimal import Decimal

import pytest
from csv_support import HOSTILE, runnable_cells

from pos import csv_safe


@pytest.mark.parametrize("hostile", HOSTILE)
def test_a_hostile_cell_is_inert_however_the_spreadsheet_splits_it(hostile: str) -> None:
    text = csv_safe.csv_text(("id", "name"), [(1, hostile), (2, "Tea")])
    assert runnable_cells(text) == []
    [row] = [r for r in csv.DictReader(io.StringIO(text)) if r["id"] == "1"]
    assert row["name"].replace("'", "") == hostile.replace("'", "")  # the text itself is kept


def test_the_semicolon_locale_bypass_is_neutralised_inside_the_cell() -> None:
    # The old guard looked at the first character only: `x;=…` went out as it was, and a
    # spreadsheet splitting on `;` ran the second part.
    assert csv_safe.neutralise("x;=cmd|' /C calc'!A0") == "x;'=cmd|' /C calc'!A0"
    assert csv_safe.neutralise('a;"=cmd') == "a;'\"=cmd"
    assert csv_safe.neutralise(" \x00@SUM(A1)") == "' \x00@SUM(A1)"
    assert csv_safe.neutralise("\t1") == "'\t1"


@pytest.mark.parametrize("plain", ["Coffee", "hello-world", "a + b", "e-mail@shop", "O'Brien"])
def test_ordinary_text_is_left_alone(plain: str) -> None:
    assert csv_safe.neutralise(plain) == plain


def test_numbers_stay_numbers() -> None:
    line = csv_safe.row_text([-1500, Decimal("-12.50"), "-1500", "15.00", "-3,5", None, True])
    assert line == '-1500,-12.50,-1500,15.00,"-3,5",,True\n'


def test_cells_with_separators_or_quotes_are_quoted() -> None:
    assert csv_safe.cell_text('say "hi"; then go') == '"say ""hi""; then go"'
    assert csv_safe.cell_text("a|b") == '"a|b"'
    assert csv_safe.cell_text("line\nbreak") == '"line\nbreak"'
    assert list(csv.reader(io.StringIO(csv_safe.row_text(["a,b", 'q"', 7])))) == [
        ["a,b", 'q"', "7"]
    ]
