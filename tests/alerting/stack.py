"""Build test copies of the repository's alerting configuration and run it: a capture server in place of the
receivers, Alertmanager, and Prometheus scraping local targets with rule durations shrunk for a live test."""

from __future__ import annotations

import urllib.parse
from pathlib import Path

import yaml

from tests.alerting.rule_files import ALERTMANAGER_CONFIG, PROMETHEUS_CONFIG, rule_paths, scale_rule_document
from tests.alerting.servers import AlertmanagerProcess, PrometheusProcess, WebhookCapture

# Live tests run the rules 30 times faster: `for: 5m` becomes 10 s and a [2m] window 4 s.
TIME_SCALE = 1 / 30
# With a 1 s scrape interval a range needs a few samples; no window is shrunk below this.
MINIMUM_RANGE_SECONDS = 3


def alertmanager_test_config(capture_url: str) -> dict:
    """Return alertmanager.yml with each receiver's webhook on `capture_url` (same path) and 1 s group waits."""
    document = yaml.safe_load(ALERTMANAGER_CONFIG.read_text(encoding="utf-8"))
    for receiver in document["receivers"]:
        for webhook in receiver["webhook_configs"]:
            webhook["url"] = capture_url + urllib.parse.urlsplit(webhook["url"]).path
    for route in [document["route"], *document["route"].get("routes", [])]:
        route["group_wait"] = "1s"
        route["group_interval"] = "1s"
    return document


def scaled_rules_document() -> dict:
    """Return every group of alert_rules/*.yml in one document with `for` and ranges scaled by TIME_SCALE."""
    groups = []
    for path in rule_paths():
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
        groups.extend(scale_rule_document(document, TIME_SCALE, MINIMUM_RANGE_SECONDS)["groups"])
    return {"groups": groups}


def prometheus_test_config(targets: dict[str, str], rule_path: Path, alertmanager_address: str) -> dict:
    """Return prometheus.yml with 1 s scrapes and evaluations, each job's targets replaced by `targets[job]`."""
    document = yaml.safe_load(PROMETHEUS_CONFIG.read_text(encoding="utf-8"))
    jobs = {scrape["job_name"] for scrape in document["scrape_configs"]}
    if jobs != set(targets):
        raise ValueError(f"prometheus.yml has the jobs {sorted(jobs)}, the test gives targets for {sorted(targets)}")

    document["global"].update(scrape_interval="1s", scrape_timeout="1s", evaluation_interval="1s")
    document["rule_files"] = [str(rule_path)]
    document["alerting"]["alertmanagers"] = [{"static_configs": [{"targets": [alertmanager_address]}]}]
    for scrape in document["scrape_configs"]:
        scrape["static_configs"] = [{"targets": [targets[scrape["job_name"]]]}]
    return document


class AlertingStack:
    """Prometheus and Alertmanager from this repository's configuration, notifications recorded by `capture`."""

    def __init__(self, prometheus_binary: str, alertmanager_binary: str, workdir: Path, targets: dict[str, str]):
        self.workdir = workdir
        self.capture = WebhookCapture()
        self._binaries = (prometheus_binary, alertmanager_binary)
        self._targets = targets
        self.alertmanager: AlertmanagerProcess | None = None
        self.prometheus: PrometheusProcess | None = None

    def start(self) -> "AlertingStack":
        prometheus_binary, alertmanager_binary = self._binaries
        self.capture.start()

        alertmanager_config = self.workdir / "alertmanager.yml"
        alertmanager_config.write_text(yaml.safe_dump(alertmanager_test_config(self.capture.url)), encoding="utf-8")
        self.alertmanager = AlertmanagerProcess(alertmanager_binary, self.workdir, alertmanager_config).start()

        rule_path = self.workdir / "rules.yml"
        rule_path.write_text(yaml.safe_dump(scaled_rules_document()), encoding="utf-8")
        prometheus_config = self.workdir / "prometheus.yml"
        alertmanager_address = self.alertmanager.url.removeprefix("http://")
        prometheus_config.write_text(
            yaml.safe_dump(prometheus_test_config(self._targets, rule_path, alertmanager_address)), encoding="utf-8"
        )
        self.prometheus = PrometheusProcess(prometheus_binary, self.workdir, prometheus_config).start()
        return self

    def stop(self) -> None:
        for part in (self.prometheus, self.alertmanager, self.capture):
            if part is not None:
                part.stop()

    def firing(self, alertname: str, **labels: str) -> list[dict]:
        """Return the firing Prometheus alerts named `alertname` whose labels include `labels`."""
        return [
            alert for alert in self.prometheus.alerts()
            if alert["state"] == "firing" and alert["labels"]["alertname"] == alertname
            and labels.items() <= alert["labels"].items()
        ]

    def present(self, alertname: str, **labels: str) -> list[dict]:
        """Return the pending or firing Prometheus alerts named `alertname` whose labels include `labels`."""
        return [
            alert for alert in self.prometheus.alerts()
            if alert["labels"]["alertname"] == alertname and labels.items() <= alert["labels"].items()
        ]

    def delivered(self, receiver: str, alertname: str, status: str = "firing") -> list[dict]:
        """Return the alerts named `alertname` that Alertmanager delivered to `receiver` with `status`."""
        return [
            alert for alert in self.capture.alerts(f"/alerts/{receiver}")
            if alert["labels"]["alertname"] == alertname and alert["status"] == status
        ]
