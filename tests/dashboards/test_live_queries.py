"""Run every panel query of every dashboard against a real Prometheus that scrapes a running platform.

One platform server (`justtrades serve` with the demo data and a Tradovate account), the standalone exporter
polling it, and /usr/bin/prometheus scraping both every second. The platform talks to local peers of
TradingView, Whop, SMTP and Tradovate (`live_peers.py`), so its price feed, Whop sync, token refresh and
position monitor all have state. Webhook traffic goes in while Prometheus scrapes, so counters move, the
histograms fill and a paper trade is closed. Each query then runs with the dashboard variables replaced as
Grafana would: it must parse, return at least one finite value, and carry every label its legend names.

A query is run once per producer that has all of its metrics: against the platform job (`justtrades`) and,
when every metric is part of the contract, against the exporter job (`justtrades-exporter`) too. No query is
skipped for missing state: a panel that shows nothing fails.
"""

from __future__ import annotations

import importlib.util
import math
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.conftest import PlatformServer
from tests.dashboards.dashlint_catalogue import PROMETHEUS_SERIES, iter_targets, load_catalogue, load_dashboards
from tests.dashboards.dashlint_promql import scan
from tests.dashboards.live_peers import seed_with_oauth_token, start_live_peers
from tests.dashboards.prometheus_server import PrometheusServer, free_port, prometheus_binary

ON_CI = os.environ.get("CI", "").lower() == "true"
PLATFORM_JOB = "justtrades"
EXPORTER_JOB = "justtrades-exporter"
QUERY_WINDOW_SECONDS = 20
EXPORTER_SCRAPE_SECONDS = 3

# Grafana's built-in variables, with values that suit a one-second scrape interval.
BUILTIN_VARIABLES = {"$__rate_interval": "1m", "$__interval": "1s", "$__range": "5m"}

# Metrics that need a subsystem to have done something, with what that is and the JSON endpoint that shows why
# not. The stack waits until every producer exposes each of them before any query runs.
STATE_METRICS = {
    "justtrades_whop_sync_last_run_timestamp_seconds":
        ("a completed Whop sync against the Whop peer", "/api/admin/whop-sync-status"),
    "justtrades_account_token_earliest_expiry_timestamp_seconds":
        ("a Tradovate token from the REST peer", "/api/accounts/auth-status"),
    "justtrades_position_monitor_last_message_timestamp_seconds":
        ("a message on the position monitor's Tradovate socket", "/api/position-monitor/status"),
    "justtrades_paper_last_close_timestamp_seconds":
        ("a closed paper trade (the NQ buy, then closelong)", "/api/paper-trades/service-status"),
}
STATE_TIMEOUT_SECONDS = 60

# The probe alerts fire at once for every scraped producer, so the ALERTS panels have series to show: one per
# instance, and one per job without an instance label, like the rules that aggregate a job's replicas.
PROBE_RULES = [{
    "name": "dashboard-probe",
    "rules": [
        {"alert": "DashboardInstanceProbe", "expr": "justtrades_up >= 0", "labels": {"severity": "info"}},
        {"alert": "DashboardJobProbe", "expr": "max by (job) (justtrades_up) >= 0", "labels": {"severity": "info"}},
    ],
}]

DEMO_WEBHOOKS = [
    ("demo-nq-7f3a9c2e41b8d605", '{"action":"buy","ticker":"NQZ6","price":21500.00}'),
    ("demo-es-2b6d0e9a73c4f158", '{"action":"sell","ticker":"ESZ6","price":6120.50}'),
    ("demo-gc-91e5c7a02d4b6f83", '{"action":"buy","ticker":"GCZ6","price":2945.30}'),
    ("demo-nq-7f3a9c2e41b8d605", '{"action":"closelong","ticker":"NQZ6","price":21510.00}'),
    ("no-such-recorder-token", '{"action":"buy","ticker":"NQZ6","price":21500.00}'),
    ("demo-es-2b6d0e9a73c4f158", "this is not an alert"),
]


def require(available: bool, what: str) -> None:
    """Skip when a component is missing, except on CI (CI=true), where a missing component is a failure."""
    if available:
        return
    if ON_CI:
        pytest.fail(f"{what} is required on CI (CI=true) but is not available", pytrace=False)
    pytest.skip(f"{what} is not available")


# ----------------------------------------------------------------------------------------------------------
# Which query runs against which producer


def _producers(expr: str, catalogue) -> set[str]:
    """Return the jobs whose producer has every metric of `expr`."""
    jobs = {PLATFORM_JOB, EXPORTER_JOB}
    for selector in scan(expr).selectors:
        if selector.name in PROMETHEUS_SERIES:
            continue
        producer = catalogue.lookup(selector.name).producer
        if producer == "platform-only":
            jobs.discard(EXPORTER_JOB)
        elif producer == "exporter":
            jobs.discard(PLATFORM_JOB)
    return jobs


def _cases():
    catalogue = load_catalogue()
    for file_name, board in load_dashboards().items():
        for panel, target in iter_targets(board):
            for job in sorted(_producers(target["expr"], catalogue)):
                case_id = f"{file_name}:{panel['title']}:{target['refId']}@{job}"
                yield pytest.param(panel, target, job, id=case_id)


def substitute(expr: str, job: str) -> str:
    """Replace the dashboard variables the way Grafana would, with `job` selected and every instance."""
    for name, value in BUILTIN_VARIABLES.items():
        expr = expr.replace(name, value)
    expr = expr.replace("${datasource}", "").replace("$datasource", "")
    expr = expr.replace("$instance", ".*")
    # Job names are plain words and dashes, which a regex matches literally.
    assert re.fullmatch(r"[A-Za-z0-9_-]+", job), job
    return expr.replace("$job", job)


# ----------------------------------------------------------------------------------------------------------
# The running stack


class ExporterProcess:
    """`justtrades-exporter serve` in a subprocess on a free loopback port, polling `platform_url`."""

    def __init__(self, platform_url: str, api_key: str, workdir: Path):
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.log_path = workdir / "exporter.log"
        self.command = [sys.executable, "-m", "justtrades_exporter", "serve", "--platform-url", platform_url,
                        "--listen-address", "127.0.0.1", "--port", str(self.port)]
        self.env = {**os.environ, "JT_EXPORTER_API_KEY": api_key}
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 30.0) -> "ExporterProcess":
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(self.command, env=self.env, stdout=log, stderr=subprocess.STDOUT)

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                if requests.get(f"http://{self.address}/", timeout=2).status_code == 200:
                    return self
            except requests.RequestException:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"the exporter did not serve on {self.address}; log:\n{self.log_path.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)


def _exporter_installed() -> bool:
    return importlib.util.find_spec("justtrades_exporter") is not None


def _post_traffic(platform_server) -> None:
    for token, body in DEMO_WEBHOOKS:
        response = platform_server.post_webhook(token, body)
        assert response.status_code < 500, (token, response.status_code, response.text)


@pytest.fixture(scope="module")
def live_peers(tmp_path_factory):
    with start_live_peers(tmp_path_factory.mktemp("peers")) as peers:
        yield peers


@pytest.fixture(scope="module")
def live_platform(live_peers, tmp_path_factory):
    """`justtrades serve` with the demo data and a Tradovate account, every outside service on a local peer."""
    workdir = tmp_path_factory.mktemp("platform")
    server = PlatformServer(workdir, live_peers.environment, seed=live_peers.seed)
    seed_with_oauth_token(server, live_peers.tradovate_rest)
    server.start()
    try:
        _wait_for_token_renewal(server)
        yield server
    finally:
        server.stop()


def _wait_for_token_renewal(platform: PlatformServer) -> None:
    """Wait until the token refresh daemon has renewed the Tradovate token at the REST peer."""
    deadline = time.monotonic() + STATE_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        status = platform.get("/api/accounts/auth-status").json()
        if status["token_refresh"]["renewed_total"] >= 1 and status["all_accounts_valid"]:
            return
        time.sleep(0.5)
    raise RuntimeError(
        f"timed out after {STATE_TIMEOUT_SECONDS} s waiting for the token refresh to renew the Tradovate token\n"
        f"GET /api/accounts/auth-status: {status}\n"
        f"platform log:\n{platform.log_path.read_text(errors='replace')[-3000:]}"
    )


class LiveStack:
    def __init__(self, prometheus: PrometheusServer, exporter_running: bool, scraped_names: dict[str, set[str]]):
        self.prometheus = prometheus
        self.exporter_running = exporter_running
        self.scraped_names = scraped_names


@pytest.fixture(scope="module")
def live_stack(live_platform, tmp_path_factory):
    binary = prometheus_binary()
    require(binary is not None, "the prometheus binary (/usr/bin/prometheus)")

    workdir = tmp_path_factory.mktemp("stack")
    exporter = None
    if _exporter_installed():
        exporter = ExporterProcess(live_platform.url, live_platform.api_key, workdir).start()
    targets = {PLATFORM_JOB: live_platform.url.removeprefix("http://").rstrip("/")}
    if exporter is not None:
        targets[EXPORTER_JOB] = exporter.address

    # The exporter polls every JSON endpoint within the scrape timeout Prometheus announces and leaves out the
    # endpoints it had no time for, so its job gets a longer interval than the platform's one second.
    slow_jobs = {EXPORTER_JOB: f"{EXPORTER_SCRAPE_SECONDS}s"}
    prometheus = PrometheusServer(binary, workdir, targets, PROBE_RULES, slow_jobs).start()
    try:
        # Counters need a sample before and after the traffic for rate() to see it.
        prometheus.wait_for(f'count_over_time(up{{job="{PLATFORM_JOB}"}}[1m]) >= 3', 30, "three scrapes")
        _post_traffic(live_platform)
        prometheus.wait_for(f'sum(justtrades_signal_to_order_seconds_count{{job="{PLATFORM_JOB}"}}) > 0', 30,
                            "the broker workers to execute the demo signals")

        # Two more scrapes of every job after the last execution, so every rate window includes the traffic.
        executed_at = time.time()
        for job in targets:
            prometheus.wait_for(lambda: f'count_over_time(up{{job="{job}"}}[{_seconds_since(executed_at)}s]) >= 2',
                                30, f"two scrapes of {job} after the traffic")
        prometheus.wait_for('count(ALERTS{alertname=~"Dashboard.*Probe", alertstate="firing"}) >= 2', 30,
                            "the probe alerts")
        _wait_for_state(prometheus, live_platform, list(targets))

        scraped = {job: _scraped_names(prometheus, job) for job in targets}
        yield LiveStack(prometheus, exporter is not None, scraped)
    finally:
        prometheus.stop()
        if exporter is not None:
            exporter.stop()


def _wait_for_state(prometheus: PrometheusServer, platform: PlatformServer, jobs: list[str]) -> None:
    """Wait until every job exposes each state metric. On a timeout, the error shows the endpoint that explains why."""
    deadline = time.monotonic() + STATE_TIMEOUT_SECONDS
    for name, (description, endpoint) in STATE_METRICS.items():
        missing = _jobs_without(prometheus, name, jobs)
        while missing and time.monotonic() < deadline:
            time.sleep(0.5)
            missing = _jobs_without(prometheus, name, jobs)

        if missing:
            raise RuntimeError(
                f"timed out after {STATE_TIMEOUT_SECONDS} s waiting for {description}: "
                f"{name} has no sample in {missing}\n"
                f"GET {endpoint}: {platform.get(endpoint).text[:2000]}\n"
                f"platform log:\n{platform.log_path.read_text(errors='replace')[-3000:]}"
            )


def _jobs_without(prometheus: PrometheusServer, name: str, jobs: list[str]) -> list[str]:
    present = {series["metric"]["job"] for series in prometheus.instant(f"group by (job) ({name})")}
    return sorted(set(jobs) - present)


def _seconds_since(moment: float) -> int:
    return max(1, int(time.time() - moment))


def _scraped_names(prometheus: PrometheusServer, job: str) -> set[str]:
    series = prometheus.instant(f'group by (__name__) ({{job="{job}"}})')
    return {item["metric"]["__name__"] for item in series}


# ----------------------------------------------------------------------------------------------------------
# The tests


def _finite_values(result: list[dict]) -> list[float]:
    values = []
    for series in result:
        points = series.get("values") or [series["value"]]
        values.extend(float(value) for _, value in points if math.isfinite(float(value)))
    return values


def _run(prometheus: PrometheusServer, expr: str, instant: bool) -> dict:
    if instant:
        return prometheus.api("query", query=expr)
    end = time.time()
    return prometheus.api("query_range", query=expr, start=end - QUERY_WINDOW_SECONDS, end=end, step=1)


def _absent_metrics(stack: LiveStack, expr: str, job: str) -> list[str]:
    names = {selector.name for selector in scan(expr).selectors} - PROMETHEUS_SERIES
    return sorted(names - stack.scraped_names[job])


@pytest.mark.parametrize("panel, target, job", list(_cases()))
def test_panel_query_returns_data(live_stack, panel, target, job):
    if job == EXPORTER_JOB:
        require(live_stack.exporter_running, "the justtrades-exporter package (pip install -e ./exporter)")

    expr = substitute(target["expr"], job)
    document = _run(live_stack.prometheus, expr, target.get("instant", False))

    assert document.get("status") == "success", f"{expr}: {document.get('error')}"
    result = document["data"]["result"]
    assert result, f"no series for {expr}; job {job} exposes none of {_absent_metrics(live_stack, target['expr'], job)}"
    assert _finite_values(result), f"only NaN or infinite values for {expr}"

    for label in re.findall(r"\{\{\s*(\w+)\s*\}\}", target.get("legendFormat", "")):
        assert all(label in series["metric"] for series in result), f"legend label {label} missing from {expr}"


def test_alert_table_keeps_job_level_alerts(live_stack):
    overview = load_dashboards()["overview.json"]
    table_expr = next(target["expr"] for panel, target in iter_targets(overview) if panel["type"] == "table")

    result = live_stack.prometheus.instant(substitute(table_expr, PLATFORM_JOB))

    shown = {(series["metric"]["alertname"], "instance" in series["metric"]) for series in result}
    assert ("DashboardInstanceProbe", True) in shown
    assert ("DashboardJobProbe", False) in shown


def test_substitute_replaces_every_variable():
    expr = 'rate(a{job=~"$job", instance=~"$instance"}[$__rate_interval]) + b[$__range] + c[$__interval]'
    assert substitute(expr, "justtrades-exporter") == (
        'rate(a{job=~"justtrades-exporter", instance=~".*"}[1m]) + b[5m] + c[1s]'
    )


def test_every_dashboard_query_has_a_case():
    targets = sum(1 for board in load_dashboards().values() for _ in iter_targets(board))
    queried = {case.id.rsplit("@", 1)[0] for case in _cases()}
    assert len(queried) == targets
