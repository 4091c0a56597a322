"""`<int:…>` in a route: ASCII digits that fit the database's BIGINT, else the route answers 404.

Werkzeug's own converter takes any length (and any Unicode decimal digit): `/…/99…9` (30 digits)
reached the database and crashed the driver ("Python int too large to convert to SQLite
INTEGER"), a 500 instead of "not found".
"""

from __future__ import annotations

from typing import Any

from werkzeug.routing import IntegerConverter, Map

BIGINT_MAX = 2**63 - 1


class BigintConverter(IntegerConverter):
    """An id column's value: 0 .. 2**63-1, written in ASCII digits."""

    regex = r"[0-9]{1,19}"

    def __init__(self, map: Map, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("max", BIGINT_MAX)
        super().__init__(map, *args, **kwargs)
