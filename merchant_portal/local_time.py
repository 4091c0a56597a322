"""Pages show times on the zone's clock (pos.business_day); stored times and the API stay UTC.

`{{ invoice.created_at | localtime }}` prints "2026-03-02 00:30" for 19:30 UTC the day before;
a format may be given for seconds or the clock alone (`localtime('%H:%M')`).
"""

from __future__ import annotations

from datetime import UTC, datetime

from flask import Flask

from pos import business_day

PAGE_FORMAT = "%Y-%m-%d %H:%M"


def localtime(moment: object, fmt: str = PAGE_FORMAT) -> str:
    """`moment` on the zone's clock; "" for no moment (the template says what that means).

    ISO texts (times kept in JSON records, such as an invoice's rate components) are read
    first; a text that is not a time is shown as it is.
    """
    if isinstance(moment, str):
        text = moment
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            return text
    if not isinstance(moment, datetime):
        return ""  # None, or a key a JSON record lacks (Jinja's Undefined)
    if moment.tzinfo is None:  # our columns hand back aware UTC; a naive value is UTC too
        moment = moment.replace(tzinfo=UTC)
    return business_day.local_time(moment).strftime(fmt)


def init_app(app: Flask) -> None:
    app.add_template_filter(localtime, "localtime")
