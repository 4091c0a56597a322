"""Binance's public spot ticker: BTC against a dollar stablecoin (BTCUSDT).

`GET <BINANCE_API_URL>/api/v3/ticker/24hr?symbol=BTCUSDT` answers:

    {"symbol": "BTCUSDT", "lastPrice": "97312.45000000", "bidPrice": "97312.44000000",
     "askPrice": "97312.45000000", …, "openTime": 1795346400000, "closeTime": 1795432799999, …}

`closeTime` (milliseconds) is when the rolling 24 h window was last computed, i.e. how current
the prices are. We take the bid/ask mid. Errors are `{"code": -1121, "msg": "Invalid symbol."}`
with HTTP 400; too many requests get HTTP 429 with Retry-After (418 once banned).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import quote

from pos.rates import RateQuote
from settlement.rates.errors import FeedMalformedError
from settlement.rates.transport import get


def _price(data: dict[str, Any], field: str, name: str) -> Decimal:
    try:
        value = Decimal(str(data[field]))
    except (KeyError, InvalidOperation):
        raise FeedMalformedError(f"{name}: {field} is missing or not a number") from None
    if not value.is_finite() or value <= 0:
        raise FeedMalformedError(f"{name}: {field} {value} is not a price")
    return value


def parse_ticker(body: bytes, symbol: str, pair: str, name: str) -> RateQuote:
    try:
        data = json.loads(body)
    except ValueError:
        raise FeedMalformedError(f"{name}: not JSON") from None
    if not isinstance(data, dict):
        raise FeedMalformedError(f"{name}: expected a ticker object")
    if "code" in data and "msg" in data:
        raise FeedMalformedError(f"{name}: Binance error {data['code']}: {data['msg']}")
    if data.get("symbol") != symbol:
        raise FeedMalformedError(f"{name}: the ticker is for {data.get('symbol')!r}")
    bid, ask = _price(data, "bidPrice", name), _price(data, "askPrice", name)
    if bid > ask:
        raise FeedMalformedError(f"{name}: crossed book (bid {bid} above ask {ask})")
    close_ms = data.get("closeTime")
    if not isinstance(close_ms, int) or isinstance(close_ms, bool) or close_ms <= 0:
        raise FeedMalformedError(f"{name}: closeTime is not a Unix time in milliseconds")
    mid = ((bid + ask) / 2).quantize(Decimal("0.00000001"))
    seconds, millis = divmod(close_ms, 1000)
    as_of = datetime.fromtimestamp(seconds, UTC) + timedelta(milliseconds=millis)
    return RateQuote(pair, mid, name, as_of)


class BinanceTicker:
    """One Binance spot symbol, e.g. BTCUSDT as BTC/USDT."""

    refresh_seconds = 15.0

    def __init__(self, symbol: str, pair: str, base_url: str, timeout_seconds: float) -> None:
        self.symbol = symbol
        self.base_url = base_url.rstrip("/")
        self.timeout_seconds = timeout_seconds
        self.name = f"binance:{symbol}"
        self.pair = pair

    def fetch(self, now: datetime) -> RateQuote:
        url = f"{self.base_url}/api/v3/ticker/24hr?symbol={quote(self.symbol)}"
        return parse_ticker(
            get(self.name, url, self.timeout_seconds), self.symbol, self.pair, self.name
        )
