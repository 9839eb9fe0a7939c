"""Lint rules for the Just Trades dashboards, in the spirit of Grafana's dashboard-linter.

Each rule returns a list of problems (empty when the dashboard or query passes), so a failing test shows
every offending panel at once.
"""

from __future__ import annotations

from tests.dashboards.dashlint_catalogue import PROMETHEUS_SERIES, Catalogue, iter_panels, iter_targets
from tests.dashboards.dashlint_promql import scan

DATASOURCE_REF = "${datasource}"
RATE_INTERVAL = "$__rate_interval"
RANGE_FUNCTIONS = {"rate", "irate", "increase"}
REQUIRED_MATCHERS = {"job": "$job", "instance": "$instance"}
MAX_UID_LENGTH = 40
GRID_COLUMNS = 24


def query_problems(expr: str, catalogue: Catalogue) -> list[str]:
    """Check one PromQL query: matchers, ranges, counters, histograms and catalogue membership."""
    problems = []
    result = scan(expr)

    if not result.selectors:
        problems.append("selects no metric")
    for subquery_range in result.other_ranges:
        problems.append(f"has a subquery range [{subquery_range}]; use a rate over {RATE_INTERVAL} instead")

    for selector in result.selectors:
        problems.extend(_selector_problems(selector, catalogue))
    return problems


def _selector_problems(selector, catalogue: Catalogue) -> list[str]:
    name = selector.name or "<no name>"
    problems = []

    matchers = {(matcher.label, matcher.operator, matcher.value) for matcher in selector.matchers}
    for label, variable in REQUIRED_MATCHERS.items():
        accepted = {(label, "=~", variable)}
        if name == "ALERTS":
            # Alerts of rules that aggregate a job's replicas carry no instance label; "$instance|" keeps them.
            accepted.add((label, "=~", variable + "|"))
        if not matchers & accepted:
            problems.append(f'{name} lacks the matcher {label}=~"{variable}"')

    if selector.range is not None and selector.range != RATE_INTERVAL:
        problems.append(f"{name}[{selector.range}] uses a fixed range; use [{RATE_INTERVAL}]")
    if selector.range is not None and selector.innermost_call not in RANGE_FUNCTIONS:
        problems.append(f"{name}[{selector.range}] is not the argument of rate, irate or increase")

    if catalogue.is_counter_series(name) and (selector.range is None or selector.innermost_call not in RANGE_FUNCTIONS):
        problems.append(f"counter {name} is used outside rate, irate or increase")
    if name.endswith("_bucket") and "histogram_quantile" not in selector.calls:
        problems.append(f"{name} is used outside histogram_quantile")

    if name not in PROMETHEUS_SERIES and catalogue.lookup(name) is None:
        problems.append(f"{name} is not in docs/metrics.md")
    return problems


def dashboard_query_problems(board: dict, catalogue: Catalogue) -> list[str]:
    problems = []
    for panel, target in iter_targets(board):
        for problem in query_problems(target.get("expr", ""), catalogue):
            problems.append(f"panel {panel.get('title')!r} target {target.get('refId')}: {problem}")
    return problems


def variable_problems(board: dict) -> list[str]:
    """Check the datasource, job and instance variables the way dashboard-linter's template rules do."""
    variables = {variable["name"]: variable for variable in board.get("templating", {}).get("list", [])}
    problems = []

    datasource = variables.get("datasource")
    if datasource is None:
        problems.append("no `datasource` variable")
    elif (datasource.get("type"), datasource.get("query"), datasource.get("label")) != ("datasource", "prometheus", "Data source"):
        problems.append("the `datasource` variable must be of type datasource, query prometheus, label 'Data source'")

    for name in ("job", "instance"):
        variable = variables.get(name)
        if variable is None:
            problems.append(f"no `{name}` variable")
            continue

        expected = {"type": "query", "label": name.capitalize(), "multi": True, "includeAll": True,
                    "allValue": ".+", "refresh": 2}
        for key, value in expected.items():
            if variable.get(key) != value:
                problems.append(f"`{name}` variable: {key} is {variable.get(key)!r}, expected {value!r}")
        if variable.get("datasource", {}).get("uid") != DATASOURCE_REF:
            problems.append(f"`{name}` variable does not query {DATASOURCE_REF}")

        query = variable.get("query")
        query_text = query.get("query", "") if isinstance(query, dict) else query or ""
        if not query_text.startswith("label_values(") or not query_text.endswith(f", {name})"):
            problems.append(f"`{name}` variable query {query_text!r} is not label_values(..., {name})")
    return problems


def panel_problems(board: dict) -> list[str]:
    """Check every panel for a title, a description, a unit, the datasource variable and a query."""
    problems = []
    ids = []
    for panel in iter_panels(board):
        ids.append(panel.get("id"))
        title = panel.get("title") or ""
        where = f"panel {title!r} (id {panel.get('id')})"
        if not title.strip():
            problems.append(f"{where} has no title")
        problems.extend(_grid_problems(panel, where))

        # Rows only group panels: they have no query, hence no data source, unit or description.
        if panel.get("type") == "row":
            continue

        if not (panel.get("description") or "").strip():
            problems.append(f"{where} has no description")
        if not panel.get("fieldConfig", {}).get("defaults", {}).get("unit"):
            problems.append(f"{where} has no unit")
        if panel.get("datasource", {}).get("uid") != DATASOURCE_REF:
            problems.append(f"{where} does not use the {DATASOURCE_REF} data source")
        if not panel.get("targets"):
            problems.append(f"{where} has no query")
        for target in panel.get("targets", []):
            if target.get("datasource", {}).get("uid") != DATASOURCE_REF:
                problems.append(f"{where} target {target.get('refId')} does not use {DATASOURCE_REF}")

    if len(ids) != len(set(ids)):
        problems.append(f"panel ids repeat: {sorted(i for i in ids if ids.count(i) > 1)}")
    return problems


def _grid_problems(panel: dict, where: str) -> list[str]:
    grid = panel.get("gridPos", {})
    if not all(isinstance(grid.get(key), int) for key in ("x", "y", "w", "h")):
        return [f"{where} has an incomplete gridPos {grid}"]
    if grid["x"] < 0 or grid["w"] <= 0 or grid["x"] + grid["w"] > GRID_COLUMNS:
        return [f"{where} does not fit the {GRID_COLUMNS}-column grid: {grid}"]
    return []


def link_problems(board: dict, tag: str, known_uids: set[str]) -> list[str]:
    """Check the links between dashboards: they keep the time range and the variables."""
    problems = []
    if tag not in board.get("tags", []):
        problems.append(f"dashboard lacks the tag {tag!r} that the dashboard links select")

    tag_links = [link for link in board.get("links", []) if link.get("type") == "dashboards" and tag in link.get("tags", [])]
    if not tag_links:
        problems.append(f"no dashboard link to the dashboards tagged {tag!r}")
    for link in tag_links:
        if not (link.get("includeVars") and link.get("keepTime")):
            problems.append(f"dashboard link {link.get('title')!r} must set includeVars and keepTime")

    for panel in iter_panels(board):
        for link in panel.get("links", []):
            problems.extend(_panel_link_problems(panel, link, known_uids))
    return problems


def _panel_link_problems(panel: dict, link: dict, known_uids: set[str]) -> list[str]:
    url = link.get("url", "")
    where = f"panel {panel.get('title')!r} link {url!r}"
    if not url.startswith("/d/"):
        return [f"{where} does not point at a dashboard"]

    problems = []
    uid = url[len("/d/"):].split("?")[0].split("/")[0]
    if uid not in known_uids:
        problems.append(f"{where} points at unknown uid {uid!r}")
    for part in ("${__url_time_range}", "${datasource:queryparam}", "${job:queryparam}", "${instance:queryparam}"):
        if part not in url:
            problems.append(f"{where} does not carry {part}")
    return problems
