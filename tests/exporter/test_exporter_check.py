"""`justtrades-exporter check`: threshold rows, Nagios exit codes, the JSON form."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import subprocess
import sys

import pytest

from justtrades_exporter import cli

LINE = re.compile(r"^(OK|WARNING|CRITICAL|UNKNOWN) ([^:]+): value (.+?) \(warning (.+?), critical (.+?)\)(; .+)?$")


def ago(seconds: float) -> str:
    moment = dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=seconds)
    return moment.isoformat().replace("+00:00", "Z")


@pytest.fixture
def healthy(documents):
    """Turn the reference documents into a platform with every row OK, with times relative to now."""
    documents["/health"]["market_open"] = True
    documents["/api/webhook-activity"]["stats"]["success_rate"] = 99.0
    documents["/api/webhook-activity"]["activity"][0]["timestamp"] = ago(60)
    documents["/api/accounts/auth-status"].update(all_accounts_valid=True, accounts_needing_reauth=[], count=0)
    documents["/api/thread-health"]["threads"]["whop_sync"]["status"] = "running"
    documents["/api/admin/whop-sync-status"]["last_run"] = ago(10)
    documents["/api/broker-execution/failures"]["failures"][0]["timestamp"] = ago(7200)
    documents["/api/tradingview/status"]["last_message_at"] = ago(1)
    for price in documents["/api/tradingview/status"]["cached_prices"].values():
        price["updated"] = ago(5)
    return documents


@pytest.fixture
def run_check(monkeypatch, capsys):
    monkeypatch.setenv("JT_EXPORTER_API_KEY", "test-admin-key-0123456789")
    monkeypatch.delenv("JT_EXPORTER_API_KEY_FILE", raising=False)

    def run(platform_url: str, *options: str) -> tuple[int, str]:
        code = cli.main(["check", "--platform-url", platform_url, "--timeout", "2", *options])
        return code, capsys.readouterr().out

    return run


def rows(output: str) -> dict[str, tuple[str, str]]:
    """Map row name to (state, value) and check every line's format on the way."""
    result = {}
    for line in output.strip().splitlines():
        match = LINE.match(line)
        assert match, f"line does not follow the check format: {line!r}"
        result[match.group(2)] = (match.group(1), match.group(3))
    return result


def test_healthy_platform_exits_ok(make_platform, healthy, run_check):
    platform = make_platform(healthy)

    code, output = run_check(platform.url)

    states = {name: state for name, (state, _) in rows(output).items()}
    assert states == {name: "OK" for name in states}, output
    assert len(states) == 16
    assert code == 0


def test_queue_backlog_exits_warning(make_platform, healthy, run_check):
    healthy["/api/broker-execution/status"]["broker_execution"]["queue_size"] = 20
    platform = make_platform(healthy)

    code, output = run_check(platform.url)

    assert rows(output)["Queue depth"] == ("WARNING", "20")
    assert code == 1


def test_dead_workers_exit_critical(make_platform, healthy, run_check):
    healthy["/api/broker-execution/status"]["broker_execution"]["workers_alive"] = 3
    platform = make_platform(healthy)

    code, output = run_check(platform.url)

    assert rows(output)["Broker workers alive"] == ("CRITICAL", "3")
    assert output.splitlines()[0].startswith("CRITICAL Broker workers alive")
    assert code == 2


def test_unreadable_row_exits_unknown(make_platform, healthy, run_check):
    platform = make_platform(healthy)
    platform.set_raw("/api/thread-health", b"<html>500</html>", status=500)

    code, output = run_check(platform.url)

    assert rows(output)["Background threads"] == ("UNKNOWN", "unknown")
    assert "/api/thread-health: HTTP 500" in output
    assert code == 3


def test_warning_outranks_unknown(make_platform, healthy, run_check):
    healthy["/api/admin/whop-sync-status"]["pending_resends"] = 11
    platform = make_platform(healthy)
    platform.set_raw("/api/thread-health", b"<html>500</html>", status=500)

    code, output = run_check(platform.url)

    assert rows(output)["Pending Whop resends"] == ("WARNING", "11")
    assert code == 1


def test_platform_down_exits_critical(make_platform, healthy, run_check):
    platform = make_platform(healthy)
    platform.stop()

    code, output = run_check(platform.url)

    assert rows(output)["Service health"] == ("CRITICAL", "no response")
    assert code == 2


def test_health_non_200_is_critical(make_platform, healthy, run_check):
    platform = make_platform(healthy)
    platform.set_json("/health", {"status": "error"}, status=503)

    code, output = run_check(platform.url)

    assert rows(output)["Service health"] == ("CRITICAL", "HTTP 503")
    assert code == 2


@pytest.mark.parametrize(
    "last_message_seconds_ago, state",
    [(60, "WARNING"), (600, "CRITICAL")],
)
def test_websocket_disconnect_duration(make_platform, healthy, run_check, last_message_seconds_ago, state):
    healthy["/api/tradingview/status"]["websocket_connected"] = False
    healthy["/api/tradingview/status"]["last_message_at"] = ago(last_message_seconds_ago)
    platform = make_platform(healthy)

    _, output = run_check(platform.url)

    assert rows(output)["TradingView WebSocket"] == (state, "disconnected")


def test_websocket_disconnect_without_timestamp(make_platform, healthy, run_check):
    healthy["/api/tradingview/status"]["websocket_connected"] = False
    del healthy["/api/tradingview/status"]["last_message_at"]
    platform = make_platform(healthy)

    _, output = run_check(platform.url)

    line = next(line for line in output.splitlines() if "TradingView WebSocket" in line)
    assert line.startswith("WARNING")
    assert "duration is unknown" in line


def test_jwt_invalid_is_warning_with_limit(make_platform, healthy, run_check):
    healthy["/api/tradingview/status"]["jwt_token_valid"] = False
    platform = make_platform(healthy)

    code, output = run_check(platform.url)

    assert rows(output)["JWT valid"] == ("WARNING", "false")
    assert "one poll can only report WARNING" in output
    assert code == 1


@pytest.mark.parametrize("needing, state", [(1, "WARNING"), (12, "CRITICAL")])
def test_token_auth_rows(make_platform, healthy, run_check, needing, state):
    healthy["/api/accounts/auth-status"].update(all_accounts_valid=False, count=needing)
    platform = make_platform(healthy)

    _, output = run_check(platform.url)

    assert rows(output)["Token auth"] == (state, f"{needing} of 12 expired")


@pytest.mark.parametrize("age, state", [(200, "WARNING"), (400, "CRITICAL")])
def test_whop_sync_age(make_platform, healthy, run_check, age, state):
    healthy["/api/admin/whop-sync-status"]["last_run"] = ago(age)
    platform = make_platform(healthy)

    _, output = run_check(platform.url)

    assert rows(output)["Whop sync age"][0] == state


@pytest.mark.parametrize("recent, state", [(3, "WARNING"), (12, "CRITICAL")])
def test_execution_failures_last_hour(make_platform, healthy, run_check, recent, state):
    failure = healthy["/api/broker-execution/failures"]["failures"][0]
    old = dict(failure, timestamp=ago(4000))
    healthy["/api/broker-execution/failures"]["failures"] = [dict(failure, timestamp=ago(60 * i)) for i in range(recent)] + [old]
    platform = make_platform(healthy)

    _, output = run_check(platform.url)

    assert rows(output)["Execution failures"] == (state, str(recent))


def test_webhook_success_rate_critical(make_platform, healthy, run_check):
    healthy["/api/webhook-activity"]["stats"]["success_rate"] = 75.0
    platform = make_platform(healthy)

    code, output = run_check(platform.url)

    assert rows(output)["Webhook success rate"] == ("CRITICAL", "75.0%")
    assert code == 2


def test_webhook_latency_warning(make_platform, healthy, run_check):
    healthy["/api/broker-execution/status"]["fast_webhook"]["avg_latency_ms"] = 150
    platform = make_platform(healthy)

    _, output = run_check(platform.url)

    assert rows(output)["Webhook latency"] == ("WARNING", "150ms")


def test_stale_queue_outside_market_hours(make_platform, healthy, run_check):
    healthy["/health"]["market_open"] = False
    healthy["/api/broker-execution/status"]["broker_execution"]["queue_size"] = 2
    platform = make_platform(healthy)

    _, output = run_check(platform.url)

    assert rows(output)["Queue depth outside market hours"] == ("WARNING", "2")
    assert rows(output)["Queue depth"] == ("OK", "2")


@pytest.mark.parametrize("age, state", [(120, "WARNING"), (1200, "CRITICAL")])
def test_price_feed_age_in_market_hours(make_platform, healthy, run_check, age, state):
    healthy["/api/tradingview/status"]["cached_prices"]["GC"]["updated"] = ago(age)
    platform = make_platform(healthy)

    _, output = run_check(platform.url)

    row_state, value = rows(output)["Price feed age"]
    assert row_state == state
    assert "GC" in value


def test_stopped_thread_is_critical(make_platform, healthy, run_check):
    healthy["/api/thread-health"]["threads"]["whop_sync"]["status"] = "stopped"
    platform = make_platform(healthy)

    _, output = run_check(platform.url)

    assert rows(output)["Background threads"] == ("CRITICAL", "1 not running (whop_sync)")


def test_json_output(make_platform, healthy, run_check):
    healthy["/api/admin/whop-sync-status"]["stuck_users"] = [{"id": 1}] * 6
    platform = make_platform(healthy)

    code, output = run_check(platform.url, "--json")

    report = json.loads(output)
    assert report["state"] == "CRITICAL"
    assert report["exit_code"] == 2 == code
    assert report["platform_url"] == platform.url
    stuck = next(row for row in report["rows"] if row["row"] == "Stuck users")
    assert stuck == {
        "row": "Stuck users",
        "state": "CRITICAL",
        "value": "6",
        "warning": "> 0",
        "critical": "> 5",
        "endpoint": "/api/admin/whop-sync-status",
        "note": None,
    }
    assert "test-admin-key" not in output


def test_usage_error_exits_unknown(capsys):
    code = cli.main(["check", "--platform-url", "not a url"])

    assert code == 3
    assert "platform URL 'not a url' is invalid" in capsys.readouterr().err


def test_console_script_exit_code(make_platform, healthy):
    healthy["/api/broker-execution/status"]["broker_execution"]["queue_size"] = 20
    platform = make_platform(healthy)
    script = os.path.join(os.path.dirname(sys.executable), "justtrades-exporter")
    environment = dict(os.environ, JT_EXPORTER_API_KEY="test-admin-key-0123456789")
    environment.pop("JT_EXPORTER_API_KEY_FILE", None)

    completed = subprocess.run(
        [script, "check", "--platform-url", platform.url],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert completed.returncode == 1, completed.stdout + completed.stderr
    assert completed.stdout.startswith("WARNING Queue depth: value 20")
