"""Fault drills: real faults in a running platform make the matching alerts fire and clear, for both producers.

One platform runs in this process with its local peers (Tradovate REST, TradingView, Whop). Real Prometheus scrapes
its /metrics as job `justtrades` and the standalone exporter, which polls the same platform, as job
`justtrades-exporter`. Prometheus evaluates the repository's rules with durations shrunk 30 times. The drills
(tests/alerting/fault_drills.py) run once, in parallel where they do not disturb each other, and each test below
checks one drill for one producer through Prometheus' /api/v1/alerts.
"""

from __future__ import annotations

import time

import pytest

from tests.alerting.alert_watch import AlertWatch, DrillOutcome
from tests.alerting.drill_platform import (
    PAPER_RECORDER_TOKEN,
    TRADOVATE_RECORDER_TOKEN,
    DrillExporter,
    DrillPlatform,
    start_peers,
)
from tests.alerting.fault_drills import (
    ACCOUNTS_NEED_REAUTH,
    DRILLED_ALERTS,
    EXECUTION_FAILURES,
    EXPORTER_JOB,
    FEED_DELAYED,
    JOBS,
    PLATFORM_JOB,
    QUEUE_BACKLOG,
    STEP_TIMEOUT,
    THREAD_STOPPED,
    TRADINGVIEW_DISCONNECTED,
    WHOP_SYNC_STALE,
    WORKERS_DOWN,
    execution_status,
    run_drills,
    wait_for,
)
from tests.alerting.stack import AlertingStack

# SystemExit ends the drill's broker workers and their supervisor on purpose, and pytest reports every such end.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Exception in thread broker-:pytest.PytestUnhandledThreadExceptionWarning"
)

# Every drill group ends within about two and a half minutes: the Whop and failure alerts need 120 s of real time.
DRILLS_TIMEOUT = 240.0
BASELINE_SECONDS = 5.0
# The production default of JT_WORKER_POLL_SECONDS: the supervisor replaces dead workers once a second.
WORKER_POLL_SECONDS = 1.0

# Series that show the platform healthy and fully started, for both producers.
HEALTHY_QUERIES = (
    "up == 1",
    "justtrades_up == 1",
    "justtrades_broker_workers_alive == 10",
    "justtrades_tradingview_websocket_connected == 1",
    "justtrades_tradingview_delayed == 0",
    "justtrades_accounts_needing_reauth == 0",
    "justtrades_whop_sync_last_run_timestamp_seconds > 0",
)


def check_healthy(platform: DrillPlatform, stack: AlertingStack, watch: AlertWatch, outcome: DrillOutcome) -> None:
    """Run one signal per recorder, wait until both producers show a healthy platform, then watch for a few
    seconds that none of the drilled alerts is pending or firing."""
    for token in (PAPER_RECORDER_TOKEN, TRADOVATE_RECORDER_TOKEN):
        platform.post_signal(token)
    wait_for(lambda: (status := execution_status(platform))["queue_size"] == 0 and status["total_processed"] == 9,
             STEP_TIMEOUT, "the nine jobs of the first two signals to finish")
    assert execution_status(platform)["total_failures"] == 0

    for query in HEALTHY_QUERIES:
        wait_for(lambda: {series["metric"]["job"] for series in stack.prometheus.query(query)} >= set(JOBS),
                 STEP_TIMEOUT, f"{query} for both jobs")

    quiet = {job: True for job in JOBS}
    deadline = time.monotonic() + BASELINE_SECONDS
    while time.monotonic() < deadline:
        alerts = stack.prometheus.alerts()
        for job in JOBS:
            if any(key.matches(alert, job) for alert in alerts for key in DRILLED_ALERTS):
                quiet[job] = False
        time.sleep(0.5)
    outcome.checks["no drilled alert while healthy"] = quiet


@pytest.fixture(scope="module")
def drills(prometheus_binary, alertmanager_binary, tmp_path_factory) -> dict[str, DrillOutcome]:
    workdir = tmp_path_factory.mktemp("fault-drills")
    with start_peers() as peers:
        platform = DrillPlatform(workdir, peers, worker_poll_seconds=WORKER_POLL_SECONDS).start()
        exporter = DrillExporter(platform.url).start()
        stack = AlertingStack(prometheus_binary, alertmanager_binary, workdir,
                              {PLATFORM_JOB: platform.address, EXPORTER_JOB: exporter.address})
        try:
            stack.start()
            watch = AlertWatch(stack.prometheus, JOBS)

            baseline = DrillOutcome("healthy platform")
            try:
                check_healthy(platform, stack, watch, baseline)
            except AssertionError as error:
                baseline.error = str(error)
            outcomes = {baseline.name: baseline}
            if baseline.error is None:
                outcomes.update(run_drills(platform, watch, DRILLS_TIMEOUT))
            yield outcomes
        finally:
            stack.stop()
            exporter.stop()
            platform.stop()


def outcome_of(drills: dict[str, DrillOutcome], name: str) -> DrillOutcome:
    baseline = drills["healthy platform"]
    assert baseline.error is None, f"the platform never became healthy, so no drill ran: {baseline.error}"
    assert name in drills, f"drill {name!r} did not finish within {DRILLS_TIMEOUT:.0f} s"
    return drills[name]


@pytest.mark.parametrize("job", JOBS)
def test_healthy_platform_raises_no_drilled_alert(drills, job):
    outcome_of(drills, "healthy platform").assert_check("no drilled alert while healthy", job)


@pytest.mark.parametrize("job", JOBS)
def test_dead_workers_page_then_clear(drills, job):
    outcome = outcome_of(drills, "killed workers")

    for key in WORKERS_DOWN:
        outcome.assert_fired_and_cleared(key, job)


@pytest.mark.parametrize("job", JOBS)
def test_stalled_broker_backlog_fires_then_clears(drills, job):
    outcome = outcome_of(drills, "queue backlog")

    for key in QUEUE_BACKLOG:
        outcome.assert_fired_and_cleared(key, job)


@pytest.mark.parametrize("job", JOBS)
def test_rejected_orders_fire_failure_alerts(drills, job):
    outcome = outcome_of(drills, "broker failures")

    for key in EXECUTION_FAILURES:
        outcome.assert_fired_and_cleared(key, job)


@pytest.mark.parametrize("job", JOBS)
def test_tradingview_outage_fires_then_clears(drills, job):
    outcome = outcome_of(drills, "tradingview")

    for key in TRADINGVIEW_DISCONNECTED:
        outcome.assert_fired_and_cleared(key, job)


@pytest.mark.parametrize("job", JOBS)
def test_delayed_quotes_fire_then_clear(drills, job):
    outcome = outcome_of(drills, "tradingview")

    for key in FEED_DELAYED:
        outcome.assert_fired_and_cleared(key, job)


@pytest.mark.parametrize("job", JOBS)
def test_expired_tokens_fire_reauth_alerts(drills, job):
    outcome = outcome_of(drills, "expired tokens")

    for key in ACCOUNTS_NEED_REAUTH:
        outcome.assert_fired_and_cleared(key, job)
    outcome.assert_check("warning kept firing with one account expired", job)


@pytest.mark.parametrize("job", JOBS)
def test_stopped_whop_sync_fires_then_clears(drills, job):
    outcome = outcome_of(drills, "whop sync")

    for key in WHOP_SYNC_STALE:
        outcome.assert_fired_and_cleared(key, job)


@pytest.mark.parametrize("job", JOBS)
def test_crashed_thread_fires_then_clears(drills, job):
    outcome = outcome_of(drills, "crashed thread")

    for key in THREAD_STOPPED:
        outcome.assert_fired_and_cleared(key, job)
