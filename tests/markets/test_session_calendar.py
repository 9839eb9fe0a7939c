"""CME Globex session calendar: open hours, daily break, weekends, trading days and DST.

Holiday hours are tested in test_globex_holidays.py; the properties here skip the days around holidays.
"""

import datetime as dt
from zoneinfo import ZoneInfo

import holidays
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from justtrades.markets.calendar import (
    add_business_days,
    is_business_day,
    is_market_open,
    last_business_day,
    session_close_of,
    session_date,
    session_end,
    session_open_of,
    session_start,
)

UTC = dt.timezone.utc
NEW_YORK = ZoneInfo("America/New_York")


def utc(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=UTC)


def new_york(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=NEW_YORK)


@pytest.mark.parametrize(
    "moment, is_open",
    [
        # Sunday 2026-12-06, EST (UTC-5): the week opens at 18:00 ET, 23:00 UTC.
        ("2026-12-06T22:59:59", False),
        ("2026-12-06T23:00:00", True),
        # Wednesday 2026-12-02: the daily break runs 17:00 to 18:00 ET.
        ("2026-12-02T21:59:59", True),
        ("2026-12-02T22:00:00", False),
        ("2026-12-02T22:59:59", False),
        ("2026-12-02T23:00:00", True),
        # Friday 2026-12-04 closes at 17:00 ET for the weekend.
        ("2026-12-04T21:59:59", True),
        ("2026-12-04T22:00:00", False),
        ("2026-12-04T23:30:00", False),
        ("2026-12-05T15:00:00", False),
        ("2026-12-06T15:00:00", False),
        # The reference time, Thursday 2026-12-03 10:30 ET.
        ("2026-12-03T15:30:00", True),
    ],
)
def test_market_open_winter(moment, is_open):
    assert is_market_open(utc(moment)) is is_open


@pytest.mark.parametrize(
    "moment, is_open",
    [
        # Sunday 2026-07-05, EDT (UTC-4): 18:00 ET is 22:00 UTC.
        ("2026-07-05T21:59:59", False),
        ("2026-07-05T22:00:00", True),
        ("2026-07-08T20:59:59", True),
        ("2026-07-08T21:00:00", False),
        ("2026-07-08T22:00:00", True),
        ("2026-07-10T21:00:00", False),
    ],
)
def test_market_open_summer(moment, is_open):
    assert is_market_open(utc(moment)) is is_open


def test_sunday_open_at_1800_new_york():
    assert not is_market_open(new_york("2026-12-06T17:59:00"))
    assert is_market_open(new_york("2026-12-06T18:00:00"))


def test_dst_start_weekend():
    # Clocks move forward on Sunday 2026-03-08: Friday closes at 17:00 EST, Sunday opens at 18:00 EDT.
    assert is_market_open(utc("2026-03-06T21:59:00"))
    assert not is_market_open(utc("2026-03-06T22:00:00"))
    assert not is_market_open(utc("2026-03-08T21:59:00"))
    assert is_market_open(utc("2026-03-08T22:00:00"))
    assert session_start(utc("2026-03-07T12:00:00")) == utc("2026-03-08T22:00:00")
    assert session_end(utc("2026-03-08T22:00:00")) == utc("2026-03-09T21:00:00")


def test_dst_end_weekend():
    # Clocks move back on Sunday 2026-11-01: Friday closes at 17:00 EDT, Sunday opens at 18:00 EST.
    assert is_market_open(utc("2026-10-30T20:59:00"))
    assert not is_market_open(utc("2026-10-30T21:00:00"))
    assert not is_market_open(utc("2026-11-01T22:59:00"))
    assert is_market_open(utc("2026-11-01T23:00:00"))
    assert session_start(utc("2026-10-31T12:00:00")) == utc("2026-11-01T23:00:00")
    assert session_end(utc("2026-11-01T23:00:00")) == utc("2026-11-02T22:00:00")


@pytest.mark.parametrize(
    "moment, trading_day",
    [
        ("2026-12-03T16:59:00", "2026-12-03"),  # Thursday afternoon
        ("2026-12-03T17:00:00", "2026-12-04"),  # the break waits for Friday's session
        ("2026-12-03T17:30:00", "2026-12-04"),
        ("2026-12-03T18:00:00", "2026-12-04"),  # Friday's session opens Thursday evening
        ("2026-12-04T16:59:00", "2026-12-04"),
        ("2026-12-04T17:00:00", "2026-12-07"),  # Friday evening belongs to Monday
        ("2026-12-05T12:00:00", "2026-12-07"),
        ("2026-12-06T10:00:00", "2026-12-07"),
        ("2026-12-06T17:59:00", "2026-12-07"),
        ("2026-12-06T18:00:00", "2026-12-07"),
        ("2026-12-07T09:00:00", "2026-12-07"),
    ],
)
def test_session_date_new_york_times(moment, trading_day):
    assert session_date(new_york(moment)) == dt.date.fromisoformat(trading_day)


def test_session_start_inside_session():
    start = session_start(utc("2026-12-03T15:30:00"))

    assert start == utc("2026-12-02T23:00:00")
    assert start.tzinfo == UTC


def test_session_start_during_break_is_next():
    assert session_start(new_york("2026-12-03T17:15:00")) == new_york("2026-12-03T18:00:00")


def test_session_start_on_weekend_is_sunday():
    assert session_start(utc("2026-12-05T12:00:00")) == utc("2026-12-06T23:00:00")


def test_session_end_is_1700_new_york():
    end = session_end(utc("2026-12-03T15:30:00"))

    assert end == utc("2026-12-03T22:00:00")
    assert end.tzinfo == UTC


def test_other_timezone_input_accepted():
    chicago = ZoneInfo("America/Chicago")
    moment = dt.datetime(2026, 12, 6, 17, 0, tzinfo=chicago)  # 18:00 ET

    assert is_market_open(moment)
    assert session_start(moment) == utc("2026-12-06T23:00:00")


@pytest.mark.parametrize("function", [is_market_open, session_date, session_start, session_end])
def test_naive_datetime_rejected(function):
    with pytest.raises(ValueError) as caught:
        function(dt.datetime(2026, 12, 3, 15, 30))

    assert "naive" in str(caught.value)


def test_add_business_days_skips_weekend():
    friday = dt.date(2026, 12, 4)

    assert add_business_days(friday, 1) == dt.date(2026, 12, 7)
    assert add_business_days(dt.date(2026, 12, 7), -1) == friday
    assert add_business_days(friday, 0) == friday
    assert add_business_days(dt.date(2026, 12, 6), -3) == dt.date(2026, 12, 2)


def test_last_business_day_of_month():
    assert last_business_day(2026, 11) == dt.date(2026, 11, 30)
    assert last_business_day(2027, 1) == dt.date(2027, 1, 29)
    assert last_business_day(2026, 12) == dt.date(2026, 12, 31)
    assert last_business_day(2026, 10) == dt.date(2026, 10, 30)


def expected_open(moment: dt.datetime) -> bool:
    """Decide "open" straight from the published hours, independently of the module."""
    local = moment.astimezone(NEW_YORK)
    weekday, hour = local.weekday(), local.hour
    if weekday == 6:
        return hour >= 18
    if weekday == 5:
        return False
    if weekday == 4:
        return hour < 17
    return hour != 17


moments = st.datetimes(
    min_value=dt.datetime(2000, 1, 1),
    max_value=dt.datetime(2099, 12, 31),
    timezones=st.just(UTC),
)


def near_nyse_holiday(moment: dt.datetime) -> bool:
    """Return True when an NYSE holiday or half day falls from three days before `moment` to three days after it.

    Three days after reach from a Saturday to the Tuesday whose session a Monday holiday moves it to. Three days
    before reach back from a Monday to a Friday holiday, whose session runs on into Monday's.
    """
    day = moment.astimezone(NEW_YORK).date()
    years = range(day.year - 1, day.year + 2)
    closed = holidays.financial_holidays("XNYS", years=years)
    half_days = holidays.financial_holidays("XNYS", years=years, categories=("half_day",))
    nearby = [day + dt.timedelta(days=offset) for offset in range(-3, 4)]
    return any(near in closed or near in half_days for near in nearby)


@given(moments)
def test_open_matches_published_hours(moment):
    assume(not near_nyse_holiday(moment))

    assert is_market_open(moment) is expected_open(moment)


@given(moments)
def test_session_bounds_consistent(moment):
    assume(not near_nyse_holiday(moment))
    start, end = session_start(moment), session_end(moment)
    trading_day = session_date(moment)

    assert trading_day.weekday() < 5
    assert start.astimezone(NEW_YORK).time() == dt.time(18)
    assert end.astimezone(NEW_YORK).time() == dt.time(17)
    assert end.astimezone(NEW_YORK).date() == trading_day
    assert end - start == dt.timedelta(hours=23)
    assert moment < end
    assert (start <= moment) is is_market_open(moment)


@given(moments)
def test_session_date_within_bounds_any_day(moment):
    # Holidays included: the moment lies between the previous trade date's close and its own close,
    # which is what the daily PnL reset relies on.
    trading_day = session_date(moment)
    previous_close = session_close_of(add_business_days(trading_day, -1))

    assert is_business_day(trading_day)
    assert previous_close <= moment < session_close_of(trading_day)
    assert previous_close < session_open_of(trading_day) < session_close_of(trading_day)
    if is_market_open(moment):
        assert session_open_of(trading_day) <= moment
