"""Imports every module that defines tables, so `Base.metadata` knows the whole schema.

Alembic's env.py and the test harness import this; add a line when a package adds models.
"""

from __future__ import annotations

from pos import (
    catalog,  # noqa: F401
    chart,  # noqa: F401
    integrations,  # noqa: F401
    invoice_lines,  # noqa: F401
    models,  # noqa: F401
)
from settlement import chain_state  # noqa: F401
from settlement.ledger import models as ledger_models  # noqa: F401
