"""alertmanager.yml is valid, routes critical alerts to the pager and warnings to chat, delivers only to loopback
placeholders, and its inhibit rules silence the lower tier of a condition in a real Alertmanager."""

from __future__ import annotations

import subprocess
import urllib.parse

import pytest
import yaml

from tests.alerting.rule_files import ALERTMANAGER_CONFIG, load_rules
from tests.alerting.servers import AlertmanagerProcess, WebhookCapture, wait_until
from tests.alerting.stack import alertmanager_test_config


def amtool_run(amtool: str, *arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run([amtool, *arguments], capture_output=True, text=True, timeout=60)


def route_receiver(amtool: str, *labels: str) -> str:
    result = amtool_run(amtool, "config", "routes", "test", f"--config.file={ALERTMANAGER_CONFIG}", *labels)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout.strip()


@pytest.fixture(scope="module")
def config() -> dict:
    return yaml.safe_load(ALERTMANAGER_CONFIG.read_text(encoding="utf-8"))


def test_check_config_succeeds(amtool):
    result = amtool_run(amtool, "check-config", str(ALERTMANAGER_CONFIG))

    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@pytest.mark.parametrize(
    ("labels", "receiver"),
    [
        (("alertname=JustTradesBrokerWorkersDown", "severity=critical", "job=justtrades"), "pager"),
        (("alertname=JustTradesBrokerWorkersDown", "severity=warning", "job=justtrades"), "chat"),
        (("alertname=JustTradesDailyLossLimitBreached", "severity=info", "job=justtrades"), "chat"),
        (("alertname=Watchdog", "severity=none"), "heartbeat"),
        (("alertname=SomethingUnrouted",), "chat"),
    ],
)
def test_route_by_severity(amtool, labels, receiver):
    assert route_receiver(amtool, *labels) == receiver


def test_route_verification_rejects_wrong_receiver(amtool):
    # amtool's own check: a warning must not reach the pager.
    result = amtool_run(
        amtool, "config", "routes", "test", f"--config.file={ALERTMANAGER_CONFIG}", "--verify.receivers=pager",
        "severity=warning", "alertname=JustTradesBrokerWorkersDown",
    )
    assert result.returncode != 0


def test_every_rule_severity_has_route(amtool):
    expected = {"critical": "pager", "warning": "chat", "info": "chat", "none": "heartbeat"}
    for rule in load_rules():
        assert route_receiver(amtool, f"alertname={rule.alert}", f"severity={rule.severity}") == expected[rule.severity]


def test_receivers_are_loopback_placeholders(config):
    for receiver in config["receivers"]:
        configs = receiver.get("webhook_configs", [])
        assert configs, f"receiver {receiver['name']} has no webhook"
        for webhook in configs:
            assert urllib.parse.urlsplit(webhook["url"]).hostname == "127.0.0.1", webhook["url"]


def test_critical_inhibits_warning_of_same_alert(config):
    rule = config["inhibit_rules"][0]

    assert rule["source_matchers"] == ['severity = "critical"']
    assert rule["target_matchers"] == ['severity =~ "warning|info"']
    assert set(rule["equal"]) == {"alertname", "job", "instance"}


def test_inhibit_rules_name_existing_alerts(config):
    names = {rule.alert for rule in load_rules()}
    for rule in config["inhibit_rules"]:
        for matcher in rule["source_matchers"] + rule["target_matchers"]:
            if matcher.startswith("alertname"):
                assert matcher.split('"')[1] in names, matcher


# --- a real Alertmanager ------------------------------------------------------------------------------------------


def alert(name: str, severity: str, **labels: str) -> dict:
    return {"labels": {"alertname": name, "severity": severity, **labels}, "annotations": {"summary": name}}


@pytest.fixture
def live_alertmanager(alertmanager_binary, tmp_path):
    """The repository's alertmanager.yml with receivers pointed at a local capture server and waits shortened."""
    capture = WebhookCapture().start()
    config_path = tmp_path / "alertmanager.yml"
    config_path.write_text(yaml.safe_dump(alertmanager_test_config(capture.url)), encoding="utf-8")

    manager = AlertmanagerProcess(alertmanager_binary, tmp_path, config_path).start()
    yield manager, capture
    manager.stop()
    capture.stop()


def alert_states(manager: AlertmanagerProcess) -> dict[tuple[str, str], dict]:
    return {(a["labels"]["alertname"], a["labels"]["severity"]): a["status"] for a in manager.alerts()}


def test_live_critical_inhibits_warning(live_alertmanager):
    manager, capture = live_alertmanager
    replica = {"job": "justtrades", "instance": "platform:5000"}
    manager.post_alerts([
        alert("JustTradesBrokerWorkersDown", "warning", **replica),
        alert("JustTradesBrokerWorkersDown", "critical", **replica),
        alert("JustTradesBrokerQueueBacklog", "warning", job="justtrades"),
    ])

    # The inhibitor learns about new alerts asynchronously, so wait for the suppression instead of reading once.
    states = wait_until(
        lambda: (s := alert_states(manager)) and len(s) == 3
        and s[("JustTradesBrokerWorkersDown", "warning")]["state"] == "suppressed" and s,
        15, "the warning to be suppressed",
    )
    assert states[("JustTradesBrokerWorkersDown", "warning")]["state"] == "suppressed"
    assert states[("JustTradesBrokerWorkersDown", "warning")]["inhibitedBy"]
    assert states[("JustTradesBrokerWorkersDown", "critical")]["state"] == "active"
    assert states[("JustTradesBrokerQueueBacklog", "warning")]["state"] == "active"

    pager = wait_until(lambda: capture.alerts("/alerts/pager"), 15, "the critical alert at the pager")
    chat = wait_until(lambda: capture.alerts("/alerts/chat"), 15, "the warning alert in chat")
    assert {(a["labels"]["alertname"], a["labels"]["severity"]) for a in pager} == {("JustTradesBrokerWorkersDown", "critical")}
    assert {(a["labels"]["alertname"], a["labels"]["severity"]) for a in chat} == {("JustTradesBrokerQueueBacklog", "warning")}


def test_live_inhibition_needs_same_instance(live_alertmanager):
    manager, capture = live_alertmanager
    manager.post_alerts([
        alert("JustTradesBrokerWorkersDown", "warning", job="justtrades", instance="platform-a:5000"),
        alert("JustTradesBrokerWorkersDown", "critical", job="justtrades", instance="platform-b:5000"),
    ])

    # Once the critical alert has been delivered, the inhibitor has seen it too.
    wait_until(lambda: capture.alerts("/alerts/pager"), 15, "the critical alert at the pager")
    alerts = manager.alerts()
    assert len(alerts) == 2
    assert {a["labels"]["instance"]: a["status"]["state"] for a in alerts} == {
        "platform-a:5000": "active",
        "platform-b:5000": "active",
    }


@pytest.mark.parametrize(
    ("firing", "expected_active"),
    [
        # 300 ms: the 200 ms tier silences the 100 ms warning.
        (["PipelineBlocked", "LatencyHigh/warning"], {"PipelineBlocked"}),
        # 600 ms: the 500 ms critical silences both lower tiers.
        (["PipelineBlocked", "LatencyHigh/warning", "LatencyHigh/critical"], {"LatencyHigh/critical"}),
    ],
)
def test_live_latency_tiers(live_alertmanager, firing, expected_active):
    manager, _ = live_alertmanager
    replica = {"job": "justtrades", "instance": "platform:5000"}
    alerts = {
        "PipelineBlocked": alert("JustTradesWebhookPipelineBlocked", "warning", **replica),
        "LatencyHigh/warning": alert("JustTradesWebhookLatencyHigh", "warning", **replica),
        "LatencyHigh/critical": alert("JustTradesWebhookLatencyHigh", "critical", **replica),
    }
    manager.post_alerts([alerts[name] for name in firing])

    short = {("JustTradesWebhookPipelineBlocked", "warning"): "PipelineBlocked",
             ("JustTradesWebhookLatencyHigh", "warning"): "LatencyHigh/warning",
             ("JustTradesWebhookLatencyHigh", "critical"): "LatencyHigh/critical"}

    def active_tiers():
        states = alert_states(manager)
        if len(states) != len(firing):
            return None
        return {short[key] for key, status in states.items() if status["state"] == "active"}

    wait_until(lambda: active_tiers() == expected_active, 15, f"only {expected_active} to stay active")
    assert active_tiers() == expected_active


def test_live_success_rate_tiers(live_alertmanager):
    manager, _ = live_alertmanager
    manager.post_alerts([
        alert("JustTradesWebhookSuccessRateLow", "warning", job="justtrades"),
        alert("JustTradesWebhookFailuresHigh", "warning", job="justtrades"),
    ])

    states = wait_until(
        lambda: (s := alert_states(manager)) and len(s) == 2
        and s[("JustTradesWebhookSuccessRateLow", "warning")]["state"] == "suppressed" and s,
        15, "the 95% warning to be suppressed",
    )
    assert states[("JustTradesWebhookSuccessRateLow", "warning")]["inhibitedBy"]
    assert states[("JustTradesWebhookFailuresHigh", "warning")]["state"] == "active"
