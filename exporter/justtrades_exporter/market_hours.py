"""The CME Globex session clock: Sunday 18:00 to Friday 17:00 America/New_York, with a daily break 17:00-18:00.

Used for `justtrades_market_open` when the platform's /health does not report `market_open` itself.
Exchange holidays (closed days, 13:00 ET holiday halts, early closes) and the JT_MARKET_HOLIDAYS_FILE
overrides come from globex_holidays.py, a copy of the platform's module kept identical by a test.
"""

from __future__ import annotations

import datetime as dt

from . import globex_holidays
from .globex_holidays import NEW_YORK, SESSION_CLOSE, SESSION_OPEN

__all__ = ["NEW_YORK", "SESSION_CLOSE", "SESSION_OPEN", "is_cme_globex_open", "load_holiday_overrides"]


def is_cme_globex_open(now: dt.datetime) -> bool:
    """Return whether any of the platform's CME Globex futures trade at `now`, which must be timezone-aware."""
    if now.tzinfo is None:
        raise ValueError(
            f"time {now.isoformat()} has no timezone; pass an aware datetime such as datetime.now(timezone.utc)"
        )
    return globex_holidays.is_open(now)


def load_holiday_overrides() -> int:
    """Read JT_MARKET_HOLIDAYS_FILE now, so an invalid file fails at start; return its number of dates."""
    return len(globex_holidays.overrides_from_environ())
