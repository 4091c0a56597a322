"""Compact JSON output formatted like Bitcoin Core's UniValue writer.

Amounts must print with exactly 8 decimals (``50.00000000``), other floats in
shortest round-trip form, and large cached fragments are spliced in verbatim.
"""

from __future__ import annotations

import json
from typing import Any

_encode_str = json.encoder.encode_basestring


class Amount(int):
    """A satoshi amount that serializes as a BTC number with 8 decimals."""

    def btc_text(self) -> str:
        """The amount as BTC text with exactly 8 decimals."""
        sign = "-" if self < 0 else ""
        whole, frac = divmod(abs(int(self)), 100_000_000)
        return f"{sign}{whole}.{frac:08d}"


class RawJSON(str):
    """Already-encoded JSON text, inserted into the output unchanged."""


def dumps(obj: Any) -> str:
    """Encode ``obj`` compactly, honouring :class:`Amount` and :class:`RawJSON`."""
    parts: list[str] = []
    _enc(obj, parts.append)
    return "".join(parts)


def _enc(o: Any, out: Any) -> None:
    # Order matters: bool is an int subclass, Amount is an int subclass.
    if isinstance(o, RawJSON):
        out(o)
    elif isinstance(o, str):
        out(_encode_str(o))
    elif o is None:
        out("null")
    elif o is True:
        out("true")
    elif o is False:
        out("false")
    elif isinstance(o, Amount):
        out(o.btc_text())
    elif isinstance(o, int):
        out(str(int(o)))
    elif isinstance(o, float):
        out(format(o, ".16g"))  # UniValue writes doubles with precision 16
    elif isinstance(o, dict):
        out("{")
        first = True
        for k, v in o.items():
            if not first:
                out(",")
            first = False
            out(_encode_str(k))
            out(":")
            _enc(v, out)
        out("}")
    elif isinstance(o, list | tuple):
        out("[")
        for i, v in enumerate(o):
            if i:
                out(",")
            _enc(v, out)
        out("]")
    else:
        out(_encode_str(str(o)))


def format_money_short(sats: int) -> str:
    """Core's FormatMoney without trailing zeros (used inside error messages)."""
    text = Amount(sats).btc_text()
    # Core trims zeros but keeps at least two decimals ("50.00", "0.0000282").
    while text.endswith("0") and text[-3].isdigit():
        text = text[:-1]
    return text
