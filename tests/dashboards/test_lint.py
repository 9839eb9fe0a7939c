"""Lint the Grafana dashboards: variables, panels, links and every PromQL query against the metric catalogue."""

from __future__ import annotations

import importlib.util
import json

import pytest

from tests.dashboards.dashlint_catalogue import DASHBOARD_DIR, PROMETHEUS_SERIES, iter_panels, iter_targets, load_dashboards
from tests.dashboards.dashlint_promql import PromQLScanError, scan
from tests.dashboards.dashlint_rules import (
    MAX_UID_LENGTH, dashboard_query_problems, link_problems, panel_problems, query_problems, variable_problems,
)

TAG = "justtrades"
EXPECTED_FILES = {"overview.json", "broker-execution.json", "webhooks.json", "market-data.json", "accounts.json"}
DASHBOARD_FILES = sorted(path.name for path in DASHBOARD_DIR.glob("*.json"))
GOOD_MATCHERS = 'job=~"$job", instance=~"$instance"'


def _load_build_module():
    spec = importlib.util.spec_from_file_location("dashboards_build", DASHBOARD_DIR / "build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(params=DASHBOARD_FILES)
def board(request, dashboards):
    return dashboards[request.param]


# ----------------------------------------------------------------------------------------------------------
# The set of dashboards


def test_every_dashboard_file_present():
    assert set(DASHBOARD_FILES) == EXPECTED_FILES


def test_json_matches_builder():
    assert _load_build_module().stale_files() == []


def test_uids_short_and_unique(dashboards):
    uids = [board.get("uid") or "" for board in dashboards.values()]
    assert all(0 < len(uid) <= MAX_UID_LENGTH for uid in uids), uids
    assert len(set(uids)) == len(uids), uids


def test_titles_unique(dashboards):
    titles = [board.get("title") or "" for board in dashboards.values()]
    assert all(title.strip() for title in titles), titles
    assert len(set(titles)) == len(titles), titles


@pytest.mark.parametrize("name", DASHBOARD_FILES)
def test_no_import_placeholders(name):
    text = (DASHBOARD_DIR / name).read_text(encoding="utf-8")
    assert "__inputs" not in text
    assert "${DS_" not in text


# ----------------------------------------------------------------------------------------------------------
# Each dashboard


def test_dashboard_has_description_and_schema(board):
    assert (board.get("description") or "").strip()
    assert board.get("schemaVersion", 0) >= 36
    assert board.get("editable") is False


def test_variables_follow_linter(board):
    assert variable_problems(board) == []


def test_panels_complete(board):
    assert panel_problems(board) == []


def test_queries_pass_lint(board, catalogue):
    assert dashboard_query_problems(board, catalogue) == []


def test_links_keep_time_and_variables(board, dashboards):
    known_uids = {other["uid"] for other in dashboards.values()}
    assert link_problems(board, TAG, known_uids) == []


def test_stat_panels_have_thresholds(board):
    for panel in iter_panels(board):
        if panel["type"] != "stat":
            continue
        steps = panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
        assert steps[0]["value"] is None, panel["title"]
        values = [step["value"] for step in steps[1:]]
        assert values == sorted(values), panel["title"]


def test_overview_shows_firing_alerts(dashboards):
    overview_names = {selector.name for _, target in iter_targets(dashboards["overview.json"])
                      for selector in scan(target["expr"]).selectors}
    assert "ALERTS" in overview_names


def test_overview_links_every_dashboard(dashboards):
    linked = {link["url"].split("?")[0].removeprefix("/d/")
              for panel in iter_panels(dashboards["overview.json"]) for link in panel.get("links", [])}
    others = {board["uid"] for name, board in dashboards.items() if name != "overview.json"}
    assert others <= linked


def test_every_catalogue_metric_on_a_dashboard(dashboards, catalogue):
    used = {selector.name for board in dashboards.values() for _, target in iter_targets(board)
            for selector in scan(target["expr"]).selectors}
    used_entries = {catalogue.lookup(name).name for name in used if name not in PROMETHEUS_SERIES}
    assert set(catalogue.entries) - used_entries == set()


# ----------------------------------------------------------------------------------------------------------
# The lint rules themselves: each must catch what it is for.


@pytest.mark.parametrize("expr, expected", [
    ('sum(justtrades_broker_executions_total{' + GOOD_MATCHERS + '})', "counter justtrades_broker_executions_total"),
    ('rate(justtrades_broker_executions_total{' + GOOD_MATCHERS + '}[5m])', "uses a fixed range"),
    ('increase(justtrades_broker_executions_total{' + GOOD_MATCHERS + '}[1h])', "uses a fixed range"),
    ('justtrades_broker_queue_depth{job="justtrades", instance=~"$instance"}', 'lacks the matcher job=~"$job"'),
    ('justtrades_broker_queue_depth{job=~"$job"}', 'lacks the matcher instance=~"$instance"'),
    ('max_over_time(justtrades_broker_queue_depth{' + GOOD_MATCHERS + '}[$__rate_interval])',
     "not the argument of rate"),
    ('sum by (le) (rate(justtrades_webhook_duration_seconds_bucket{' + GOOD_MATCHERS + '}[$__rate_interval]))',
     "outside histogram_quantile"),
    ('justtrades_webhook_duration_seconds_count{' + GOOD_MATCHERS + '}', "counter justtrades_webhook_duration"),
    ('justtrades_no_such_metric{' + GOOD_MATCHERS + '}', "not in docs/metrics.md"),
    ('max_over_time(justtrades_broker_queue_depth{' + GOOD_MATCHERS + '}[$__rate_interval])[1h:1m]',
     "subquery range"),
    ('vector(1)', "selects no metric"),
])
def test_lint_catches_bad_query(expr, expected, catalogue):
    problems = query_problems(expr, catalogue)
    assert any(expected in problem for problem in problems), problems


@pytest.mark.parametrize("expr", [
    'histogram_quantile(0.99, sum by (le) (rate(justtrades_signal_to_order_seconds_bucket{' + GOOD_MATCHERS
    + '}[$__rate_interval])))',
    'sum(rate(justtrades_signal_to_order_seconds_sum{' + GOOD_MATCHERS + '}[$__rate_interval])) / '
    'sum(rate(justtrades_signal_to_order_seconds_count{' + GOOD_MATCHERS + '}[$__rate_interval]))',
    'time() - max by (job) (justtrades_whop_sync_last_run_timestamp_seconds{' + GOOD_MATCHERS + '})',
    'sum(ALERTS{alertstate="firing", ' + GOOD_MATCHERS + '}) or vector(0)',
    'min by (job) (up{' + GOOD_MATCHERS + '})',
    'process_resident_memory_bytes{' + GOOD_MATCHERS + '}',
])
def test_lint_accepts_good_query(expr, catalogue):
    assert query_problems(expr, catalogue) == []


def test_scanner_finds_nested_selector():
    result = scan('histogram_quantile(0.5, sum by (le, outcome) (rate(a_bucket{job=~"$job"}[$__rate_interval])))')
    assert [selector.name for selector in result.selectors] == ["a_bucket"]
    assert result.selectors[0].calls == ("histogram_quantile", "sum", "rate")
    assert result.selectors[0].range == "$__rate_interval"


def test_scanner_skips_label_lists():
    result = scan('sum(a{x="1"}) by (job) * on (instance) group_left (version) b')
    assert [selector.name for selector in result.selectors] == ["a", "b"]


def test_scanner_rejects_unbalanced_query():
    with pytest.raises(PromQLScanError):
        scan("sum(rate(a[1m])")


def test_catalogue_lists_contract_metrics(catalogue):
    assert catalogue.lookup("justtrades_broker_queue_depth").producer == "both"
    assert catalogue.lookup("justtrades_webhook_duration_seconds_bucket").kind == "histogram"
    assert catalogue.lookup("process_open_fds") is not None
    assert catalogue.lookup("justtrades_exporter_endpoint_up") is not None
    assert catalogue.lookup("justtrades_price_bucket") is None


def test_dashboard_json_parses_as_grafana_model():
    for board in load_dashboards().values():
        # Grafana rejects a dashboard whose panels lack a type or whose JSON round trip changes it.
        assert json.loads(json.dumps(board)) == board
        assert all(panel.get("type") for panel in iter_panels(board))
