"""The contract metrics this exporter produces and the platform endpoints it reads them from.

Names, types and labels match the platform's own /metrics (the metric catalogue in docs/metrics.md lists them with
producer "both"); a test compares this table with the catalogue.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Endpoint:
    """A JSON endpoint of the platform; `params` narrows lists the exporter does not need in full.

    An `optional` endpoint is an addition of this project that platforms built from the reference lack: a 404 from
    it means the platform has no such part, so it gives no samples and counts as no error.
    """

    path: str
    params: tuple[tuple[str, str], ...] = ()
    optional: bool = False


HEALTH = Endpoint("/health")
HEALTH_DETAILED = Endpoint("/health/detailed")
STATUS = Endpoint("/status")
BROKER_EXECUTION_STATUS = Endpoint("/api/broker-execution/status")
BROKER_EXECUTION_FAILURES = Endpoint("/api/broker-execution/failures", (("limit", "100"),))
BROKER_QUEUE_STATS = Endpoint("/api/broker-queue/stats")
WEBHOOK_ACTIVITY = Endpoint("/api/webhook-activity", (("limit", "1"),))
RAW_WEBHOOKS = Endpoint("/api/raw-webhooks", (("limit", "1"),))
TRADINGVIEW_STATUS = Endpoint("/api/tradingview/status")
MARKET_DATA_STATUS = Endpoint("/api/market-data/status")
ACCOUNTS_AUTH_STATUS = Endpoint("/api/accounts/auth-status")
POSITION_MONITOR_STATUS = Endpoint("/api/position-monitor/status")
THREAD_HEALTH = Endpoint("/api/thread-health")
PAPER_TRADES_STATUS = Endpoint("/api/paper-trades/service-status")
DASHBOARD_STATS = Endpoint("/api/admin/dashboard-stats")
MAX_LOSS_MONITOR_STATUS = Endpoint("/api/admin/max-loss-monitor/status")
WHOP_SYNC_STATUS = Endpoint("/api/admin/whop-sync-status")
WEBHOOK_SPOOL = Endpoint("/api/webhook-spool", optional=True)

# Polled on every scrape, in parallel.
METRIC_ENDPOINTS = (
    HEALTH,
    HEALTH_DETAILED,
    STATUS,
    BROKER_EXECUTION_STATUS,
    BROKER_QUEUE_STATS,
    WEBHOOK_ACTIVITY,
    RAW_WEBHOOKS,
    TRADINGVIEW_STATUS,
    MARKET_DATA_STATUS,
    ACCOUNTS_AUTH_STATUS,
    POSITION_MONITOR_STATUS,
    THREAD_HEALTH,
    PAPER_TRADES_STATUS,
    DASHBOARD_STATS,
    MAX_LOSS_MONITOR_STATUS,
    WHOP_SYNC_STATUS,
    WEBHOOK_SPOOL,
)


@dataclasses.dataclass(frozen=True)
class MetricSpec:
    name: str
    type: str
    help: str
    labels: tuple[str, ...] = ()


def _gauge(name: str, help_text: str, *labels: str) -> MetricSpec:
    return MetricSpec(name, "gauge", help_text, labels)


def _counter(name: str, help_text: str, *labels: str) -> MetricSpec:
    return MetricSpec(name, "counter", help_text, labels)


CONTRACT_METRICS = (
    # Service and market.
    _gauge("justtrades_up", "1 when /health answers HTTP 200 with status ok, else 0."),
    _gauge(
        "justtrades_market_open",
        "1 while the CME Globex session is open (Sun 18:00 to Fri 17:00 New York time, daily break 17:00-18:00).",
    ),
    _gauge("justtrades_build_info", "Platform version reported by /health; the value is always 1.", "version"),
    _gauge("justtrades_database_up", "1 when the platform reaches its database (/health/detailed database.ok)."),
    _gauge("justtrades_database_pool_connections", "Database pool connections by state.", "state"),
    _gauge("justtrades_open_trades", "Open trades (/status open_trades)."),
    _gauge("justtrades_indexed_positions", "Indexed positions (/status indexed_positions)."),
    _gauge("justtrades_indexed_trades", "Indexed trades (/status indexed_trades)."),
    # Broker execution.
    _gauge("justtrades_broker_workers_alive", "Broker execution worker threads alive."),
    _gauge("justtrades_broker_workers_configured", "Broker execution worker threads configured."),
    _counter("justtrades_broker_worker_restarts_total", "Broker execution workers replaced after dying."),
    _gauge("justtrades_broker_queue_depth", "Execution jobs waiting for a broker worker."),
    _gauge(
        "justtrades_broker_queue_oldest_job_age_seconds",
        "Seconds since the oldest execution job queued or running was stored; 0 while the queue is empty.",
    ),
    _counter("justtrades_broker_executions_total", "Execution jobs processed by the broker workers."),
    _counter(
        "justtrades_broker_execution_failures_total",
        "Failed execution jobs by failure reason; unclassified when the platform reports only a total.",
        "reason",
    ),
    _gauge("justtrades_broker_execution_avg_seconds", "Average broker execution time in seconds."),
    _gauge("justtrades_webhook_workers_alive", "Webhook (fast path) worker threads alive."),
    _gauge("justtrades_http_requests_waiting", "HTTP requests received in full and waiting for a free server thread."),
    _counter("justtrades_webhooks_processed_total", "Webhooks processed by the fast webhook path."),
    _gauge("justtrades_webhook_avg_latency_seconds", "Average webhook processing latency in seconds."),
    _gauge("justtrades_traders_enabled", "Enabled traders."),
    _gauge("justtrades_trader_accounts", "Broker accounts with at least one trader."),
    _gauge("justtrades_signal_blocks_active", "Signal blocks currently active."),
    _gauge("justtrades_broker_queue_processing_rate", "Broker queue processing rate in jobs per second."),
    _gauge("justtrades_broker_queue_success_ratio", "Broker queue success ratio (0 to 1)."),
    # Webhooks.
    _counter("justtrades_webhook_signals_total", "Webhook signals by processing status.", "status"),
    _gauge("justtrades_webhook_success_ratio", "Share of webhook signals processed successfully (0 to 1)."),
    _gauge("justtrades_webhook_last_activity_timestamp_seconds", "Unix time of the newest webhook activity."),
    _counter("justtrades_raw_webhooks_total", "Raw webhook deliveries recorded before any filter."),
    _counter("justtrades_raw_webhooks_by_action_total", "Raw webhook deliveries by alert action.", "action"),
    # The local spool that keeps webhook deliveries while the database is unreachable (one per platform process).
    _gauge("justtrades_webhook_spool_depth", "Webhook deliveries waiting in the local spool for the database."),
    _gauge("justtrades_webhook_spool_bytes", "Bytes of webhook deliveries waiting in the local spool."),
    _gauge(
        "justtrades_webhook_spool_oldest_age_seconds",
        "Age of the oldest delivery waiting in the spool; 0 when it is empty.",
    ),
    _gauge(
        "justtrades_webhook_spool_failed_files",
        "Spooled deliveries moved to failed/ because they could not be replayed.",
    ),
    _counter("justtrades_webhook_spooled_total", "Webhook deliveries the platform process wrote to the spool."),
    _counter(
        "justtrades_webhook_spool_replayed_total",
        "Spooled deliveries the platform process replayed into the database.",
    ),
    _counter(
        "justtrades_webhook_spool_rejected_total",
        "Deliveries the spool could not take (full or unwritable), answered with 503.",
    ),
    # TradingView feed and market data.
    _gauge("justtrades_tradingview_websocket_connected", "1 while the TradingView WebSocket is connected."),
    _gauge("justtrades_tradingview_jwt_valid", "1 while the TradingView session JWT is valid."),
    _gauge("justtrades_tradingview_delayed", "1 while TradingView prices are delayed."),
    _gauge("justtrades_tradingview_polling_fallback_active", "1 while prices come from the polling fallback."),
    _counter("justtrades_tradingview_reconnects_total", "TradingView WebSocket reconnects."),
    _gauge(
        "justtrades_tradingview_last_message_timestamp_seconds",
        "Unix time of the last TradingView WebSocket message.",
    ),
    _gauge(
        "justtrades_price_last_update_timestamp_seconds",
        "Unix time of the last cached price update by product root.",
        "symbol",
    ),
    _gauge("justtrades_price", "Last cached price by product root.", "symbol"),
    _gauge("justtrades_market_data_tokens_available", "Market data tokens available."),
    # Tradovate connections and accounts.
    _gauge("justtrades_accounts", "Broker accounts."),
    _gauge("justtrades_accounts_needing_reauth", "Broker accounts whose token needs re-authentication."),
    _gauge("justtrades_accounts_all_valid", "1 when every broker account token is valid."),
    _gauge(
        "justtrades_account_token_earliest_expiry_timestamp_seconds",
        "Unix time when the first broker account token expires.",
    ),
    _gauge("justtrades_position_monitor_connections", "Position monitor WebSocket connections by state.", "state"),
    _gauge("justtrades_position_monitor_accounts", "Accounts watched by the position monitor."),
    _gauge(
        "justtrades_position_monitor_last_message_timestamp_seconds",
        "Unix time of the last position monitor message.",
    ),
    _counter("justtrades_position_monitor_events_total", "Position monitor events by type.", "type"),
    _counter("justtrades_position_monitor_auth_failures_total", "Position monitor authentication failures."),
    _counter("justtrades_position_monitor_stale_windows_total", "Position monitor dead-subscription detections."),
    _counter(
        "justtrades_position_monitor_account_group_errors_total",
        "Position monitor errors loading account groups.",
    ),
    _gauge("justtrades_thread_up", "1 while the background thread is running.", "thread"),
    _counter("justtrades_thread_restarts_total", "Background thread restarts.", "thread"),
    _gauge(
        "justtrades_thread_last_beat_timestamp_seconds",
        "Unix time of the background thread's last heartbeat.",
        "thread",
    ),
    _gauge("justtrades_paper_trades", "Paper trades by state.", "state"),
    _gauge("justtrades_paper_last_close_timestamp_seconds", "Unix time of the last closed paper trade."),
    # Users, loss limits and membership.
    _gauge("justtrades_users", "Users."),
    _gauge("justtrades_users_approved", "Approved users."),
    _gauge("justtrades_users_affiliated", "Affiliated users."),
    _gauge("justtrades_recorders", "Recorders."),
    _gauge("justtrades_strategies", "Strategies."),
    _gauge("justtrades_daily_pnl_usd", "Profit and loss of the trading day in US dollars."),
    _gauge("justtrades_max_loss_monitored_traders", "Traders watched by the max daily loss monitor."),
    _gauge("justtrades_max_loss_breached_traders", "Traders over their max daily loss."),
    _gauge("justtrades_whop_sync_last_run_timestamp_seconds", "Unix time of the last Whop sync run."),
    _gauge("justtrades_whop_sync_interval_seconds", "Whop sync interval in seconds."),
    _counter("justtrades_whop_synced_total", "Users synced from Whop."),
    _counter("justtrades_whop_resent_total", "Activation emails resent."),
    _gauge("justtrades_whop_pending_resends", "Users waiting for an activation email resend."),
    _gauge("justtrades_whop_stuck_users", "Users not activated after 3 days."),
)

CONTRACT_BY_NAME = {spec.name: spec for spec in CONTRACT_METRICS}
