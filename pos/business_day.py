"""Business days are Asia/Almaty days (DESIGN §7): UTC+5 all year, no daylight saving.

Kazakhstan moved to a single UTC+5 zone in March 2024; a fixed offset (rather than the
system's tz database, which may predate that change) keeps every cut at local midnight the
same on every machine. Stored times stay UTC; these functions are the one place that turns a
local day into a UTC range and a UTC moment into a local day or clock time.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta, timezone

ZONE_TZ = timezone(timedelta(hours=5), "Asia/Almaty")
ZONE_TZ_NAME = "Asia/Almaty (UTC+5)"


def day_start(day: date) -> datetime:
    """The UTC moment local midnight begins `day`."""
    return datetime.combine(day, time.min, tzinfo=ZONE_TZ).astimezone(UTC)


def day_range(first: date, last: date) -> tuple[datetime, datetime]:
    """[start, end) in UTC covering local days `first` .. `last`, both included."""
    return day_start(first), day_start(last + timedelta(days=1))


def local_date(moment: datetime) -> date:
    """The business day an aware UTC moment falls on."""
    return moment.astimezone(ZONE_TZ).date()


def local_time(moment: datetime) -> datetime:
    """An aware moment shown on the zone's clock."""
    return moment.astimezone(ZONE_TZ)


def today(now: datetime | None = None) -> date:
    return local_date(now or datetime.now(UTC))
