"""The CME Globex trading session, trade dates and exchange holidays.

Globex trades from Sunday 18:00 to Friday 17:00 America/New_York with a daily break from 17:00 to
18:00. A session is named by its trade date: the session that opens at 18:00 ET on Wednesday is
Thursday's. Holidays follow globex_holidays.py (built-in CME rules on the `holidays` package's NYSE
calendar, plus the operator's JT_MARKET_HOLIDAYS_FILE): a closed day (New Year's Day, Good Friday,
Christmas) has no session, a holiday halt (Thanksgiving, MLK Day and the other US holidays) stops at
13:00 ET and its trading belongs to the next trade date, and an early close (the day after
Thanksgiving, Christmas Eve) ends the trade date at 13:15 or 13:45 ET depending on the product.
Every function takes and returns timezone-aware datetimes (results in UTC) and raises ValueError on
naive ones, because a naive time cannot be placed in the session.
"""

from __future__ import annotations

import datetime as dt

from . import globex_holidays
from .globex_holidays import NEW_YORK, SESSION_CLOSE, SESSION_OPEN

__all__ = ["NEW_YORK", "SESSION_CLOSE", "SESSION_OPEN"]

# Exchanges of markets/products.py and the holiday-hours group that their futures follow.
EXCHANGE_GROUPS = {
    "CME": globex_holidays.EQUITY_INDEX,
    "CBOT": globex_holidays.EQUITY_INDEX,
    "NYMEX": globex_holidays.ENERGY_METALS,
    "COMEX": globex_holidays.ENERGY_METALS,
}

_ONE_DAY = dt.timedelta(days=1)
# No run of non-trade dates is this long (the longest is a weekend plus two holidays), so a search
# that reaches it means an override file closes a whole month.
_MAX_DAYS_SEARCHED = 31


def _require_aware(now: dt.datetime) -> None:
    if not isinstance(now, dt.datetime):
        raise TypeError(f"expected a datetime, got {type(now).__name__}")

    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError(f"datetime {now.isoformat()} is naive: pass a timezone-aware time such as datetime.now(timezone.utc)")


def is_business_day(day: dt.date) -> bool:
    """Return True for CME trade dates: Monday to Friday less exchange holidays (closed days and holiday halts)."""
    return globex_holidays.is_trade_date(day)


def _next_business_day(day: dt.date, step: dt.timedelta) -> dt.date:
    for _ in range(_MAX_DAYS_SEARCHED):
        day += step
        if is_business_day(day):
            return day
    raise ValueError(
        f"no CME trade date within {_MAX_DAYS_SEARCHED} days of {day.isoformat()}: "
        f"check the closed days in {globex_holidays.OVERRIDES_ENV}"
    )


def add_business_days(day: dt.date, count: int) -> dt.date:
    """Step `count` business days forward (or backward when negative) from `day`."""
    step = _ONE_DAY if count >= 0 else -_ONE_DAY
    for _ in range(abs(count)):
        day = _next_business_day(day, step)
    return day


def last_business_day(year: int, month: int) -> dt.date:
    """Return the last business day of a calendar month."""
    first_of_next = dt.date(year + month // 12, month % 12 + 1, 1)
    return add_business_days(first_of_next, -1)


def session_date(now: dt.datetime) -> dt.date:
    """Return the trade date of the session that contains `now`, or of the next one while closed.

    A time at or after a trade date's close (17:00 ET, earlier on early-close days) belongs to the
    next trade date. Friday evening, the weekend and holidays belong to the next trade date too, which
    is how CME dates the trading during a holiday halt.
    """
    _require_aware(now)

    day = now.astimezone(NEW_YORK).date()
    if is_business_day(day) and now < session_close_of(day):
        return day
    return _next_business_day(day, _ONE_DAY)


def session_open_of(trading_day: dt.date) -> dt.datetime:
    """Return the UTC time at which the session of `trading_day` first opens.

    That is 18:00 ET on the first evening after the previous trade date on which Globex opens: the day
    before for most days, Sunday for Monday and for the Tuesday after a Monday holiday halt.
    """
    previous = add_business_days(trading_day, -1)
    evening = previous
    while evening < trading_day - _ONE_DAY and not globex_holidays.evening_opens(evening):
        evening += _ONE_DAY

    local = dt.datetime.combine(evening, SESSION_OPEN, tzinfo=NEW_YORK)
    return local.astimezone(dt.timezone.utc)


def session_close_of(trading_day: dt.date) -> dt.datetime:
    """Return the UTC time at which the session of `trading_day` closes: 17:00 ET, or the last early close."""
    close = globex_holidays.latest_close_time(trading_day) or SESSION_CLOSE
    local = dt.datetime.combine(trading_day, close, tzinfo=NEW_YORK)
    return local.astimezone(dt.timezone.utc)


def session_start(now: dt.datetime) -> dt.datetime:
    """Return the UTC start of the session containing `now`, or of the next session while closed."""
    return session_open_of(session_date(now))


def session_end(now: dt.datetime) -> dt.datetime:
    """Return the UTC end of the session containing `now`, or of the next session while closed."""
    return session_close_of(session_date(now))


def is_market_open(now: dt.datetime, exchange: str | None = None) -> bool:
    """Return True while Globex trades: Sunday 18:00 to Friday 17:00 ET less the daily break and holiday hours.

    With an exchange of markets/products.py (CME, CBOT, NYMEX, COMEX), the hours of its futures; without
    one, whether any of the platform's futures trade, which is what `market_open` in /health reports.
    """
    _require_aware(now)

    group = None
    if exchange is not None:
        group = EXCHANGE_GROUPS.get(exchange.upper())
        if group is None:
            raise ValueError(f"exchange {exchange!r} is unknown: use one of {', '.join(EXCHANGE_GROUPS)}")
    return globex_holidays.is_open(now, group)


def load_holiday_overrides() -> int:
    """Read JT_MARKET_HOLIDAYS_FILE now, so an invalid file fails at start; return its number of dates.

    Raises globex_holidays.HolidayFileError (a ValueError) naming the entry and the fix.
    """
    return len(globex_holidays.overrides_from_environ())
