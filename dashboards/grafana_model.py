"""Building blocks of Grafana dashboard JSON (schema version 39) for Prometheus panels."""

from __future__ import annotations

import dataclasses
import json

SCHEMA_VERSION = 39
TAG = "justtrades"

# The provisioned Prometheus data source has this uid (dashboards/provisioning/datasources/prometheus.yml), so
# the datasource variable selects it by default on a fresh Grafana.
DEFAULT_DATASOURCE_UID = "jt-prometheus"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}

# Every selector carries both matchers, so the job and instance variables filter every panel.
MATCHERS = 'job=~"$job", instance=~"$instance"'

GREEN, ORANGE, RED, BLUE = "green", "orange", "red", "blue"


def sel(metric: str, extra: str = "") -> str:
    """Return the selector of `metric` with the job and instance matchers (and `extra` matchers)."""
    matchers = f"{MATCHERS}, {extra}" if extra else MATCHERS
    return f"{metric}{{{matchers}}}"


def rate(metric: str, extra: str = "") -> str:
    return f"rate({sel(metric, extra)}[$__rate_interval])"


def quantile(q: float, histogram: str, by: str = "le") -> str:
    """Return the q-quantile of a histogram over the rate interval, aggregated by `by`."""
    return f"histogram_quantile({q}, sum by ({by}) ({rate(histogram + '_bucket')}))"


def age(timestamp_metric: str, newest_by: str = "job") -> str:
    """Return the seconds since the newest value of a `_timestamp_seconds` gauge, per `newest_by`."""
    return f"time() - max by ({newest_by}) ({sel(timestamp_metric)})"


# ----------------------------------------------------------------------------------------------------------
# Panel building blocks


@dataclasses.dataclass
class Target:
    expr: str
    legend: str = ""
    instant: bool = False
    table: bool = False


def steps(*pairs) -> dict:
    """Return absolute thresholds from (value, colour) pairs; the first value is None (the base colour)."""
    return {"mode": "absolute", "steps": [{"color": color, "value": value} for value, color in pairs]}


def state_mapping(states: dict[int, tuple[str, str]]) -> list[dict]:
    """Return a value mapping that shows each number as (text, colour)."""
    options = {str(value): {"text": text, "color": color, "index": index}
               for index, (value, (text, color)) in enumerate(states.items())}
    return [{"type": "value", "options": options}]


UP_DOWN = state_mapping({0: ("Down", RED), 1: ("Up", GREEN)})
YES_NO_BAD_WHEN_NO = state_mapping({0: ("No", RED), 1: ("Yes", GREEN)})
YES_NO_BAD_WHEN_YES = state_mapping({0: ("No", GREEN), 1: ("Yes", ORANGE)})
OPEN_CLOSED = state_mapping({0: ("Closed", BLUE), 1: ("Open", GREEN)})


def _targets(targets: list[Target]) -> list[dict]:
    built = []
    for index, target in enumerate(targets):
        built.append({
            "datasource": DATASOURCE,
            "editorMode": "code",
            "expr": target.expr,
            "format": "table" if target.table else "time_series",
            "instant": target.instant,
            "legendFormat": target.legend or "__auto",
            "range": not target.instant,
            "refId": chr(ord("A") + index),
        })
    return built


def _panel(kind: str, title: str, description: str, unit: str, targets: list[Target], *,
           width: int, height: int, defaults: dict | None = None, options: dict | None = None,
           links: list[dict] | None = None) -> dict:
    field_defaults = {"unit": unit}
    field_defaults.update(defaults or {})
    return {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "fieldConfig": {"defaults": field_defaults, "overrides": []},
        "options": options or {},
        "targets": _targets(targets),
        "links": links or [],
        "gridPos": {"w": width, "h": height},
    }


def stat(title: str, description: str, unit: str, targets: list[Target], *, thresholds: dict,
         mappings: list | None = None, links: list[dict] | None = None, width: int = 4, height: int = 4) -> dict:
    """Return a stat panel coloured by its thresholds."""
    return _panel(
        "stat", title, description, unit, targets, width=width, height=height, links=links,
        defaults={"thresholds": thresholds, "mappings": mappings or [], "color": {"mode": "thresholds"},
                  "noValue": "no data"},
        options={
            "colorMode": "background",
            "graphMode": "none",
            "justifyMode": "auto",
            "orientation": "auto",
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "textMode": "value_and_name" if len(targets) > 1 or "by (" in targets[0].expr else "value",
            "wideLayout": True,
        },
    )


def timeseries(title: str, description: str, unit: str, targets: list[Target], *, thresholds: dict | None = None,
               stacked: bool = False, bars: bool = False, min_zero: bool = True, width: int = 12,
               height: int = 8) -> dict:
    """Return a time series panel. Thresholds, when given, are drawn as dashed lines."""
    custom = {
        "drawStyle": "bars" if bars else "line",
        "lineInterpolation": "stepAfter" if bars else "linear",
        "fillOpacity": 60 if bars else 10,
        "showPoints": "never",
        "spanNulls": False,
        "stacking": {"mode": "normal" if stacked else "none", "group": "A"},
        "thresholdsStyle": {"mode": "dashed" if thresholds else "off"},
    }
    defaults = {
        "custom": custom,
        "color": {"mode": "palette-classic"},
        "thresholds": thresholds or steps((None, GREEN)),
    }
    if min_zero:
        defaults["min"] = 0
    return _panel(
        "timeseries", title, description, unit, targets, width=width, height=height, defaults=defaults,
        options={
            "legend": {"displayMode": "table", "placement": "right", "showLegend": True, "calcs": ["lastNotNull", "max"]},
            "tooltip": {"mode": "multi", "sort": "desc"},
        },
    )


def state_timeline(title: str, description: str, targets: list[Target], *, mappings: list,
                   width: int = 12, height: int = 6) -> dict:
    """Return a state timeline for 1/0 gauges, one lane per series."""
    return _panel(
        "state-timeline", title, description, "bool_yes_no", targets, width=width, height=height,
        defaults={"mappings": mappings, "color": {"mode": "thresholds"}, "thresholds": steps((None, BLUE)),
                  "custom": {"fillOpacity": 80, "lineWidth": 0}},
        options={"showValue": "never", "mergeValues": True, "rowHeight": 0.8, "alignValue": "left",
                 "legend": {"displayMode": "list", "placement": "bottom", "showLegend": False},
                 "tooltip": {"mode": "single", "sort": "none"}},
    )


def table(title: str, description: str, unit: str, targets: list[Target], *, hidden_columns: list[str],
          width: int = 24, height: int = 7) -> dict:
    """Return a table with one row per series of an instant query, without the columns in `hidden_columns`."""
    panel = _panel(
        "table", title, description, unit, targets, width=width, height=height,
        defaults={"thresholds": steps((None, RED)), "custom": {"align": "auto", "cellOptions": {"type": "auto"}}},
        options={"showHeader": True, "cellHeight": "sm", "footer": {"show": False, "reducer": ["sum"], "fields": ""}},
    )
    panel["transformations"] = [
        {"id": "merge", "options": {}},
        {"id": "organize", "options": {"excludeByName": {name: True for name in hidden_columns}}},
    ]
    return panel


def row(title: str) -> dict:
    """Return a row header. Rows have no query, so they carry no datasource, unit or description."""
    return {"type": "row", "title": title, "collapsed": False, "panels": [], "gridPos": {"w": 24, "h": 1}}


def dashboard_link(uid: str, title: str) -> dict:
    """Return a panel link to another dashboard that keeps the time range and the variables."""
    query = "${__url_time_range}&${datasource:queryparam}&${job:queryparam}&${instance:queryparam}"
    return {"title": f"Open {title}", "url": f"/d/{uid}?{query}", "targetBlank": False}


# ----------------------------------------------------------------------------------------------------------
# Dashboard assembly


def _place(panels: list[dict]) -> list[dict]:
    """Give each panel an id and a grid position, filling rows of 24 columns from left to right."""
    x = y = row_height = 0
    for panel_id, panel in enumerate(panels, start=1):
        width, height = panel["gridPos"]["w"], panel["gridPos"]["h"]
        if panel["type"] == "row" or x + width > 24:
            x, y, row_height = 0, y + row_height, 0

        panel["id"] = panel_id
        panel["gridPos"] = {"h": height, "w": width, "x": x, "y": y}

        x += width
        row_height = max(row_height, height)
        if panel["type"] == "row":
            x, y, row_height = 0, y + height, 0
    return panels


def _variables() -> list[dict]:
    datasource = {
        "name": "datasource",
        "label": "Data source",
        "type": "datasource",
        "query": "prometheus",
        "current": {"selected": True, "text": "Prometheus", "value": DEFAULT_DATASOURCE_UID},
        "hide": 0,
        "includeAll": False,
        "multi": False,
        "options": [],
        "refresh": 1,
        "regex": "",
    }
    job = _label_variable("job", "label_values(justtrades_up, job)")
    instance = _label_variable("instance", 'label_values(justtrades_up{job=~"$job"}, instance)')
    return [datasource, job, instance]


def _label_variable(name: str, query: str) -> dict:
    """Return a multi-select variable over a label's values, with All matching any value."""
    return {
        "name": name,
        "label": name.capitalize(),
        "type": "query",
        "datasource": DATASOURCE,
        "definition": query,
        "query": {"query": query, "refId": "PrometheusVariableQueryEditor-VariableQuery"},
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "hide": 0,
        "includeAll": True,
        "allValue": ".+",
        "multi": True,
        "options": [],
        # 2 = reload on every time range change, so replicas that came or went show up.
        "refresh": 2,
        "regex": "",
        "skipUrlSync": False,
        "sort": 1,
    }


def dashboard(uid: str, title: str, description: str, panels: list[dict]) -> dict:
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": [TAG],
        "editable": False,
        "graphTooltip": 1,
        "fiscalYearStartMonth": 0,
        "liveNow": False,
        "refresh": "30s",
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "time": {"from": "now-6h", "to": "now"},
        "timepicker": {},
        "timezone": "",
        "weekStart": "",
        "annotations": {"list": [{
            "builtIn": 1,
            "datasource": {"type": "grafana", "uid": "-- Grafana --"},
            "enable": True,
            "hide": True,
            "iconColor": "rgba(0, 211, 255, 1)",
            "name": "Annotations & Alerts",
            "type": "dashboard",
        }]},
        # One drop-down with every Just Trades dashboard; it carries the time range and the variables along.
        "links": [{
            "title": "Just Trades",
            "type": "dashboards",
            "tags": [TAG],
            "asDropdown": True,
            "includeVars": True,
            "keepTime": True,
            "targetBlank": False,
            "icon": "external link",
            "tooltip": "",
            "url": "",
        }],
        "templating": {"list": _variables()},
        "panels": _place(panels),
    }


def render(board: dict) -> str:
    return json.dumps(board, indent=2, ensure_ascii=False) + "\n"
