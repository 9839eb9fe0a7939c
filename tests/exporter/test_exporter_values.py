"""Conversion of JSON values, the CME session clock, and the settings checks."""

from __future__ import annotations

import datetime as dt
import logging

import pytest

from justtrades_exporter import cli, settings, values
from justtrades_exporter.logs import RateLimitedLog
from justtrades_exporter.market_hours import is_cme_globex_open

NEW_YORK_WINTER = dt.timezone(dt.timedelta(hours=-5))
NEW_YORK_SUMMER = dt.timezone(dt.timedelta(hours=-4))


@pytest.mark.parametrize(
    "raw, expected",
    [(3, 3.0), (2.5, 2.5), ("42", 42.0), (" 1.5e3 ", 1500.0), ("-7", -7.0), (0, 0.0)],
)
def test_number_accepted(raw, expected):
    assert values.to_number(raw) == expected


@pytest.mark.parametrize("raw", [None, True, False, "", "abc", [], {}, "nan", "inf", float("nan")])
def test_number_rejected(raw):
    with pytest.raises(values.FieldValueError):
        values.to_number(raw)


@pytest.mark.parametrize(
    "raw, expected",
    [(True, 1.0), (False, 0.0), (1, 1.0), (0, 0.0), ("true", 1.0), ("False", 0.0), (" yes ", 1.0), ("0", 0.0)],
)
def test_boolean_accepted(raw, expected):
    assert values.to_boolean(raw) == expected


@pytest.mark.parametrize("raw", [None, 2, -1, "maybe", "", [], {}])
def test_boolean_rejected(raw):
    with pytest.raises(values.FieldValueError):
        values.to_boolean(raw)


@pytest.mark.parametrize(
    "raw",
    [
        "2026-02-21T14:30:00Z",
        "2026-02-21T14:30:00+00:00",
        "2026-02-21T09:30:00-05:00",
        "2026-02-21T14:30:00.000Z",
        "2026-02-21 14:30:00Z",
        1771684200,
        "1771684200",
    ],
)
def test_timestamp_accepted(raw):
    assert values.to_timestamp(raw) == 1771684200.0


@pytest.mark.parametrize("raw", ["2026-02-21T14:30:00", "2026-02-21", "soon", None, True, [], ""])
def test_timestamp_rejected(raw):
    with pytest.raises(values.FieldValueError):
        values.to_timestamp(raw)


def test_naive_timestamp_error_says_fix():
    with pytest.raises(values.FieldValueError, match="has no UTC offset"):
        values.to_timestamp("2026-02-21T14:30:00")


@pytest.mark.parametrize(
    "moment, expected",
    [
        (dt.datetime(2026, 2, 22, 17, 59, tzinfo=NEW_YORK_WINTER), False),  # Sunday before the open
        (dt.datetime(2026, 2, 22, 18, 0, tzinfo=NEW_YORK_WINTER), True),  # Sunday open
        (dt.datetime(2026, 2, 23, 12, 0, tzinfo=NEW_YORK_WINTER), True),  # Monday midday
        (dt.datetime(2026, 2, 23, 16, 59, tzinfo=NEW_YORK_WINTER), True),  # Monday before the break
        (dt.datetime(2026, 2, 23, 17, 0, tzinfo=NEW_YORK_WINTER), False),  # daily break starts
        (dt.datetime(2026, 2, 23, 17, 59, tzinfo=NEW_YORK_WINTER), False),  # daily break
        (dt.datetime(2026, 2, 23, 18, 0, tzinfo=NEW_YORK_WINTER), True),  # reopens
        (dt.datetime(2026, 2, 27, 16, 59, tzinfo=NEW_YORK_WINTER), True),  # Friday before the close
        (dt.datetime(2026, 2, 27, 17, 0, tzinfo=NEW_YORK_WINTER), False),  # Friday close
        (dt.datetime(2026, 2, 27, 18, 30, tzinfo=NEW_YORK_WINTER), False),  # Friday evening stays closed
        (dt.datetime(2026, 2, 28, 12, 0, tzinfo=NEW_YORK_WINTER), False),  # Saturday
        (dt.datetime(2026, 7, 12, 18, 0, tzinfo=NEW_YORK_SUMMER), True),  # Sunday open in daylight saving time
        (dt.datetime(2026, 7, 13, 21, 30, tzinfo=dt.timezone.utc), False),  # 17:30 EDT break, given in UTC
        (dt.datetime(2026, 1, 13, 21, 30, tzinfo=dt.timezone.utc), True),  # 16:30 EST, given in UTC
    ],
)
def test_cme_globex_session(moment, expected):
    assert is_cme_globex_open(moment) is expected


def test_cme_session_rejects_naive_time():
    with pytest.raises(ValueError, match="has no timezone"):
        is_cme_globex_open(dt.datetime(2026, 2, 23, 12, 0))


def test_rate_limited_log_counts_repeats(caplog):
    clock = [0.0]
    log = RateLimitedLog(logging.getLogger("test.ratelimit"), interval_seconds=60, clock=lambda: clock[0])

    with caplog.at_level(logging.WARNING, logger="test.ratelimit"):
        log.warning("k", "field %s bad", "x")
        log.warning("k", "field %s bad", "x")
        log.warning("other", "field %s bad", "y")
        clock[0] = 61.0
        log.warning("k", "field %s bad", "x")

    assert [r.getMessage() for r in caplog.records] == [
        "field x bad",
        "field y bad",
        "field x bad (1 repeats not logged)",
    ]


def test_api_key_from_environment():
    assert settings.api_key(None, {"JT_EXPORTER_API_KEY": " secret \n"}) == "secret"


def test_api_key_from_file(tmp_path):
    key_file = tmp_path / "key"
    key_file.write_text("secret-from-file\n")

    assert settings.api_key(str(key_file), {}) == "secret-from-file"
    assert settings.api_key(None, {"JT_EXPORTER_API_KEY_FILE": str(key_file)}) == "secret-from-file"


def test_api_key_absent_is_none():
    assert settings.api_key(None, {}) is None


def test_api_key_two_sources_rejected(tmp_path):
    key_file = tmp_path / "key"
    key_file.write_text("a")

    with pytest.raises(settings.SettingsError, match="keep only one"):
        settings.api_key(str(key_file), {"JT_EXPORTER_API_KEY": "b"})


def test_api_key_empty_file_rejected(tmp_path):
    key_file = tmp_path / "key"
    key_file.write_text("\n")

    with pytest.raises(settings.SettingsError, match="is empty"):
        settings.api_key(str(key_file), {})


def test_api_key_missing_file_rejected(tmp_path):
    with pytest.raises(settings.SettingsError, match="cannot read the API key file"):
        settings.api_key(str(tmp_path / "absent"), {})


@pytest.mark.parametrize(
    "raw, message",
    [
        (None, "missing"),
        ("platform:5000", "is invalid"),
        ("ftp://platform", "is invalid"),
        ("http://user:pw@platform", "must not contain credentials"),
        ("http://platform/?api_key=x", "must not have a query"),
    ],
)
def test_platform_url_rejected(raw, message):
    with pytest.raises(settings.SettingsError, match=message):
        settings.platform_url(raw)


def test_platform_url_trailing_slash_removed():
    assert settings.platform_url("http://platform:5000/") == "http://platform:5000"


@pytest.mark.parametrize("raw", ["0", "-1", "abc", "inf", "nan"])
def test_timeout_rejected(raw):
    with pytest.raises(settings.SettingsError, match="--timeout"):
        settings.positive_seconds("--timeout", raw)


def test_api_key_option_rejected(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--platform-url", "http://127.0.0.1:1", "--api-key", "secret"])

    assert exit_info.value.code == 2
    assert "JT_EXPORTER_API_KEY" in capsys.readouterr().err


def test_api_key_option_prefix_not_abbreviated(capsys):
    # Without allow_abbrev=False argparse would read --api-key as --api-key-file and open a file named like the key.
    with pytest.raises(SystemExit):
        cli.main(["check", "--platform-url", "http://127.0.0.1:1", "--api-key=secret"])

    assert "is not accepted" in capsys.readouterr().err


def test_serve_is_default_command():
    argv = cli.with_default_command(["--platform-url", "http://x"])
    args = cli.build_parser().parse_args(argv)

    assert args.command == "serve"
    assert args.port == 9877
    assert args.listen_address == "0.0.0.0"
    assert args.cache_max_age == "0"
    assert cli.with_default_command(["check", "--json"])[0] == "check"
