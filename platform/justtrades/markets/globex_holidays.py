"""CME Globex holiday hours: which days are closed, halted early or closed early, per product group.

This file is kept byte-for-byte identical in the platform (justtrades/markets/globex_holidays.py) and the
exporter (justtrades_exporter/globex_holidays.py), because the exporter must not import the platform. The test
tests/exporter/test_globex_holidays_copy.py checks both copies. It imports only the standard library, the
`holidays` package and, for YAML override files, PyYAML.

Sourced: which dates are US exchange holidays comes from the `holidays` package's NYSE calendar
(`financial_holidays("XNYS")`, with its "half_day" category for the 13:00 ET stock-market early closes).
The 12:00 CT (13:00 ET) holiday halt with the reopening at 17:00 CT (18:00 ET) for the next trade date
is CME's 2024 Thanksgiving schedule for equity, interest-rate, NYMEX and COMEX products, applied here to
MLK Day, Presidents' Day, Memorial Day, Juneteenth, Independence Day, Labor Day and Thanksgiving. The
12:15 CT (13:15 ET) equity early close on the NYSE half days (the day after Thanksgiving, Christmas Eve,
the day before Independence Day) is the one reported for CME's 2023 day after Thanksgiving and 2013
Christmas Eve.

Estimates: the full closure of New Year's Day, Good Friday and Christmas Day (CME's usual practice, not
checked against a given year's schedule; some Good Fridays had a short session for an employment
report), the 12:45 CT (13:45 ET) early close of NYMEX energy and COMEX metals, and ignoring NYSE
closures that are not regular holidays (days of mourning, storms), which CME handled differently each
time. CME publishes each year's hours shortly before the holiday: operators correct or add dates with
the override file (JT_MARKET_HOLIDAYS_FILE, see load_overrides).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import json
import os
import re
from pathlib import Path
from zoneinfo import ZoneInfo

import holidays

NEW_YORK = ZoneInfo("America/New_York")
SESSION_OPEN = dt.time(18, 0)  # New York time, on the calendar day before the trade date
SESSION_CLOSE = dt.time(17, 0)  # New York time, on the trade date
HOLIDAY_HALT = dt.time(13, 0)  # 12:00 CT

OVERRIDES_ENV = "JT_MARKET_HOLIDAYS_FILE"

# Product groups: markets/products.py maps each exchange to one of these.
EQUITY_INDEX = "equity_index"  # CME and CBOT equity-index futures (NQ, ES, YM, RTY and micros)
ENERGY_METALS = "energy_metals"  # NYMEX crude oil and COMEX metals (CL, GC, SI and micros)
GROUPS = (EQUITY_INDEX, ENERGY_METALS)
EARLY_CLOSE = {EQUITY_INDEX: dt.time(13, 15), ENERGY_METALS: dt.time(13, 45)}

# Kinds of day rule.
CLOSED = "closed"  # no trading and no trade date
HALT = "halt"  # trading halts at `close`, reopens 18:00 ET for the next trade date; no trade date
CLOSE_EARLY = "close-early"  # a trade date that closes at `close` (per group when `close` is None)
OPEN = "open"  # a normal session: lets the override file cancel a built-in rule

_CLOSED_HOLIDAYS = ("New Year's Day", "Good Friday", "Christmas Day")
_HALT_HOLIDAYS = (
    "Martin Luther King Jr. Day",
    "Washington's Birthday",
    "Memorial Day",
    "Juneteenth National Independence Day",
    "Independence Day",
    "Labor Day",
    "Thanksgiving Day",
)
_FRIDAY = 4
_WEEKEND = (5, 6)
_ONE_DAY = dt.timedelta(days=1)
_TIME_VALUE = re.compile(r"^(halt-at|close-at)\s+([0-9]{1,2}):([0-9]{2})$")
_VALUE_HELP = "use 'closed', 'open', 'halt-at HH:MM' or 'close-at HH:MM' (New York time, before 17:00)"


class HolidayFileError(ValueError):
    """An override file that cannot be read or contains an invalid entry; the message names the value and the fix."""


@dataclasses.dataclass(frozen=True)
class DayRule:
    """The Globex hours of one calendar day: a kind (CLOSED, HALT, CLOSE_EARLY, OPEN) and a close time."""

    kind: str
    close: dt.time | None = None
    source: str = ""  # the holiday name or the override file, for logs and docs


def builtin_rule(day: dt.date) -> DayRule | None:
    """Return the built-in rule for `day`, or None for a normal session."""
    name = _nyse_holidays(day.year).get(day)
    if name is not None:
        if name.startswith(_CLOSED_HOLIDAYS):
            return DayRule(CLOSED, None, name)
        if name.startswith(_HALT_HOLIDAYS):
            return DayRule(HALT, HOLIDAY_HALT, name)
        return None  # an NYSE-only closure (see the module docstring)

    half_day = _nyse_half_days(day.year).get(day)
    if half_day is not None:
        return DayRule(CLOSE_EARLY, None, half_day)
    return None


@functools.lru_cache(maxsize=64)
def _nyse_holidays(year: int) -> dict[dt.date, str]:
    return dict(holidays.financial_holidays("XNYS", years=year))


@functools.lru_cache(maxsize=64)
def _nyse_half_days(year: int) -> dict[dt.date, str]:
    return dict(holidays.financial_holidays("XNYS", years=year, categories=("half_day",)))


def day_rule(day: dt.date, overrides: dict[dt.date, DayRule] | None = None) -> DayRule | None:
    """Return the rule for `day`: the override when there is one, else the built-in rule."""
    if overrides is None:
        overrides = overrides_from_environ()

    rule = overrides.get(day) or builtin_rule(day)
    if rule is not None and rule.kind == OPEN:
        return None
    return rule


def is_trade_date(day: dt.date, overrides: dict[dt.date, DayRule] | None = None) -> bool:
    """Return True for weekdays that are CME trade dates (not closed and not a holiday halt)."""
    if day.weekday() in _WEEKEND:
        return False

    rule = day_rule(day, overrides)
    return rule is None or rule.kind == CLOSE_EARLY


def evening_opens(day: dt.date, overrides: dict[dt.date, DayRule] | None = None) -> bool:
    """Return True when Globex opens at 18:00 ET on `day` (for the next trade date).

    It does not open on Friday and Saturday evenings, nor on the evening before a closed day.
    """
    if day.weekday() == _FRIDAY or day.weekday() == _WEEKEND[0]:
        return False

    rule = day_rule(day + _ONE_DAY, overrides)
    return rule is None or rule.kind != CLOSED


def close_time(day: dt.date, group: str, overrides: dict[dt.date, DayRule] | None = None) -> dt.time | None:
    """Return the New York time at which trading that started the evening before stops on `day`.

    None means there is no trading on `day` at all (a weekend or a closed day).
    """
    if group not in GROUPS:
        raise ValueError(f"product group {group!r} is unknown: use one of {', '.join(GROUPS)}")
    if day.weekday() in _WEEKEND:
        return None

    rule = day_rule(day, overrides)
    if rule is None:
        return SESSION_CLOSE
    if rule.kind == CLOSED:
        return None
    return rule.close or EARLY_CLOSE[group]


def latest_close_time(day: dt.date, overrides: dict[dt.date, DayRule] | None = None) -> dt.time | None:
    """Return the latest close_time over all product groups (when the last Globex market stops on `day`)."""
    times = [close_time(day, group, overrides) for group in GROUPS]
    known = [time for time in times if time is not None]
    return max(known) if known else None


def is_open(now: dt.datetime, group: str | None = None, overrides: dict[dt.date, DayRule] | None = None) -> bool:
    """Return True while Globex trades `group` at the aware time `now`; with no group, while any group trades."""
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError(f"datetime {now.isoformat()} is naive: pass a timezone-aware time such as datetime.now(timezone.utc)")
    if overrides is None:
        overrides = overrides_from_environ()

    local = now.astimezone(NEW_YORK)
    day, clock = local.date(), local.time()
    if clock >= SESSION_OPEN:
        return evening_opens(day, overrides)
    if not evening_opens(day - _ONE_DAY, overrides):
        return False

    close = close_time(day, group, overrides) if group else latest_close_time(day, overrides)
    return close is not None and clock < close


def overrides_from_environ() -> dict[dt.date, DayRule]:
    """Return the overrides of the file named by JT_MARKET_HOLIDAYS_FILE (empty when it is unset).

    The file is read once per process and path: restart the service after editing it.
    """
    path = os.environ.get(OVERRIDES_ENV, "").strip()
    if not path:
        return {}
    return _load_cached(path)


@functools.lru_cache(maxsize=8)
def _load_cached(path: str) -> dict[dt.date, DayRule]:
    return load_overrides(path)


def load_overrides(path: str | os.PathLike) -> dict[dt.date, DayRule]:
    """Read an override file: a JSON or YAML mapping of ISO date to 'closed', 'open', 'halt-at HH:MM' or 'close-at HH:MM'.

    Times are New York time. Raises HolidayFileError naming the file, the entry and the fix.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise HolidayFileError(
            f"{OVERRIDES_ENV} file {str(path)!r} cannot be read ({error.strerror or error}): "
            f"fix the path or unset {OVERRIDES_ENV}"
        ) from error

    document = _parse_document(path, text)
    if not isinstance(document, dict):
        raise HolidayFileError(
            f"{OVERRIDES_ENV} file {str(path)!r} must hold a mapping of date to rule, "
            f"for example {{\"2026-12-24\": \"close-at 13:15\"}}, not a {type(document).__name__}"
        )

    return {_parse_date(path, key): _parse_rule(path, key, value) for key, value in document.items()}


def _parse_document(path: Path, text: str) -> object:
    if path.suffix.lower() == ".json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as error:
            raise HolidayFileError(f"{OVERRIDES_ENV} file {str(path)!r} is not valid JSON ({error}): fix the syntax") from error

    try:
        import yaml  # PyYAML, a dependency of both packages; imported here so JSON-only use needs nothing else
    except ImportError as error:
        raise HolidayFileError(f"{OVERRIDES_ENV} file {str(path)!r} is YAML but PyYAML is missing: install PyYAML or use a .json file") from error

    try:
        return yaml.safe_load(text) or {}
    except yaml.YAMLError as error:
        raise HolidayFileError(f"{OVERRIDES_ENV} file {str(path)!r} is not valid YAML ({error}): fix the syntax") from error


def _parse_date(path: Path, key: object) -> dt.date:
    # YAML reads an unquoted 2026-12-24 as a date already.
    if isinstance(key, dt.date) and not isinstance(key, dt.datetime):
        day = key
    else:
        try:
            day = dt.date.fromisoformat(str(key).strip())
        except ValueError:
            raise HolidayFileError(
                f"{OVERRIDES_ENV} file {str(path)!r}: key {key!r} is not a date: write it as YYYY-MM-DD, e.g. 2026-12-24"
            ) from None

    if day.weekday() in _WEEKEND:
        raise HolidayFileError(
            f"{OVERRIDES_ENV} file {str(path)!r}: {day.isoformat()} is a {day.strftime('%A')}, when Globex is always "
            "closed: remove the entry or fix the date"
        )
    return day


def _parse_rule(path: Path, day: object, value: object) -> DayRule:
    source = f"{OVERRIDES_ENV} {path.name}"
    text = str(value).strip().lower() if isinstance(value, str) else None
    if text == CLOSED:
        return DayRule(CLOSED, None, source)
    if text == OPEN:
        return DayRule(OPEN, None, source)

    match = _TIME_VALUE.match(text or "")
    if match is None:
        raise HolidayFileError(f"{OVERRIDES_ENV} file {str(path)!r}: rule {value!r} for {day} is invalid: {_VALUE_HELP}")

    hour, minute = int(match.group(2)), int(match.group(3))
    if hour > 23 or minute > 59 or dt.time(hour, minute) >= SESSION_CLOSE:
        raise HolidayFileError(
            f"{OVERRIDES_ENV} file {str(path)!r}: time in {value!r} for {day} is invalid: {_VALUE_HELP}"
        )

    kind = HALT if match.group(1) == "halt-at" else CLOSE_EARLY
    return DayRule(kind, dt.time(hour, minute), source)
