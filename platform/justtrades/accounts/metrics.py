"""Prometheus families of the accounts area, built on every scrape from the JSON endpoints' snapshots.

Each function reads one snapshot, so a scrape and the matching endpoint cannot disagree, and a failure in
one area drops only that area's families.
"""

from __future__ import annotations

import datetime as dt

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily


def _gauge(name: str, documentation: str, value) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=float(value))


def dashboard_families(stats: dict):
    yield _gauge("justtrades_users", "Users in the database (dashboard-stats total_users)", stats["total_users"])
    yield _gauge("justtrades_users_approved", "Users with access (approved_users)", stats["approved_users"])
    yield _gauge("justtrades_users_affiliated", "Users who are affiliates (affiliated)", stats["affiliated"])
    yield _gauge("justtrades_recorders", "Recorders (strategies receiving webhooks)", stats["recorders"])
    yield _gauge("justtrades_strategies", "Distinct strategy names over all recorders", stats["strategies"])
    yield _gauge("justtrades_daily_pnl_usd", "PnL of all traders in the current CME session, in US dollars", stats["daily_pnl"])


def max_loss_families(status: dict):
    yield _gauge(
        "justtrades_max_loss_monitored_traders",
        "Enabled traders with a max daily loss set",
        status["monitored_traders"],
    )
    yield _gauge(
        "justtrades_max_loss_breached_traders",
        "Traders at or past their max daily loss in the current CME session",
        status["daily_loss_breach_count"],
    )


def whop_families(status: dict):
    last_run = status["last_run"]
    if last_run is not None:
        moment = dt.datetime.fromisoformat(last_run.replace("Z", "+00:00"))
        yield _gauge(
            "justtrades_whop_sync_last_run_timestamp_seconds",
            "Unix time of the last successful Whop membership sync",
            moment.timestamp(),
        )
    yield _gauge("justtrades_whop_sync_interval_seconds", "Configured Whop sync interval", status["sync_interval_seconds"])
    yield CounterMetricFamily(
        "justtrades_whop_synced", "Users created, approved or revoked by the Whop sync", value=float(status["total_synced"])
    )
    yield CounterMetricFamily(
        "justtrades_whop_resent", "Activation emails sent again by the Whop sync", value=float(status["total_resent"])
    )
    yield _gauge(
        "justtrades_whop_pending_resends",
        "Users awaiting activation who will still get a reminder",
        status["pending_resends"],
    )
    yield _gauge(
        "justtrades_whop_stuck_users",
        "Users not activated within the stuck-after period",
        len(status["stuck_users"]),
    )
