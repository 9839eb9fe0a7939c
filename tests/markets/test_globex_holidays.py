"""CME Globex holiday hours on real dates, and the JT_MARKET_HOLIDAYS_FILE override file."""

import datetime as dt
import json
from zoneinfo import ZoneInfo

import pytest

from justtrades.markets import calendar, globex_holidays
from justtrades.markets.globex_holidays import HolidayFileError, load_overrides

NEW_YORK = ZoneInfo("America/New_York")


def new_york(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=NEW_YORK)


def day(text: str) -> dt.date:
    return dt.date.fromisoformat(text)


@pytest.fixture(autouse=True)
def no_override_file(monkeypatch):
    monkeypatch.delenv(globex_holidays.OVERRIDES_ENV, raising=False)


@pytest.mark.parametrize(
    "moment, is_open",
    [
        # Christmas 2026 is a Friday: Thursday the 24th closes early (13:45 ET for energy and metals),
        # no session opens that evening, and trading resumes Sunday the 27th at 18:00 ET.
        ("2026-12-24T13:10:00", True),
        ("2026-12-24T13:40:00", True),
        ("2026-12-24T13:45:00", False),
        ("2026-12-24T18:30:00", False),
        ("2026-12-25T10:00:00", False),
        ("2026-12-25T19:00:00", False),
        ("2026-12-27T17:59:00", False),
        ("2026-12-27T18:00:00", True),
        # New Year's Day 2027 is a Friday: Thursday the 31st closes at 17:00 and stays closed that
        # evening; Globex reopens Sunday 2027-01-03.
        ("2026-12-31T16:59:00", True),
        ("2026-12-31T18:30:00", False),
        ("2027-01-01T12:00:00", False),
        ("2027-01-03T18:00:00", True),
        # Good Friday 2027-03-26: closed from Thursday 17:00 to Sunday 18:00.
        ("2027-03-25T16:00:00", True),
        ("2027-03-25T18:30:00", False),
        ("2027-03-26T10:00:00", False),
        ("2027-03-28T18:00:00", True),
        # MLK Day 2027-01-18: the Sunday session trades until 13:00 ET Monday, then reopens at 18:00.
        ("2027-01-17T18:00:00", True),
        ("2027-01-18T12:59:00", True),
        ("2027-01-18T13:00:00", False),
        ("2027-01-18T17:59:00", False),
        ("2027-01-18T18:00:00", True),
        # Thanksgiving 2026-11-26 halts at 13:00 ET and reopens at 18:00; Friday the 27th closes early.
        ("2026-11-26T12:59:00", True),
        ("2026-11-26T13:00:00", False),
        ("2026-11-26T18:00:00", True),
        ("2026-11-27T13:40:00", True),
        ("2026-11-27T13:45:00", False),
        ("2026-11-27T16:00:00", False),
        ("2026-11-29T18:00:00", True),
        # An ordinary Wednesday and an ordinary weekend.
        ("2026-12-02T10:00:00", True),
        ("2026-12-02T17:30:00", False),
        ("2026-12-05T12:00:00", False),
        ("2026-12-06T17:59:00", False),
    ],
)
def test_market_open_on_holidays(moment, is_open):
    assert calendar.is_market_open(new_york(moment)) is is_open


@pytest.mark.parametrize(
    "moment, equity_open, energy_open",
    [
        # Early closes: equity index at 13:15 ET, energy and metals at 13:45 ET.
        ("2026-11-27T13:14:00", True, True),
        ("2026-11-27T13:15:00", False, True),
        ("2026-11-27T13:45:00", False, False),
        ("2026-12-24T13:30:00", False, True),
        # A holiday halt stops both groups at 13:00 ET.
        ("2026-11-26T12:30:00", True, True),
        ("2026-11-26T13:00:00", False, False),
    ],
)
def test_market_open_per_exchange(moment, equity_open, energy_open):
    assert calendar.is_market_open(new_york(moment), "CME") is equity_open
    assert calendar.is_market_open(new_york(moment), "CBOT") is equity_open
    assert calendar.is_market_open(new_york(moment), "NYMEX") is energy_open
    assert calendar.is_market_open(new_york(moment), "COMEX") is energy_open


def test_unknown_exchange_rejected():
    with pytest.raises(ValueError) as caught:
        calendar.is_market_open(new_york("2026-12-02T10:00:00"), "LSE")

    assert "'LSE'" in str(caught.value)
    assert "CME" in str(caught.value)


@pytest.mark.parametrize(
    "date, business_day",
    [
        ("2026-12-24", True),  # early close: still a trade date
        ("2026-12-25", False),
        ("2027-01-01", False),
        ("2027-03-26", False),
        ("2027-01-18", False),  # holiday halt: its trading belongs to Tuesday
        ("2026-11-26", False),
        ("2026-11-27", True),
        ("2026-12-02", True),
        ("2026-12-05", False),
    ],
)
def test_business_days_on_holidays(date, business_day):
    assert calendar.is_business_day(day(date)) is business_day


@pytest.mark.parametrize(
    "moment, trading_day",
    [
        # The MLK Day halt session is dated Tuesday, like its evening session.
        ("2027-01-16T12:00:00", "2027-01-19"),
        ("2027-01-17T19:00:00", "2027-01-19"),
        ("2027-01-18T10:00:00", "2027-01-19"),
        ("2027-01-18T19:00:00", "2027-01-19"),
        # Christmas Eve's trade date ends at its early close; the next one is Monday the 28th.
        ("2026-12-24T13:44:00", "2026-12-24"),
        ("2026-12-24T13:45:00", "2026-12-28"),
        ("2026-12-25T12:00:00", "2026-12-28"),
        # Thanksgiving halt session belongs to Friday.
        ("2026-11-26T10:00:00", "2026-11-27"),
        ("2026-11-27T15:00:00", "2026-11-30"),
        ("2027-03-26T10:00:00", "2027-03-29"),
        ("2026-12-31T23:00:00", "2027-01-04"),
    ],
)
def test_session_date_on_holidays(moment, trading_day):
    assert calendar.session_date(new_york(moment)) == day(trading_day)


def test_session_bounds_around_christmas():
    assert calendar.session_open_of(day("2026-12-28")) == new_york("2026-12-27T18:00:00")
    assert calendar.session_close_of(day("2026-12-24")) == new_york("2026-12-24T13:45:00")
    assert calendar.session_open_of(day("2027-01-19")) == new_york("2027-01-17T18:00:00")
    assert calendar.session_open_of(day("2027-01-04")) == new_york("2027-01-03T18:00:00")


def test_add_business_days_skips_holidays():
    assert calendar.add_business_days(day("2026-12-24"), 1) == day("2026-12-28")
    assert calendar.add_business_days(day("2027-01-19"), -1) == day("2027-01-15")
    assert calendar.last_business_day(2027, 12) == day("2027-12-31")
    # Christmas 2027 falls on a Saturday, so Friday the 24th is the observed (closed) holiday.
    assert calendar.add_business_days(day("2027-12-23"), 1) == day("2027-12-27")


def test_builtin_rules_name_their_source():
    thanksgiving = globex_holidays.builtin_rule(day("2026-11-26"))

    assert thanksgiving.kind == globex_holidays.HALT
    assert thanksgiving.close == dt.time(13, 0)
    assert thanksgiving.source == "Thanksgiving Day"
    assert globex_holidays.builtin_rule(day("2026-12-02")) is None
    # Columbus Day is a federal holiday but a normal Globex session.
    assert globex_holidays.builtin_rule(day("2026-10-12")) is None


def test_every_nyse_holiday_is_classified():
    # A holiday the `holidays` package renames would silently become a normal session.
    import holidays

    special_closures = ("Mourning", "Hurricane", "World Trade Center")
    for date, name in holidays.financial_holidays("XNYS", years=range(2000, 2041)).items():
        if any(word in name for word in special_closures):
            continue
        assert globex_holidays.builtin_rule(date) is not None, f"{date} {name}"


def write(tmp_path, name: str, text: str):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_override_file_yaml(tmp_path, monkeypatch):
    path = write(
        tmp_path,
        "holidays.yaml",
        "2026-12-02: closed\n'2026-12-03': halt-at 10:30\n2026-11-26: open\n2026-12-04: close-at 12:00\n",
    )
    monkeypatch.setenv(globex_holidays.OVERRIDES_ENV, str(path))

    assert calendar.load_holiday_overrides() == 4
    assert not calendar.is_market_open(new_york("2026-12-02T10:00:00"))
    assert not calendar.is_market_open(new_york("2026-12-01T18:30:00"))  # the evening before a closed day
    assert calendar.is_market_open(new_york("2026-12-03T10:29:00"))
    assert not calendar.is_market_open(new_york("2026-12-03T10:30:00"))
    assert calendar.is_market_open(new_york("2026-11-26T15:00:00"))  # built-in halt cancelled
    assert not calendar.is_market_open(new_york("2026-12-04T12:00:00"))
    assert not calendar.is_business_day(day("2026-12-03"))
    assert calendar.is_business_day(day("2026-12-04"))


def test_override_file_json(tmp_path):
    path = write(tmp_path, "holidays.json", json.dumps({"2026-12-31": "close-at 13:15"}))

    rules = load_overrides(path)

    assert rules[day("2026-12-31")].kind == globex_holidays.CLOSE_EARLY
    assert rules[day("2026-12-31")].close == dt.time(13, 15)
    assert globex_holidays.close_time(day("2026-12-31"), globex_holidays.ENERGY_METALS, rules) == dt.time(13, 15)


@pytest.mark.parametrize(
    "name, text, expected",
    [
        ("bad.yaml", "2026-12-02: shut\n", ["'shut'", "2026-12-02", "halt-at HH:MM"]),
        ("bad.yaml", "2026-12-02: halt-at 25:00\n", ["'halt-at 25:00'", "before 17:00"]),
        ("bad.yaml", "2026-12-02: close-at 17:30\n", ["'close-at 17:30'", "before 17:00"]),
        ("bad.yaml", "2026-12-02: 3\n", ["3", "'closed'"]),
        ("bad.yaml", "Christmas: closed\n", ["'Christmas'", "YYYY-MM-DD"]),
        ("bad.yaml", "2026-12-05: closed\n", ["2026-12-05", "Saturday", "remove the entry"]),
        ("bad.yaml", "- 2026-12-02\n", ["mapping of date to rule", "list"]),
        ("bad.yaml", "2026-12-02: [closed\n", ["not valid YAML", "fix the syntax"]),
        ("bad.json", "{\"2026-12-02\": closed}", ["not valid JSON", "fix the syntax"]),
    ],
)
def test_override_file_invalid(tmp_path, name, text, expected):
    path = write(tmp_path, name, text)

    with pytest.raises(HolidayFileError) as caught:
        load_overrides(path)

    message = str(caught.value)
    assert str(path) in message
    for fragment in expected:
        assert fragment in message


def test_override_file_missing(tmp_path, monkeypatch):
    monkeypatch.setenv(globex_holidays.OVERRIDES_ENV, str(tmp_path / "absent.yaml"))

    with pytest.raises(HolidayFileError) as caught:
        calendar.load_holiday_overrides()

    assert "absent.yaml" in str(caught.value)
    assert "fix the path or unset JT_MARKET_HOLIDAYS_FILE" in str(caught.value)
