"""Read the alert rules, their promtool unit tests and docs/alerts.md, and scale rule durations for live tests."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
RULE_DIR = REPO_ROOT / "alert_rules"
UNIT_TEST_DIR = RULE_DIR / "tests"
RUNBOOK_DIR = REPO_ROOT / "docs" / "runbooks"
ALERTS_DOC = REPO_ROOT / "docs" / "alerts.md"
PROMETHEUS_CONFIG = REPO_ROOT / "prometheus.yml"
ALERTMANAGER_CONFIG = REPO_ROOT / "alertmanager.yml"

# Every runbook_url is this base followed by "<alert name>.md". docs/alerts.md describes how to move it.
RUNBOOK_BASE_URL = "https://github.com/justtrades/monitoring/blob/main/docs/runbooks/"

DURATION = re.compile(r"^(\d+)([smhdw])$")
SECONDS_PER_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


@dataclasses.dataclass(frozen=True)
class AlertRule:
    path: Path
    group: str
    alert: str
    expr: str
    duration: str | None  # the rule's `for`, None when it has none
    labels: dict
    annotations: dict

    @property
    def severity(self) -> str | None:
        return self.labels.get("severity")


def rule_paths() -> list[Path]:
    return sorted(RULE_DIR.glob("*.yml"))


def unit_test_paths() -> list[Path]:
    return sorted(UNIT_TEST_DIR.glob("*.yml"))


def load_rules(paths: list[Path] | None = None) -> list[AlertRule]:
    """Return every alerting rule of the rule files in file, group and rule order."""
    rules = []
    for path in paths or rule_paths():
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
        for group in document["groups"]:
            for rule in group["rules"]:
                if "alert" not in rule:
                    continue
                rules.append(AlertRule(
                    path=path,
                    group=group["name"],
                    alert=rule["alert"],
                    expr=rule["expr"],
                    duration=rule.get("for"),
                    labels=rule.get("labels", {}),
                    annotations=rule.get("annotations", {}),
                ))
    return rules


def expected_alerts_in_unit_tests() -> set[tuple[str, str]]:
    """Return the (alert name, severity) pairs that some promtool unit test expects to fire."""
    expected = set()
    for path in unit_test_paths():
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
        for test in document["tests"]:
            for case in test.get("alert_rule_test", []):
                for alert in case.get("exp_alerts") or []:
                    expected.add((case["alertname"], alert.get("exp_labels", {}).get("severity")))
    return expected


def seconds(duration: str) -> int:
    match = DURATION.match(duration)
    if not match:
        raise ValueError(f"duration {duration!r} is not one number with a unit (s, m, h, d, w); write it like 5m")
    return int(match.group(1)) * SECONDS_PER_UNIT[match.group(2)]


def _scaled(duration: str, factor: float, minimum: int) -> str:
    return f"{max(minimum, round(seconds(duration) * factor))}s"


def scale_expression(expr: str, factor: float, minimum_range_seconds: int) -> str:
    """Shrink every range `[5m]` and offset `offset 1w` of `expr` by `factor`, keeping ranges at least the minimum."""
    expr = re.sub(r"\[(\d+[smhdw])\]", lambda m: f"[{_scaled(m.group(1), factor, minimum_range_seconds)}]", expr)
    return re.sub(r"\boffset (\d+[smhdw])\b", lambda m: f"offset {_scaled(m.group(1), factor, 1)}", expr)


def scale_rule_document(document: dict, factor: float, minimum_range_seconds: int) -> dict:
    """Return a copy of a rule file document with every `for` and every range window scaled by `factor`.

    Thresholds stay as they are: a live test drives values across them, only faster.
    """
    groups = []
    for group in document["groups"]:
        rules = []
        for rule in group["rules"]:
            rule = dict(rule, expr=scale_expression(rule["expr"], factor, minimum_range_seconds))
            if "for" in rule:
                rule["for"] = _scaled(rule["for"], factor, 1)
            rules.append(rule)
        groups.append(dict(group, rules=rules))
    return {"groups": groups}
