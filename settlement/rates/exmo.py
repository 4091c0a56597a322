"""EXMO's public ticker: BTC quoted against KZT directly (pair BTC_KZT).

`GET <EXMO_API_URL>/v1.1/ticker` answers every pair at once:

    {"BTC_KZT": {"buy_price": "45010000", "sell_price": "45090000", "last_trade": "45050000",
                 "high": "…", "low": "…", "avg": "…", "vol": "…", "vol_curr": "…",
                 "updated": 1795432800}, …}

`updated` is Unix seconds. We take the mid of the best bid (`buy_price`) and ask
(`sell_price`) — what the book says now — rather than the last trade, which on a thin market
can be hours old. Errors come as HTTP statuses or as `{"result": false, "error": "…"}`.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from pos.rates import BTC_KZT, RateQuote
from settlement.rates.errors import FeedMalformedError
from settlement.rates.transport import get


def _price(row: dict[str, Any], field: str, name: str) -> Decimal:
    try:
        value = Decimal(str(row[field]))
    except (KeyError, InvalidOperation):
        raise FeedMalformedError(f"{name}: {field} is missing or not a number") from None
    if not value.is_finite() or value <= 0:
        raise FeedMalformedError(f"{name}: {field} {value} is not a price")
    return value


def parse_ticker(body: bytes, pair: str, name: str) -> RateQuote:
    try:
        data = json.loads(body)
    except ValueError:
        raise FeedMalformedError(f"{name}: not JSON") from None
    if not isinstance(data, dict):
        raise FeedMalformedError(f"{name}: expected an object of pairs")
    if data.get("result") is False:
        raise FeedMalformedError(f"{name}: EXMO error: {data.get('error', '')}")
    row = data.get(pair)
    if not isinstance(row, dict):
        raise FeedMalformedError(f"{name}: the ticker has no {pair}")
    bid, ask = _price(row, "buy_price", name), _price(row, "sell_price", name)
    if bid > ask:
        raise FeedMalformedError(f"{name}: crossed book (bid {bid} above ask {ask})")
    updated = row.get("updated")
    if not isinstance(updated, int) or isinstance(updated, bool) or updated <= 0:
        raise FeedMalformedError(f"{name}: updated is not a Unix time")
    mid = ((bid + ask) / 2).quantize(Decimal("0.01"))
    return RateQuote(BTC_KZT, mid, name, datetime.fromtimestamp(updated, UTC))


class ExmoTicker:
    """EXMO's BTC_KZT ticker."""

    refresh_seconds = 15.0

    def __init__(self, pair: str, base_url: str, timeout_seconds: float) -> None:
        self.exmo_pair = pair
        self.base_url = base_url.rstrip("/")
        self.timeout_seconds = timeout_seconds
        self.name = f"exmo:{pair}"
        self.pair = BTC_KZT

    def fetch(self, now: datetime) -> RateQuote:
        body = get(self.name, f"{self.base_url}/v1.1/ticker", self.timeout_seconds)
        return parse_ticker(body, self.exmo_pair, self.name)
