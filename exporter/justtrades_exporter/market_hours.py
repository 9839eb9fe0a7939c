"""The CME Globex session clock: Sunday 18:00 to Friday 17:00 America/New_York, with a daily break 17:00-18:00.

Used for `justtrades_market_open` when the platform's /health does not report `market_open` itself.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

NEW_YORK = ZoneInfo("America/New_York")
SESSION_CLOSE = dt.time(17, 0)
SESSION_OPEN = dt.time(18, 0)

_FRIDAY = 4
_SATURDAY = 5
_SUNDAY = 6


def is_cme_globex_open(now: dt.datetime) -> bool:
    """Return whether the CME Globex session is open at `now`, which must be timezone-aware.

    TODO: exchange holidays and their early closes are not modelled; on those days this reports the normal session.
    """
    if now.tzinfo is None:
        raise ValueError(
            f"time {now.isoformat()} has no timezone; pass an aware datetime such as datetime.now(timezone.utc)"
        )

    local = now.astimezone(NEW_YORK)
    weekday = local.weekday()
    clock = local.time()

    if weekday == _SATURDAY:
        return False
    if weekday == _SUNDAY:
        return clock >= SESSION_OPEN
    if weekday == _FRIDAY:
        return clock < SESSION_CLOSE
    return not (SESSION_CLOSE <= clock < SESSION_OPEN)
