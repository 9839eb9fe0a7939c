"""The alert rules follow one set of conventions, use only contract metrics, and each has a runbook, a row in
docs/alerts.md and a promtool unit test that expects it to fire."""

from __future__ import annotations

import collections
import re

from tests.alerting.canned_metrics import healthy_samples
from tests.alerting.rule_files import (
    ALERTS_DOC,
    RUNBOOK_BASE_URL,
    RUNBOOK_DIR,
    expected_alerts_in_unit_tests,
    seconds,
)
from tests.dashboards.dashlint_catalogue import load_catalogue
from tests.dashboards.dashlint_promql import scan

SEVERITIES = {"critical", "warning", "info"}
# Series Prometheus creates itself rather than a producer.
PROMETHEUS_SERIES = {"up"}
# Rules whose expression already counts over a window (increase over the last hour, no signal for 2 hours):
# a `for` would only delay them, so they have none. docs/alerts.md gives the reason per rule.
WINDOWED_COUNT_ALERTS = {
    "Watchdog",
    "JustTradesBrokerExecutionFailures",
    "JustTradesBrokerWorkersRestarting",
    "JustTradesWebhookActivityMissing",
    "JustTradesPositionMonitorAuthFailed",
    "JustTradesPositionMonitorAccountGroupErrors",
    "JustTradesPositionMonitorStaleSubscription",
}

# Rules whose value is a 0/1 state, an absence or a count of series, so their descriptions print no value.
STATE_ALERTS = {
    "JustTradesTargetMissing",
    "JustTradesTargetDown",
    "JustTradesServiceDown",
    "JustTradesThreadStopped",
    "JustTradesTradingViewDisconnected",
    "JustTradesTradingViewJWTInvalid",
    "JustTradesTradingViewFeedDelayed",
    "JustTradesPositionMonitorNotStarted",
    "JustTradesPositionMonitorNoConnections",
    "JustTradesPositionMonitorAuthFailed",
    "JustTradesPositionMonitorNoActiveAccounts",
    "JustTradesWebhookActivityMissing",
}


def metric_names(expr: str) -> set[str]:
    return {selector.name for selector in scan(expr).selectors}


def test_rules_exist(alert_rules):
    assert len(alert_rules) >= 40
    assert len({rule.alert for rule in alert_rules}) >= 25


def test_alert_names_follow_convention(alert_rules):
    for rule in alert_rules:
        assert rule.alert == "Watchdog" or re.fullmatch(r"JustTrades[A-Z][A-Za-z]+", rule.alert), rule.alert


def test_severity_label_is_known(alert_rules):
    for rule in alert_rules:
        if rule.alert == "Watchdog":
            assert rule.severity == "none"
        else:
            assert rule.severity in SEVERITIES, f"{rule.alert}: severity {rule.severity!r}"


def test_one_rule_per_name_and_severity(alert_rules):
    keys = collections.Counter(
        (rule.alert, rule.severity, tuple(sorted(metric_names(rule.expr))), rule.expr) for rule in alert_rules
    )
    duplicates = [key for key, count in keys.items() if count > 1]
    assert duplicates == []


def test_same_severity_rules_differ_by_job(alert_rules):
    # Warning and critical rules of one condition share a name. Two rules with the same name and severity must
    # select different jobs (TargetDown and TargetMissing have one rule per scrape job).
    by_name = collections.defaultdict(list)
    for rule in alert_rules:
        by_name[(rule.alert, rule.severity)].append(rule)
    for (alert, severity), rules in by_name.items():
        if len(rules) > 1:
            jobs = [re.search(r'job="([^"]+)"', rule.expr) for rule in rules]
            assert all(jobs) and len({job.group(1) for job in jobs}) == len(rules), (alert, severity)


def test_annotations_complete(alert_rules):
    for rule in alert_rules:
        assert set(rule.annotations) == {"summary", "description", "runbook_url"}, rule.alert
        summary = rule.annotations["summary"]
        assert "{{" not in summary, f"{rule.alert}: the summary is a fixed sentence"
        assert summary.endswith("."), f"{rule.alert}: {summary!r}"
        assert "{{" in rule.annotations["description"] or rule.alert == "Watchdog", rule.alert


def test_description_shows_value_or_labels(alert_rules):
    for rule in alert_rules:
        if rule.alert == "Watchdog":
            continue
        description = rule.annotations["description"]
        assert "$labels.job" in description, f"{rule.alert}: the description names no job"
        if rule.alert in STATE_ALERTS:
            assert "$value" not in description, f"{rule.alert}: its value is a 0/1 state, not worth printing"
        else:
            assert "$value" in description, f"{rule.alert}: the description hides the value"


def test_runbook_url_and_file(alert_rules):
    for rule in alert_rules:
        assert rule.annotations["runbook_url"] == f"{RUNBOOK_BASE_URL}{rule.alert}.md"
        assert (RUNBOOK_DIR / f"{rule.alert}.md").is_file(), f"docs/runbooks/{rule.alert}.md is missing"


def test_no_runbook_without_alert(alert_rules):
    names = {rule.alert for rule in alert_rules}
    orphans = [path.name for path in RUNBOOK_DIR.glob("*.md") if path.stem not in names]
    assert orphans == []


def test_runbooks_say_check_and_fix(alert_rules):
    for name in {rule.alert for rule in alert_rules}:
        text = (RUNBOOK_DIR / f"{name}.md").read_text(encoding="utf-8")
        assert text.startswith(f"# {name}\n"), name
        for heading in ("## Meaning", "## Check", "## Fix"):
            assert heading in text, f"{name}.md has no {heading!r} section"


def test_durations_are_deliberate(alert_rules):
    for rule in alert_rules:
        if rule.alert in WINDOWED_COUNT_ALERTS:
            assert rule.duration is None, f"{rule.alert}: windowed count with a `for`"
        else:
            assert rule.duration is not None and seconds(rule.duration) >= 60, f"{rule.alert}: `for` {rule.duration}"


def test_gauges_read_through_windows(alert_rules):
    # A bare gauge goes stale after one failed scrape and would clear a firing alert. `up` is written on every
    # scrape, failed ones included, so it needs no window.
    catalogue = load_catalogue()
    for rule in alert_rules:
        for selector in scan(rule.expr).selectors:
            if selector.name in PROMETHEUS_SERIES:
                continue
            assert selector.range is not None, f"{rule.alert}: {selector.name} is read without a range"
            entry = catalogue.lookup(selector.name)
            if entry.kind == "counter":
                assert selector.innermost_call == "increase", f"{rule.alert}: counter {selector.name} outside increase"
            else:
                assert selector.innermost_call in {"max_over_time", "min_over_time"}, f"{rule.alert}: {selector.name}"


def _parenthesised_operand(expr: str, start: int) -> str | None:
    """Return the balanced "( ... )" group that starts at or after `start`, or None when another token comes first."""
    opening = expr.find("(", start)
    if opening < 0 or expr[start:opening].strip():
        return None
    depth = 0
    for position in range(opening, len(expr)):
        depth += expr[position] == "("
        depth -= expr[position] == ")"
        if depth == 0:
            return expr[opening + 1:position]
    return None


def test_ratios_guard_denominator(alert_rules):
    # A division's right side must be filtered by a comparison (`(... >= 5)`), so no traffic gives no sample
    # rather than NaN or +Inf.
    for rule in alert_rules:
        for division in re.finditer(r"/", rule.expr):
            denominator = _parenthesised_operand(rule.expr, division.end())
            assert denominator is not None, f"{rule.alert}: the denominator is not parenthesised"
            assert re.search(r"(>=|>)\s*\d+\s*$", denominator), f"{rule.alert}: unguarded {denominator!r}"


def test_rule_metrics_in_catalogue(alert_rules):
    catalogue = load_catalogue()
    for rule in alert_rules:
        for name in metric_names(rule.expr) - PROMETHEUS_SERIES:
            entry = catalogue.lookup(name)
            assert entry is not None, f"{rule.alert}: {name} is not in docs/metrics.md"
            assert entry.producer == "both", f"{rule.alert}: {name} is {entry.producer}, not a contract metric"


def test_rule_labels_in_catalogue(alert_rules):
    catalogue = load_catalogue()
    for rule in alert_rules:
        for selector in scan(rule.expr).selectors:
            if selector.name in PROMETHEUS_SERIES:
                continue
            for matcher in selector.matchers:
                assert matcher.label in catalogue.lookup(selector.name).labels, (rule.alert, selector.name, matcher)


def test_canned_metrics_cover_rules(alert_rules):
    # The live test's healthy target must serve every metric the rules read, or "no alert" would prove nothing.
    served = {name for name, _ in healthy_samples()}
    used = set().union(*(metric_names(rule.expr) for rule in alert_rules)) - PROMETHEUS_SERIES
    assert used - served == set()


def test_every_alert_fires_in_unit_tests(alert_rules):
    expected = expected_alerts_in_unit_tests()
    missing = sorted({(rule.alert, rule.severity) for rule in alert_rules} - expected)
    assert missing == []


def test_alerts_doc_lists_every_alert(alert_rules):
    text = ALERTS_DOC.read_text(encoding="utf-8")
    for rule in alert_rules:
        assert f"`{rule.alert}`" in text, f"docs/alerts.md does not mention {rule.alert}"
        assert f"runbooks/{rule.alert}.md" in text, f"docs/alerts.md does not link the runbook of {rule.alert}"
