"""The owner's invoice export is inert however the spreadsheet splits its lines."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable

import pytest
from csv_support import HOSTILE, runnable_cells
from flask.testing import FlaskClient

from pos.states import PaymentMethod


@pytest.mark.parametrize("description", HOSTILE)
def test_owner_export_neutralises_hostile_descriptions(
    as_user: Callable[[str | None], FlaskClient],
    make_invoice: Callable[..., str],
    world: dict[str, int],
    description: str,
) -> None:
    invoice_id = make_invoice(world["shop"], 250_000, PaymentMethod.KZTE, description)
    export = as_user("owner").get("/merchant/invoices/export.csv")
    text = export.get_data(as_text=True)
    assert runnable_cells(text) == []  # the old guard let `x;=cmd|…` through
    [row] = list(csv.DictReader(io.StringIO(text)))
    assert row["id"] == invoice_id and row["price_tiyn"] == "250000"
