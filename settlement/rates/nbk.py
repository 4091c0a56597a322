"""The National Bank of Kazakhstan's official daily exchange rates (nationalbank.kz).

`GET <NBK_RATES_URL>?fdate=DD.MM.YYYY` answers XML:

    <rates>
      <title>Official exchange rates of National Bank of Republic Kazakhstan</title>
      <date>23.11.2026</date>
      <item><fullname>ДОЛЛАР США</fullname><title>USD</title><description>471.25</description>
            <quant>1</quant><index>DOWN</index><change>-1.04</change></item>
      …
    </rates>

`description` is KZT per `quant` units (UZS and IRR are quoted per 100 and per 1000). The
rate is the official one for `date`, an Asia/Almaty calendar day; its age runs from that day's
start, and FIAT_RATE_MAX_AGE_HOURS (not the tickers' limit) decides when it is stale.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import datetime, time, timedelta, timezone
from decimal import Decimal, InvalidOperation, localcontext

from pos.rates import RateQuote
from settlement.rates.errors import FeedMalformedError
from settlement.rates.transport import get

ALMATY = timezone(timedelta(hours=5))  # UTC+5 all year (no daylight saving)


def parse_rates(body: bytes, currency: str, name: str) -> RateQuote:
    """The official KZT rate of one unit of `currency` from a get_rates.cfm answer."""
    try:
        root = ET.fromstring(body)
    except ET.ParseError as exc:
        raise FeedMalformedError(f"{name}: not XML: {exc}") from None
    if root.tag != "rates":
        raise FeedMalformedError(f"{name}: expected <rates>, got <{root.tag}>")
    try:
        day = datetime.strptime((root.findtext("date") or "").strip(), "%d.%m.%Y").date()
    except ValueError:
        raise FeedMalformedError(f"{name}: no valid <date> (DD.MM.YYYY)") from None
    for item in root.iter("item"):
        if (item.findtext("title") or "").strip() != currency:
            continue
        try:
            per_quant = Decimal((item.findtext("description") or "").strip())
            quant = int((item.findtext("quant") or "1").strip())
        except (InvalidOperation, ValueError):
            raise FeedMalformedError(f"{name}: {currency} has no numeric rate") from None
        if not per_quant.is_finite() or per_quant <= 0 or quant < 1:
            raise FeedMalformedError(
                f"{name}: {currency} rate {per_quant} per {quant} is not usable"
            )
        with localcontext() as ctx:
            ctx.prec = 40
            rate = per_quant / quant
        as_of = datetime.combine(day, time.min, tzinfo=ALMATY)
        return RateQuote(f"{currency}/KZT", rate, name, as_of)
    raise FeedMalformedError(f"{name}: no {currency} rate on {day:%d.%m.%Y}")


class NbkOfficialRate:
    """One currency's official rate against KZT, asked for the current Almaty day."""

    refresh_seconds = 600.0  # the rate changes once a day; this notices tomorrow's soon enough

    def __init__(self, currency: str, base_url: str, timeout_seconds: float) -> None:
        self.currency = currency
        self.base_url = base_url.rstrip("/")
        self.timeout_seconds = timeout_seconds
        self.name = f"nbk:{currency}"
        self.pair = f"{currency}/KZT"

    def fetch(self, now: datetime) -> RateQuote:
        day = now.astimezone(ALMATY).date()
        url = f"{self.base_url}?fdate={day:%d.%m.%Y}"
        body = get(self.name, url, self.timeout_seconds, accept="application/xml, text/xml")
        return parse_rates(body, self.currency, self.name)
