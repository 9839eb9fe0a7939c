"""Prometheus metric families of the signal path, built on every scrape from the JSON endpoints' snapshots."""

from __future__ import annotations

import datetime as dt

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from ..webhooks.filters import BLOCK_REASONS
from . import snapshots


def gauge(name: str, documentation: str, value, labels: dict | None = None) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, documentation, labels=list(labels or {}))
    family.add_metric(list((labels or {}).values()), float(value))
    return family


def counter(name: str, documentation: str, value, labels: dict | None = None) -> CounterMetricFamily:
    family = CounterMetricFamily(name, documentation, labels=list(labels or {}))
    family.add_metric(list((labels or {}).values()), float(value))
    return family


def timestamp(moment: dt.datetime) -> float:
    return moment.timestamp()


def signal_path_families(runtime):
    """Yield the status, broker-execution and webhook families; names and meanings are in docs/metrics.md."""
    yield from _status_families(runtime)
    yield from _execution_families(runtime)
    yield from _webhook_families(runtime)


def service_families(runtime):
    """Yield the health, build and database families; their only statement is the health check's SELECT 1."""
    document, healthy = snapshots.health(runtime)
    yield gauge("justtrades_up", "1 when /health answers 200 (the platform and its database work).", healthy)
    yield gauge("justtrades_market_open", "1 while the CME Globex futures session is open.", document["market_open"])

    info = GaugeMetricFamily("justtrades_build_info", "Version of the running platform.", labels=["version"])
    info.add_metric([document["version"]], 1)
    yield info

    detailed_pool = snapshots._pool_status(runtime.engine.pool)
    yield gauge("justtrades_database_up", "1 when the database answers a trivial query.", healthy)
    pool = GaugeMetricFamily(
        "justtrades_database_pool_connections", "Database connections of this process by state.", labels=["state"]
    )
    for state in ("checked_out", "idle", "overflow"):
        pool.add_metric([state], detailed_pool[state])
    yield pool


def _status_families(runtime):
    try:
        status = snapshots.system_status(runtime)
    except Exception:
        # Without the database these counts cannot be read; leave their series out rather than guess.
        return
    yield gauge("justtrades_open_trades", "Positions with a non-zero net position.", status["open_trades"])
    yield gauge("justtrades_indexed_positions", "Positions the platform tracks, flat ones included.", status["indexed_positions"])
    yield gauge("justtrades_indexed_trades", "Fills the platform has recorded.", status["indexed_trades"])


def _execution_families(runtime):
    try:
        document = snapshots.broker_execution(runtime)
        queue_stats = snapshots.broker_queue_stats(runtime)
    except Exception:
        # Without the database these snapshots cannot be read; leave their series out rather than guess.
        return
    broker = document["broker_execution"]
    fast = document["fast_webhook"]

    yield gauge("justtrades_broker_workers_alive", "Broker worker threads alive.", broker["workers_alive"])
    yield gauge("justtrades_broker_workers_configured", "Broker worker threads configured.", broker["workers_configured"])
    yield counter("justtrades_broker_worker_restarts", "Broker workers that died and were replaced.", broker["worker_restarts"])
    yield gauge("justtrades_broker_queue_depth", "Execution jobs queued or running.", broker["queue_size"])
    yield gauge("justtrades_broker_queue_oldest_job_age_seconds",
                "Seconds since the oldest execution job queued or running was stored; 0 while the queue is empty.",
                broker["oldest_job_age_seconds"])
    yield counter("justtrades_broker_executions", "Execution jobs finished, successfully or not.", broker["total_processed"])

    failures = CounterMetricFamily(
        "justtrades_broker_execution_failures", "Failed execution attempts by failure reason.", labels=["reason"]
    )
    for reason, count in broker["failures_by_reason"].items():
        failures.add_metric([reason], count)
    yield failures

    yield gauge("justtrades_broker_execution_avg_seconds", "Mean time of the last 500 broker calls.",
                broker["avg_execution_ms"] / 1000)
    yield gauge("justtrades_webhook_workers_alive", "HTTP server threads alive to serve webhooks.", fast["workers_alive"])
    yield gauge("justtrades_http_requests_waiting", "HTTP requests received in full and waiting for a free server "
                "thread.", fast["requests_waiting"])
    yield counter("justtrades_webhooks_processed", "Webhook requests this process has answered.", fast["total_processed"])
    yield gauge("justtrades_webhook_avg_latency_seconds", "Mean response time of the last 500 webhook requests.",
                fast["avg_latency_ms"] / 1000)
    yield gauge("justtrades_traders_enabled", "Enabled traders over all recorders.", document["traders"]["total_enabled"])
    yield gauge("justtrades_trader_accounts", "Accounts that have at least one enabled trader.",
                document["traders"]["total_accounts"])
    yield gauge("justtrades_signal_blocks_active", "Active signal blocks, loss-limit blocks included.",
                len(document["signal_blocking"]["currently_blocked"]))
    yield gauge("justtrades_broker_queue_processing_rate", "Execution jobs finished per second over the last minute.",
                queue_stats["processing_rate"])
    yield gauge("justtrades_broker_queue_success_ratio", "Share of the last 500 finished jobs that placed their order.",
                queue_stats["success_rate"] / 100)


def _webhook_families(runtime):
    try:
        activity = snapshots.webhook_activity(runtime, limit=1)
        raw = snapshots.raw_webhooks(runtime, limit=1)
    except Exception:
        return
    stats = activity["stats"]

    signals = CounterMetricFamily(
        "justtrades_webhook_signals", "Signals for known recorders by processing status, since the database was created.",
        labels=["status"],
    )
    for status in ("success", "failed", "blocked"):
        signals.add_metric([status], stats[status])
    yield signals
    yield gauge("justtrades_webhook_success_ratio", "Share of all recorded signals that created jobs.",
                stats["success_rate"] / 100)

    if activity["activity"]:
        newest = dt.datetime.fromisoformat(activity["activity"][0]["timestamp"].replace("Z", "+00:00"))
        yield gauge("justtrades_webhook_last_activity_timestamp_seconds", "Time of the newest webhook activity.",
                    timestamp(newest))

    yield counter("justtrades_raw_webhooks", "Webhook deliveries recorded raw, before any filter.", raw["total"])
    by_action = CounterMetricFamily(
        "justtrades_raw_webhooks_by_action", "Raw webhook deliveries by parsed action.", labels=["action"]
    )
    for action, count in raw["action_breakdown"].items():
        by_action.add_metric([action], count)
    yield by_action

    webhook = runtime.webhook_stats.snapshot()
    requests = CounterMetricFamily(
        "justtrades_webhook_requests", "Webhook responses of this process by outcome.", labels=["outcome"]
    )
    for outcome, count in webhook["by_outcome"].items():
        requests.add_metric([outcome], count)
    yield requests

    blocked = CounterMetricFamily(
        "justtrades_signals_blocked", "Signals this process blocked, by reason.", labels=["reason"]
    )
    for reason in BLOCK_REASONS:
        blocked.add_metric([reason], webhook["blocked_by_reason"].get(reason, 0))
    yield blocked
