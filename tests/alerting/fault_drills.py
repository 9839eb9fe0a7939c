"""Fault drills: each causes a real fault in the running platform, waits until its alerts fire for both producer
jobs, removes the fault and waits until they clear.

The live stack runs the rules with durations shrunk 30 times (tests/alerting/stack.py), so `for: 5m` is 10 s and a
[2m] window 4 s. Thresholds keep their values, so a threshold that is an age (the Whop sync's 120 s) takes its real
time. `run_drills` runs the drills that do not disturb each other at the same time. The ones that share the worker
pool and the Tradovate account run one after the other.
"""

from __future__ import annotations

import concurrent.futures
import logging
import threading
import time
import traceback
from typing import Callable

import requests

from justtrades.daemons import ThreadContext
from justtrades.execution.jobs import JobStore
from tests.alerting.alert_watch import AlertKey, AlertWatch, DrillOutcome
from tests.alerting.drill_platform import (
    ORDERS_ACCOUNT,
    PAPER_RECORDER_TOKEN,
    STANDBY_ACCOUNT,
    TRADOVATE_RECORDER_TOKEN,
    DrillPlatform,
)
from tests.peers.tradovate_rest import Fault

logger = logging.getLogger(__name__)

PLATFORM_JOB = "justtrades"
EXPORTER_JOB = "justtrades-exporter"
JOBS = (PLATFORM_JOB, EXPORTER_JOB)

# The longest scaled wait before a drilled alert fires is the 4 s window plus `for: 10m` scaled to 20 s. Prometheus
# adds up to one evaluation, and the exporter's scrapes can miss a sample while the platform is busy.
FIRE_TIMEOUT = 60.0
CLEAR_TIMEOUT = 30.0
STEP_TIMEOUT = 30.0

# The failure alerts count the last hour, scaled to 120 s, so they clear 120 s after the last failure.
REJECTED_ORDERS = 11
FAILURE_WINDOW_SECONDS = 120.0
# A Tradovate order held this long keeps the 60 jobs queued behind it until both backlog alerts have fired. Their
# age thresholds (10 s and 30 s) are not scaled: the critical rule needs the oldest job older than 30 s for the
# scaled 4 s window and `for`, about 40 s after the order is held.
STALL_SECONDS = 55.0
BACKLOG_SIGNALS = 60
# The Whop alert compares the age of the last sync with 120 s, a threshold that is not scaled.
WHOP_STALE_SECONDS = 120.0
DRILL_THREAD = "fault-drill"


def alert_keys(alert: str, *severities: str, **labels: str) -> list[AlertKey]:
    return [AlertKey(alert, severity, tuple(sorted(labels.items()))) for severity in severities]


WORKERS_DOWN = alert_keys("JustTradesBrokerWorkersDown", "critical", "warning")
QUEUE_BACKLOG = alert_keys("JustTradesBrokerQueueBacklog", "critical", "warning")
EXECUTION_FAILURES = alert_keys("JustTradesBrokerExecutionFailures", "critical", "warning")
TRADINGVIEW_DISCONNECTED = alert_keys("JustTradesTradingViewDisconnected", "critical", "warning")
FEED_DELAYED = alert_keys("JustTradesTradingViewFeedDelayed", "warning")
ACCOUNTS_NEED_REAUTH = alert_keys("JustTradesAccountsNeedReauth", "critical", "warning")
WHOP_SYNC_STALE = alert_keys("JustTradesWhopSyncStale", "warning")
THREAD_STOPPED = alert_keys("JustTradesThreadStopped", "critical", thread=DRILL_THREAD)
# Every drilled rule, without further labels, so that the healthy baseline covers every thread.
DRILLED_ALERTS = tuple(sorted(
    {AlertKey(key.alert, key.severity) for key in (
        WORKERS_DOWN + QUEUE_BACKLOG + EXECUTION_FAILURES + TRADINGVIEW_DISCONNECTED + FEED_DELAYED
        + ACCOUNTS_NEED_REAUTH + WHOP_SYNC_STALE + THREAD_STOPPED
    )},
    key=str,
))


def wait_for(condition: Callable[[], object], timeout: float, description: str, interval: float = 0.2):
    """Poll `condition` until it returns a truthy value and return it; raise AssertionError after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {description}")
        time.sleep(interval)


def execution_status(platform: DrillPlatform) -> dict:
    return platform.get_json("/api/broker-execution/status")["broker_execution"]


# --- the drills ---------------------------------------------------------------------------------------------------


def drill_broker_failures(platform: DrillPlatform, watch: AlertWatch, outcome: DrillOutcome,
                          failures_recorded: threading.Event) -> None:
    """Tradovate rejects 11 orders (failureReason) and rate-limits one (429). The failure alerts fire at once and
    clear when the failures leave the alerts' one-hour window, scaled to 120 s."""
    records = [outcome.record(key) for key in EXECUTION_FAILURES]
    peer = platform.peers.tradovate
    try:
        failures_before = execution_status(platform)["total_failures"]
        started = time.monotonic()
        peer.inject("/order/placeorder", Fault.order_failure("UnknownReason", "Insufficient buying power"),
                    times=REJECTED_ORDERS)
        peer.inject("/order/placeorder", Fault.rate_limit(retry_after=2))
        for _ in range(REJECTED_ORDERS + 1):
            platform.post_signal(TRADOVATE_RECORDER_TOKEN)

        # The rate-limited order is retried after its Retry-After and goes through, which empties the queue.
        expected = failures_before + REJECTED_ORDERS + 1
        wait_for(lambda: (status := execution_status(platform))["queue_size"] == 0
                 and status["total_failures"] >= expected, STEP_TIMEOUT,
                 f"{REJECTED_ORDERS + 1} recorded failures and an empty execution queue")
    finally:
        failures_recorded.set()
    last_failure = time.monotonic()

    watch.wait_firing(records, started, FIRE_TIMEOUT)
    watch.wait_cleared(records, last_failure, FAILURE_WINDOW_SECONDS + CLEAR_TIMEOUT)


def drill_queue_backlog(platform: DrillPlatform, watch: AlertWatch, outcome: DrillOutcome) -> None:
    """Tradovate delays one order by 55 s while 60 signals arrive for the same account and contract. Their jobs run
    one after the other, so they queue behind the delayed one, and the queue drains once it is through."""
    records = [outcome.record(key) for key in QUEUE_BACKLOG]
    platform.peers.tradovate.inject("/order/placeorder", Fault.delay(STALL_SECONDS))

    started = time.monotonic()
    for _ in range(BACKLOG_SIGNALS):
        platform.post_signal(TRADOVATE_RECORDER_TOKEN)
    stall_ends = started + STALL_SECONDS

    # Both alerts must fire while the order is held: afterwards nothing keeps the queue long.
    watch.wait_firing(records, started, STALL_SECONDS)
    time.sleep(max(0.0, stall_ends - time.monotonic()))
    watch.wait_cleared(records, stall_ends, CLEAR_TIMEOUT)
    wait_for(lambda: execution_status(platform)["queue_size"] == 0, STEP_TIMEOUT, "the backlog to drain")


def stop_worker_supervisor(platform: DrillPlatform) -> None:
    """End the worker pool's supervisor thread: its next poll of the job table raises SystemExit.

    The thread ends between two supervision passes, as after any uncaught exception, and no worker is replaced
    until the pool is started again.
    """
    supervisor = next(
        (thread for thread in threading.enumerate() if thread.name == "broker-supervisor" and thread.is_alive()), None
    )
    if supervisor is None:
        raise AssertionError("no live broker-supervisor thread; the worker pool has not started")
    jobs = platform.runtime.jobs

    def due_jobs_or_exit(*args, **kwargs):
        if threading.current_thread() is supervisor:
            raise SystemExit("fault drill: the broker worker supervisor exits")
        return JobStore.due_jobs(jobs, *args, **kwargs)

    jobs.due_jobs = due_jobs_or_exit
    try:
        supervisor.join(platform.runtime.settings.worker_poll_seconds + 5)
    finally:
        del jobs.due_jobs
    if supervisor.is_alive():
        raise AssertionError("the broker-supervisor thread did not end after its job-table poll raised SystemExit")


def drill_killed_workers(platform: DrillPlatform, watch: AlertWatch, outcome: DrillOutcome) -> None:
    """With the supervisor gone, the paper broker raises SystemExit in 8 of the 10 workers, and they stay dead.
    Starting the pool again, as a service restart does, clears the alerts.

    A crash loop under a running supervisor would only make the alert flap: a sample taken just after the
    supervisor replaced the workers reads 10 alive (docs/alerts.md, "Fault drills").
    """
    records = [outcome.record(key) for key in WORKERS_DOWN]
    workers = platform.runtime.workers
    stop_worker_supervisor(platform)

    platform.paper_broker.armed.set()
    try:
        started = time.monotonic()
        # One signal fans out to eight paper accounts: eight jobs in eight lanes, each taken by its own worker.
        platform.post_signal(PAPER_RECORDER_TOKEN)
        wait_for(lambda: workers.workers_alive() <= 2, STEP_TIMEOUT, "eight broker workers to die")
        watch.wait_firing(records, started, FIRE_TIMEOUT)
    finally:
        platform.paper_broker.armed.clear()
        workers.start()
    restarted = time.monotonic()

    watch.wait_cleared(records, restarted, CLEAR_TIMEOUT)
    wait_for(lambda: execution_status(platform)["queue_size"] == 0, STEP_TIMEOUT,
             "the jobs of the dead workers to run after the restart")


def reauthenticate(platform: DrillPlatform, account_name: str) -> None:
    """Store a new token on the account as its owner's OAuth login does, and wait until the platform reports it.

    NOTE: a token refresh pass that read the account before the login marks it expired again after it (the
    daemon's update does not check that the token is still the one it read), so the login is repeated then.
    """
    for _ in range(3):
        platform.store_oauth_token(account_name)
        time.sleep(2.5)  # more than two refresh passes (1 s each)
        needing = platform.get_json("/api/accounts/auth-status")["accounts_needing_reauth"]
        if account_name not in {account["name"] for account in needing}:
            return
        logger.warning("account %s was marked expired again right after its re-authentication; repeating it",
                       account_name)
    raise AssertionError(f"account {account_name!r} still needs re-authentication after three OAuth logins")


def drill_expired_tokens(platform: DrillPlatform, watch: AlertWatch, outcome: DrillOutcome) -> None:
    """Tradovate ends every session, so no token can be renewed and both accounts need re-authentication. One owner
    re-authenticates, which clears the critical while the warning stays, then the other, which clears the warning."""
    critical, warning = (outcome.record(key) for key in ACCOUNTS_NEED_REAUTH)
    expired = [STANDBY_ACCOUNT, ORDERS_ACCOUNT]
    try:
        started = time.monotonic()
        platform.peers.tradovate.expire_tokens()
        watch.wait_firing([critical, warning], started, FIRE_TIMEOUT)

        partly_fixed = time.monotonic()
        reauthenticate(platform, expired.pop(0))
        watch.wait_cleared([critical], partly_fixed, CLEAR_TIMEOUT)
        outcome.checks["warning kept firing with one account expired"] = {
            job: watch.is_firing(warning.key, job) for job in JOBS
        }
    finally:
        # The teardown and any later drill need working accounts, whatever failed above.
        fixed = time.monotonic()
        for name in expired:
            reauthenticate(platform, name)
    watch.wait_cleared([warning], fixed, CLEAR_TIMEOUT)


def drill_tradingview(platform: DrillPlatform, watch: AlertWatch, outcome: DrillOutcome) -> None:
    """The TradingView socket server stops, then comes back sending delayed quotes, then real-time ones again."""
    disconnected = [outcome.record(key) for key in TRADINGVIEW_DISCONNECTED]
    delayed = [outcome.record(key) for key in FEED_DELAYED]
    peer = platform.peers.tradingview

    started = time.monotonic()
    peer.stop_websocket()
    try:
        watch.wait_firing(disconnected, started, FIRE_TIMEOUT)
    finally:
        peer.set_mode("delayed")
        peer.start_websocket()
    reconnected = time.monotonic()
    watch.wait_cleared(disconnected, reconnected, CLEAR_TIMEOUT)

    try:
        watch.wait_firing(delayed, reconnected, FIRE_TIMEOUT)
    finally:
        peer.set_mode("normal")
        # The operator's fix: force a reconnect, which subscribes again and gets real-time quotes.
        response = requests.post(f"{platform.url}/api/tradingview/refresh", timeout=10)
    streaming = time.monotonic()
    assert response.status_code == 200, (
        f"POST /api/tradingview/refresh returned {response.status_code}: {response.text}"
    )
    watch.wait_cleared(delayed, streaming, CLEAR_TIMEOUT)


def drill_whop_sync(platform: DrillPlatform, watch: AlertWatch, outcome: DrillOutcome) -> None:
    """The Whop API stops responding, so no sync completes, and the alert fires once the last sync is 120 s old."""
    records = [outcome.record(key) for key in WHOP_SYNC_STALE]
    peer = platform.peers.whop
    wait_for(lambda: platform.get_json("/api/admin/whop-sync-status")["last_run"], STEP_TIMEOUT, "a first Whop sync")

    started = time.monotonic()
    peer.stop_answering()
    try:
        watch.wait_firing(records, started, WHOP_STALE_SECONDS + FIRE_TIMEOUT)
    finally:
        peer.resume()
    resumed = time.monotonic()
    watch.wait_cleared(records, resumed, CLEAR_TIMEOUT)


def _crash(context: ThreadContext) -> None:
    raise RuntimeError(f"fault drill: thread {context.name} fails at every start")


def _idle(context: ThreadContext) -> None:
    while not context.wait(0.5):
        context.beat()


def drill_crashed_thread(platform: DrillPlatform, watch: AlertWatch, outcome: DrillOutcome) -> None:
    """A daemon whose target raises, registered with the restart policy "never", stays stopped. Replacing it with a
    working target clears the alert."""
    records = [outcome.record(key) for key in THREAD_STOPPED]
    threads = platform.runtime.threads

    started = time.monotonic()
    threads.register(DRILL_THREAD, _crash, restart="never")
    try:
        watch.wait_firing(records, started, FIRE_TIMEOUT)
    finally:
        threads.unregister(DRILL_THREAD)
        threads.register(DRILL_THREAD, _idle, restart="never")
    replaced = time.monotonic()
    watch.wait_cleared(records, replaced, CLEAR_TIMEOUT)


# --- running them -------------------------------------------------------------------------------------------------


def run_drill(
    name: str, drill: Callable[..., None], platform: DrillPlatform, watch: AlertWatch, *extra
) -> DrillOutcome:
    """Run one drill and return its outcome; an exception ends the drill and is kept as its error."""
    outcome = DrillOutcome(name)
    started = time.monotonic()
    logger.info("fault drill %r started", name)
    try:
        drill(platform, watch, outcome, *extra)
    except Exception as error:  # noqa: BLE001 - the test of this drill reports it
        outcome.error = "".join(traceback.format_exception_only(error)).strip()
        logger.exception("fault drill %r failed", name)
    logger.info("fault drill %r ended after %.1f s", name, time.monotonic() - started)
    for record in outcome.records.values():
        logger.info("fault drill %r: %s fired after %s s, cleared after %s s", name, record.key, record.fired_after,
                    record.cleared_after)
    return outcome


def run_drills(platform: DrillPlatform, watch: AlertWatch, timeout: float) -> dict[str, DrillOutcome]:
    """Run every drill, those that do not disturb each other at the same time, and return the outcomes by name.

    The drills that use the worker pool or the Tradovate account run one after the other, after the broker failures
    have been recorded. Their alerts read the same queue and workers. Any further failed order would restart the
    120 s countdown of the failure alerts.
    """
    failures_recorded = threading.Event()

    def execution_drills() -> list[DrillOutcome]:
        failures_recorded.wait(STEP_TIMEOUT + 10)
        return [
            run_drill("queue backlog", drill_queue_backlog, platform, watch),
            run_drill("killed workers", drill_killed_workers, platform, watch),
            run_drill("expired tokens", drill_expired_tokens, platform, watch),
        ]

    pool = concurrent.futures.ThreadPoolExecutor(max_workers=5, thread_name_prefix="fault-drill")
    futures = [
        pool.submit(run_drill, "broker failures", drill_broker_failures, platform, watch, failures_recorded),
        pool.submit(execution_drills),
        pool.submit(run_drill, "tradingview", drill_tradingview, platform, watch),
        pool.submit(run_drill, "whop sync", drill_whop_sync, platform, watch),
        pool.submit(run_drill, "crashed thread", drill_crashed_thread, platform, watch),
    ]
    done, not_done = concurrent.futures.wait(futures, timeout=timeout)
    pool.shutdown(wait=False, cancel_futures=True)

    outcomes: dict[str, DrillOutcome] = {}
    for future in done:
        result = future.result()
        for outcome in result if isinstance(result, list) else [result]:
            outcomes[outcome.name] = outcome
    if not_done:
        logger.error("%d drill group(s) did not finish within %.0f s", len(not_done), timeout)
    return outcomes
