"""The exporter's copy of globex_holidays.py matches the platform's, in its text and its results.

The exporter is installed on its own and must not import the platform, so it carries a copy of the
holiday rules instead of a dependency on the platform package (Flask, SQLAlchemy, psycopg).
"""

import datetime as dt
from pathlib import Path

import pytest
from justtrades.markets import calendar
from justtrades.markets import globex_holidays as platform_rules

from justtrades_exporter import globex_holidays as exporter_rules
from justtrades_exporter import cli, market_hours

UTC = dt.timezone.utc


def test_copy_is_identical():
    platform_text = Path(platform_rules.__file__).read_text(encoding="utf-8")
    exporter_text = Path(exporter_rules.__file__).read_text(encoding="utf-8")

    assert exporter_text == platform_text, "copy platform/justtrades/markets/globex_holidays.py to the exporter"


@pytest.mark.parametrize("year", [2025, 2026, 2027, 2028])
def test_same_answers_every_half_hour(year, monkeypatch):
    monkeypatch.delenv(platform_rules.OVERRIDES_ENV, raising=False)
    moment = dt.datetime(year, 1, 1, tzinfo=UTC)
    differences = []

    # Every quarter hour of the year catches each 13:00, 13:15, 13:45, 17:00 and 18:00 ET edge.
    for _ in range(366 * 96):
        if calendar.is_market_open(moment) is not market_hours.is_cme_globex_open(moment):
            differences.append(moment.isoformat())
        moment += dt.timedelta(minutes=15)

    assert differences == []


def test_override_file_read_by_both(tmp_path, monkeypatch):
    path = tmp_path / "holidays.yaml"
    path.write_text("2026-12-02: halt-at 11:00\n", encoding="utf-8")
    monkeypatch.setenv(platform_rules.OVERRIDES_ENV, str(path))
    halted = dt.datetime(2026, 12, 2, 16, 30, tzinfo=UTC)  # 11:30 ET

    assert market_hours.load_holiday_overrides() == 1
    assert not market_hours.is_cme_globex_open(halted)
    assert not calendar.is_market_open(halted)
    assert market_hours.is_cme_globex_open(halted - dt.timedelta(hours=1))


def test_invalid_override_file_stops_start(tmp_path, monkeypatch, capsys):
    path = tmp_path / "holidays.yaml"
    path.write_text("2026-12-02: shut\n", encoding="utf-8")
    monkeypatch.setenv(platform_rules.OVERRIDES_ENV, str(path))

    exit_code = cli.main(["serve", "--platform-url", "http://127.0.0.1:9"])

    assert exit_code == cli.SERVE_USAGE_EXIT
    error = capsys.readouterr().err
    assert "'shut'" in error
    assert "halt-at HH:MM" in error
