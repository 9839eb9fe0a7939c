"""The CME Globex trading session and business days.

Globex trades from Sunday 18:00 to Friday 17:00 America/New_York with a daily break from 17:00 to
18:00. A session is named by its trading day: the session that opens at 18:00 ET on Wednesday is
Thursday's. Every function takes and returns timezone-aware datetimes (results in UTC) and raises
ValueError on naive ones, because a naive time cannot be placed in the session.

TODO: exchange holidays are missing. Holiday closures and early halts count as open here, and
business days are Monday to Friday, so expiry and roll dates near a holiday can be one business day late.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

NEW_YORK = ZoneInfo("America/New_York")
SESSION_OPEN = dt.time(18, 0)  # New York time, on the calendar day before the trading day
SESSION_CLOSE = dt.time(17, 0)  # New York time, on the trading day

_ONE_DAY = dt.timedelta(days=1)
_SATURDAY = 5


def _require_aware(now: dt.datetime) -> None:
    if not isinstance(now, dt.datetime):
        raise TypeError(f"expected a datetime, got {type(now).__name__}")

    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError(f"datetime {now.isoformat()} is naive: pass a timezone-aware time such as datetime.now(timezone.utc)")


def is_business_day(day: dt.date) -> bool:
    """Return True for Monday to Friday (exchange holidays are not known, see the module TODO)."""
    return day.weekday() < _SATURDAY


def add_business_days(day: dt.date, count: int) -> dt.date:
    """Step `count` business days forward (or backward when negative) from `day`."""
    step = _ONE_DAY if count >= 0 else -_ONE_DAY
    remaining = abs(count)
    while remaining:
        day += step
        if is_business_day(day):
            remaining -= 1
    return day


def last_business_day(year: int, month: int) -> dt.date:
    """Return the last business day of a calendar month."""
    first_of_next = dt.date(year + month // 12, month % 12 + 1, 1)
    return add_business_days(first_of_next, -1)


def session_date(now: dt.datetime) -> dt.date:
    """Return the trading day of the session that contains `now`, or of the next one while closed.

    A time at or after 17:00 ET belongs to the next trading day (the daily break waits for the session
    opening at 18:00), and Friday evening and the weekend belong to Monday.
    """
    _require_aware(now)

    local = now.astimezone(NEW_YORK)
    day = local.date()
    if local.time() >= SESSION_CLOSE:
        day += _ONE_DAY

    while not is_business_day(day):
        day += _ONE_DAY
    return day


def session_open_of(trading_day: dt.date) -> dt.datetime:
    """Return the UTC time at which the session of `trading_day` opens (18:00 ET the day before)."""
    local = dt.datetime.combine(trading_day - _ONE_DAY, SESSION_OPEN, tzinfo=NEW_YORK)
    return local.astimezone(dt.timezone.utc)


def session_close_of(trading_day: dt.date) -> dt.datetime:
    """Return the UTC time at which the session of `trading_day` closes (17:00 ET that day)."""
    local = dt.datetime.combine(trading_day, SESSION_CLOSE, tzinfo=NEW_YORK)
    return local.astimezone(dt.timezone.utc)


def session_start(now: dt.datetime) -> dt.datetime:
    """Return the UTC start of the session containing `now`, or of the next session while closed."""
    return session_open_of(session_date(now))


def session_end(now: dt.datetime) -> dt.datetime:
    """Return the UTC end of the session containing `now`, or of the next session while closed."""
    return session_close_of(session_date(now))


def is_market_open(now: dt.datetime) -> bool:
    """Return True while the Globex session is open (Sunday 18:00 to Friday 17:00 ET, less the daily break)."""
    trading_day = session_date(now)
    return session_open_of(trading_day) <= now < session_close_of(trading_day)
