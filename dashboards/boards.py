"""The five Just Trades dashboards: which panels each shows and the PromQL behind them.

Both producers of the metric contract (the platform's own /metrics, job `justtrades`, and the standalone
exporter, job `justtrades-exporter`) can be selected at once. Panels therefore aggregate `by (job)` or per
instance rather than across jobs, so the same platform seen through both producers is never counted twice.
Counters that the platform keeps in its database (webhook signals, raw deliveries) report the same value
from every replica, so their rates are combined with `max`, not `sum`.
"""

from __future__ import annotations

from grafana_model import (
    BLUE, GREEN, OPEN_CLOSED, ORANGE, RED, UP_DOWN, YES_NO_BAD_WHEN_NO, YES_NO_BAD_WHEN_YES, Target, age,
    dashboard, dashboard_link, quantile, rate, row, sel, stat, state_timeline, steps, table, timeseries,
)

UID_OVERVIEW = "jt-overview"
UID_BROKER = "jt-broker-execution"
UID_WEBHOOKS = "jt-webhooks"
UID_MARKET = "jt-market-data"
UID_ACCOUNTS = "jt-accounts"

TITLES = {
    UID_OVERVIEW: "Just Trades / Overview",
    UID_BROKER: "Just Trades / Broker execution",
    UID_WEBHOOKS: "Just Trades / Webhooks",
    UID_MARKET: "Just Trades / Market data and connections",
    UID_ACCOUNTS: "Just Trades / Accounts and membership",
}

PER_JOB = "{{job}}"
PER_INSTANCE = "{{instance}}"


def alerts(extra: str = "") -> str:
    """Return a selector of Prometheus' ALERTS series for the selected jobs and instances.

    Rules that aggregate over the replicas of a job (`max by (job)`) produce alerts without an instance label.
    The empty alternative in the instance regex keeps those alerts on every instance selection. The always-firing
    heartbeat alert (severity none) is left out.
    """
    matchers = 'job=~"$job", instance=~"$instance|", severity!="none"'
    return f"ALERTS{{{matchers}, {extra}}}" if extra else f"ALERTS{{{matchers}}}"


def link(uid: str) -> list[dict]:
    return [dashboard_link(uid, TITLES[uid])]


# ----------------------------------------------------------------------------------------------------------
# Overview: one stat per alert condition, coloured at the alert thresholds, and the firing alerts.


def overview() -> dict:
    panels = [
        row("Alerts"),
        stat("Alerts firing", "Number of alerts Prometheus reports as firing for the selected jobs and instances "
             "(the ALERTS series). The table on the right lists them.", "short",
             [Target("sum(" + alerts('alertstate="firing"') + ") or vector(0)")],
             thresholds=steps((None, GREEN), (1, RED)), width=4, height=7),
        table("Firing and pending alerts", "Every alert Prometheus evaluates as pending or firing, from its "
              "ALERTS series, with the labels that say where. Alertmanager decides who gets paged.", "none",
              [Target(alerts(), instant=True, table=True)],
              hidden_columns=["Time", "Value", "__name__"], width=20, height=7),

        row("Service"),
        *_service_stats(),
        row("Broker execution"),
        *_broker_stats(),
        row("Webhooks"),
        *_webhook_stats(),
        row("TradingView feed"),
        *_feed_stats(),
        row("Accounts, threads and membership"),
        *_account_stats(),
    ]
    return dashboard(
        UID_OVERVIEW, TITLES[UID_OVERVIEW],
        "Every alert condition of the Just Trades platform at a glance: each stat is coloured at the alert "
        "thresholds (orange warning, red critical) and links to the dashboard that explains it.",
        panels,
    )


def _service_stats() -> list[dict]:
    return [
        stat("Scrape targets up", "Prometheus' own `up` series: 1 when the last scrape of the platform or the "
             "exporter succeeded. The lowest value per job is shown.", "none",
             [Target(f"min by (job) ({sel('up')})", PER_JOB)],
             thresholds=steps((None, RED), (1, GREEN)), mappings=UP_DOWN),
        stat("Platform health", "/health answers 200 with status ok (justtrades_up); the lowest value over the "
             "replicas is shown. Critical when any replica is down.", "none",
             [Target(f"min by (job) ({sel('justtrades_up')})", PER_JOB)],
             thresholds=steps((None, RED), (1, GREEN)), mappings=UP_DOWN, links=link(UID_MARKET)),
        stat("Database", "The platform's database answers (justtrades_database_up, from /health/detailed).",
             "none", [Target(f"min by (job) ({sel('justtrades_database_up')})", PER_JOB)],
             thresholds=steps((None, RED), (1, GREEN)), mappings=UP_DOWN, links=link(UID_MARKET)),
        stat("CME session", "Whether the CME Globex futures session is open now (Sunday 18:00 to Friday 17:00 "
             "New York time, daily break 17:00 to 18:00). Several alerts only apply while it is open.", "none",
             [Target(f"max by (job) ({sel('justtrades_market_open')})", PER_JOB)],
             thresholds=steps((None, BLUE)), mappings=OPEN_CLOSED),
    ]


def _broker_stats() -> list[dict]:
    return [
        stat("Broker workers alive", "Live broker worker threads on the replica with the fewest. Warning below "
             "10, critical below 5: orders queue up without workers.", "short",
             [Target(f"min by (job) ({sel('justtrades_broker_workers_alive')})", PER_JOB)],
             thresholds=steps((None, RED), (5, ORANGE), (10, GREEN)), links=link(UID_BROKER)),
        stat("Broker queue depth", "Execution jobs waiting on the replica with the deepest queue. Warning above "
             "10, critical above 50 during market hours once the oldest job is older than 10 s (30 s); any job "
             "waiting outside market hours is stale.",
             "short", [Target(f"max by (job) ({sel('justtrades_broker_queue_depth')})", PER_JOB)],
             thresholds=steps((None, GREEN), (11, ORANGE), (51, RED)), links=link(UID_BROKER)),
        stat("Execution failures", "Failed broker executions per minute over the rate interval, all reasons "
             "and replicas. The alert warns on any failure in the last hour and is critical above 10 an hour.",
             "cpm", [Target(f"sum by (job) ({rate('justtrades_broker_execution_failures_total')}) * 60",
                            PER_JOB)],
             thresholds=steps((None, GREEN), (0.001, ORANGE), (10 / 60, RED)), links=link(UID_BROKER)),
        stat("Average broker call", "Average time of a broker call per job as the platform reports it "
             "(avg_execution_ms), on the slowest replica. No alert rule watches it; the colours mark 1 s and 3 s.",
             "s",
             [Target(f"max by (job) ({sel('justtrades_broker_execution_avg_seconds')})", PER_JOB)],
             thresholds=steps((None, GREEN), (1, ORANGE), (3, RED)), links=link(UID_BROKER)),
    ]


def _webhook_stats() -> list[dict]:
    return [
        stat("Webhook success rate", "Share of recorded signals that succeeded (stats.success_rate of "
             "/api/webhook-activity). Warning below 95 %, critical below 80 %.", "percentunit",
             [Target(f"min by (job) ({sel('justtrades_webhook_success_ratio')})", PER_JOB)],
             thresholds=steps((None, RED), (0.80, ORANGE), (0.95, GREEN)), links=link(UID_WEBHOOKS)),
        stat("Webhook latency", "Average webhook processing latency on the slowest replica (fast_webhook."
             "avg_latency_ms). Warning above 100 ms, critical above 500 ms; TradingView drops a delivery "
             "after 3 s.", "s",
             [Target(f"max by (job) ({sel('justtrades_webhook_avg_latency_seconds')})", PER_JOB)],
             thresholds=steps((None, GREEN), (0.1, ORANGE), (0.5, RED)), links=link(UID_WEBHOOKS)),
        stat("Last webhook", "Time since the newest recorded webhook signal. The alert warns after 2 hours "
             "without a signal while the market is open: TradingView alerts may have stopped.", "s",
             [Target(age("justtrades_webhook_last_activity_timestamp_seconds"), PER_JOB)],
             thresholds=steps((None, GREEN), (7200, ORANGE)), links=link(UID_WEBHOOKS)),
        stat("Blocked signals", "Signals blocked by filters per minute (time windows, cooldown, signal blocks, "
             "disabled recorders or traders, loss limits). The alert warns at 10 or more in an hour: the "
             "filter settings need a look.",
             "cpm",
             [Target("max by (job) (" + rate("justtrades_webhook_signals_total", 'status="blocked"') + ") * 60",
                     PER_JOB)],
             thresholds=steps((None, GREEN), (10 / 60, ORANGE)), links=link(UID_WEBHOOKS)),
    ]


def _feed_stats() -> list[dict]:
    return [
        stat("TradingView WebSocket", "The TradingView price WebSocket is connected. Warning when "
             "disconnected (the platform polls instead), critical after 5 minutes.", "none",
             [Target(f"min by (job) ({sel('justtrades_tradingview_websocket_connected')})", PER_JOB)],
             thresholds=steps((None, RED), (1, GREEN)), mappings=UP_DOWN, links=link(UID_MARKET)),
        stat("TradingView JWT", "The TradingView session token is valid. Without it prices arrive 10 to 15 "
             "minutes late; warning at once, critical after an hour.", "none",
             [Target(f"min by (job) ({sel('justtrades_tradingview_jwt_valid')})", PER_JOB)],
             thresholds=steps((None, RED), (1, GREEN)), mappings=YES_NO_BAD_WHEN_NO, links=link(UID_MARKET)),
        stat("Delayed prices", "The feed is in delayed mode (prices 10 to 15 minutes old).", "none",
             [Target(f"max by (job) ({sel('justtrades_tradingview_delayed')})", PER_JOB)],
             thresholds=steps((None, GREEN), (1, ORANGE)), mappings=YES_NO_BAD_WHEN_YES, links=link(UID_MARKET)),
        stat("Oldest price", "Age of the stalest cached price over all symbols. During market hours a price "
             "older than 60 s means a stale feed, older than 15 minutes a feed failure.", "s",
             [Target(f"time() - min by (job) ({sel('justtrades_price_last_update_timestamp_seconds')})",
                     PER_JOB)],
             thresholds=steps((None, GREEN), (60, ORANGE), (900, RED)), links=link(UID_MARKET)),
    ]


def _account_stats() -> list[dict]:
    return [
        stat("Accounts needing re-auth", "Broker accounts whose Tradovate token expired; they cannot trade "
             "until the user re-authenticates. Critical when no account is valid.", "short",
             [Target(f"max by (job) ({sel('justtrades_accounts_needing_reauth')})", PER_JOB)],
             thresholds=steps((None, GREEN), (1, ORANGE)), links=link(UID_ACCOUNTS)),
        stat("Stopped threads", "Background threads (feeds, monitors, daemons) that are not running, on all "
             "replicas together. Any stopped thread needs a restart.", "short",
             [Target(f"sum by (job) (1 - {sel('justtrades_thread_up')})", PER_JOB)],
             thresholds=steps((None, GREEN), (1, RED)), links=link(UID_MARKET)),
        stat("Loss-limit breaches", "Traders over their maximum daily loss today; the platform blocks their "
             "signals.", "short",
             [Target(f"max by (job) ({sel('justtrades_max_loss_breached_traders')})", PER_JOB)],
             thresholds=steps((None, GREEN), (1, ORANGE)), links=link(UID_ACCOUNTS)),
        stat("Whop sync age", "Time since the Whop membership sync last ran. Warning above 2 minutes, "
             "critical above 5 (the daemon stopped).", "s",
             [Target(age("justtrades_whop_sync_last_run_timestamp_seconds"), PER_JOB)],
             thresholds=steps((None, GREEN), (120, ORANGE), (300, RED)), links=link(UID_ACCOUNTS)),
        stat("Whop stuck users", "Users who have not activated for 3 days or more. Warning above 0, critical "
             "above 5.", "short",
             [Target(f"max by (job) ({sel('justtrades_whop_stuck_users')})", PER_JOB)],
             thresholds=steps((None, GREEN), (1, ORANGE), (6, RED)), links=link(UID_ACCOUNTS)),
        stat("Whop pending resends", "Activation e-mails waiting to be re-sent. Above 10, check e-mail "
             "deliverability.", "short",
             [Target(f"max by (job) ({sel('justtrades_whop_pending_resends')})", PER_JOB)],
             thresholds=steps((None, GREEN), (11, ORANGE)), links=link(UID_ACCOUNTS)),
    ]


# ----------------------------------------------------------------------------------------------------------
# Broker execution: the worker pool, the queue, latency from the histograms, failures by reason.


def broker_execution() -> dict:
    broker_call = "justtrades_broker_execution_duration_seconds"
    signal_to_order = "justtrades_signal_to_order_seconds"
    panels = [
        row("Workers and queue"),
        timeseries("Broker workers", "Live broker worker threads per replica against the configured pool size. "
                   "Fewer alive than configured means workers died and were not replaced; the alert warns "
                   "below 10 and is critical below 5.", "short",
                   [Target(sel("justtrades_broker_workers_alive"), "{{instance}} alive"),
                    Target(sel("justtrades_broker_workers_configured"), "{{instance}} configured")],
                   thresholds=steps((None, RED), (5, ORANGE), (10, GREEN))),
        timeseries("Queue depth", "Execution jobs waiting per replica. Warning above 10, critical above 50 "
                   "during market hours (a backlog or a deadlock), unless the oldest job is younger than 10 s "
                   "(30 s for critical); outside market hours any waiting job is stale.", "short",
                   [Target(sel("justtrades_broker_queue_depth"), PER_INSTANCE)],
                   thresholds=steps((None, GREEN), (11, ORANGE), (51, RED))),
        timeseries("Oldest queued job", "Age of the oldest job queued or running, per replica; 0 while the queue "
                   "is empty. Under steady traffic it stays within a few seconds however deep the queue; a line "
                   "that keeps rising is a stuck queue. The backlog alert needs it above 10 s (30 s for "
                   "critical).", "s",
                   [Target(sel("justtrades_broker_queue_oldest_job_age_seconds"), PER_INSTANCE)],
                   thresholds=steps((None, GREEN), (10, ORANGE), (30, RED))),
        timeseries("Executions", "Jobs the broker workers finished per second (total_processed), per "
                   "replica, next to the processing rate the broker queue reports.", "ops",
                   [Target(f"sum by (instance) ({rate('justtrades_broker_executions_total')})",
                           "{{instance}} executed"),
                    Target(sel("justtrades_broker_queue_processing_rate"), "{{instance}} queue processing rate")]),
        timeseries("Worker restarts", "Broker workers the supervisor replaced per second. Any restart means a "
                   "worker thread died; the log of that replica has the exception.", "cps",
                   [Target(f"sum by (instance) ({rate('justtrades_broker_worker_restarts_total')})",
                           PER_INSTANCE)], bars=True, width=24),

        row("Latency"),
        timeseries("Broker call latency", "Time of the broker call per job: median, 90th and 99th percentile "
                   "over all replicas from the justtrades_broker_execution_duration_seconds histogram, and the "
                   "average each replica reports (avg_execution_ms).", "s",
                   [Target(quantile(0.5, broker_call), "p50"),
                    Target(quantile(0.9, broker_call), "p90"),
                    Target(quantile(0.99, broker_call), "p99"),
                    Target(sel("justtrades_broker_execution_avg_seconds"), "{{instance}} average")]),
        timeseries("Signal to order", "Time from webhook receipt to the broker's acknowledgement of the order, "
                   "per job: median, 90th and 99th percentile over all replicas, and the mean.", "s",
                   [Target(quantile(0.5, signal_to_order), "p50"),
                    Target(quantile(0.9, signal_to_order), "p90"),
                    Target(quantile(0.99, signal_to_order), "p99"),
                    Target(f"sum({rate(signal_to_order + '_sum')}) / sum({rate(signal_to_order + '_count')})",
                           "mean")]),

        row("Failures"),
        timeseries("Failures by reason", "Failed executions per second by classified reason (token_expired, "
                   "rate_limit_exceeded, invalid_price_increment, ...). /api/broker-execution/failures lists "
                   "the recent ones with the error text.", "cps",
                   [Target(f"sum by (reason) ({rate('justtrades_broker_execution_failures_total')})",
                           "{{reason}}")], stacked=True, bars=True),
        timeseries("Queue success rate", "Share of broker queue calls that succeeded (success_rate of "
                   "/api/broker-queue/stats), per replica.", "percentunit",
                   [Target(sel("justtrades_broker_queue_success_ratio"), PER_INSTANCE)],
                   thresholds=steps((None, RED), (0.80, ORANGE), (0.95, GREEN))),
        timeseries("Traders and accounts", "Enabled traders and the broker accounts they use, and the signal "
                   "blocks in force, as each replica reports them.", "short",
                   [Target(sel("justtrades_traders_enabled"), "{{instance}} enabled traders"),
                    Target(sel("justtrades_trader_accounts"), "{{instance}} trader accounts"),
                    Target(sel("justtrades_signal_blocks_active"), "{{instance}} active signal blocks")],
                   width=24),
    ]
    return dashboard(
        UID_BROKER, TITLES[UID_BROKER],
        "Broker execution: are the workers alive, is the queue draining, how long do broker calls and whole "
        "signals take, and why do executions fail.",
        panels,
    )


# ----------------------------------------------------------------------------------------------------------
# Webhooks: deliveries as they arrive, what became of them, why signals were blocked, latency.


def webhooks() -> dict:
    duration = "justtrades_webhook_duration_seconds"
    panels = [
        row("Arrivals and outcomes"),
        timeseries("Raw deliveries and processed signals", "Webhook deliveries as received, before any filter "
                   "(raw), against the signals the fast webhook workers processed and the signals recorded "
                   "in the activity log. Raw above recorded means deliveries were rejected or filtered out.",
                   "reqps",
                   [Target(f"max by (job) ({rate('justtrades_raw_webhooks_total')})", "{{job}} raw"),
                    Target(f"sum by (job) ({rate('justtrades_webhooks_processed_total')})", "{{job}} processed"),
                    Target(f"max by (job) (sum by (job, instance) ({rate('justtrades_webhook_signals_total')}))",
                           "{{job}} recorded")]),
        timeseries("Responses by outcome", "Webhook responses per second by outcome (accepted, rejected, "
                   "unknown_token, too_large, duplicate, blocked, error), over all replicas of the platform.",
                   "reqps",
                   [Target(f"sum by (outcome) ({rate('justtrades_webhook_requests_total')})", "{{outcome}}")],
                   stacked=True, bars=True),
        timeseries("Signals by status", "Recorded signals per second by status (success, failed, blocked). The "
                   "platform keeps these counters in its database, so every replica reports the same value.",
                   "cps",
                   [Target(f"max by (status) ({rate('justtrades_webhook_signals_total')})", "{{status}}")],
                   stacked=True, bars=True),
        timeseries("Raw deliveries by action", "Raw webhook deliveries per second by the action in the alert "
                   "(buy, sell, closelong, ...).", "reqps",
                   [Target(f"max by (action) ({rate('justtrades_raw_webhooks_by_action_total')})", "{{action}}")],
                   stacked=True, bars=True),

        row("Success and blocking"),
        timeseries("Success rate", "Share of recorded signals that succeeded, over all recorded activity. "
                   "Warning below 95 %, critical below 80 %.", "percentunit",
                   [Target(f"min by (job) ({sel('justtrades_webhook_success_ratio')})", PER_JOB)],
                   thresholds=steps((None, RED), (0.80, ORANGE), (0.95, GREEN))),
        timeseries("Blocked signals by reason", "Signals the filters blocked per second, by reason "
                   "(recorder_disabled, outside_trading_window, cooldown, signal_blocked, no_enabled_traders, "
                   "loss_limit).", "cps",
                   [Target(f"sum by (reason) ({rate('justtrades_signals_blocked_total')})", "{{reason}}")],
                   stacked=True, bars=True),
        timeseries("Time since last signal", "Seconds since the newest recorded signal. A long silence during "
                   "market hours can mean TradingView stopped sending alerts.", "s",
                   [Target(age("justtrades_webhook_last_activity_timestamp_seconds"), PER_JOB)]),
        timeseries("Signal blocks in force", "Recorders whose signals are blocked right now.", "short",
                   [Target(sel("justtrades_signal_blocks_active"), PER_INSTANCE)]),

        row("Latency and workers"),
        timeseries("Response time", "Time from webhook request to response: median, 95th and 99th percentile "
                   "over all replicas from the justtrades_webhook_duration_seconds histogram. TradingView gives "
                   "up after 3 s.", "s",
                   [Target(quantile(0.5, duration), "p50"),
                    Target(quantile(0.95, duration), "p95"),
                    Target(quantile(0.99, duration), "p99")],
                   thresholds=steps((None, GREEN), (0.1, ORANGE), (0.5, RED))),
        timeseries("Response time by outcome", "95th percentile of the webhook response time per outcome.", "s",
                   [Target(quantile(0.95, duration, by="le, outcome"), "{{outcome}}")]),
        timeseries("Average processing latency", "Average webhook processing latency each replica reports "
                   "(fast_webhook.avg_latency_ms). Warning above 100 ms, critical above 500 ms.", "s",
                   [Target(sel("justtrades_webhook_avg_latency_seconds"), PER_INSTANCE)],
                   thresholds=steps((None, GREEN), (0.1, ORANGE), (0.5, RED))),
        timeseries("Webhook workers", "Live fast webhook worker threads per replica.", "short",
                   [Target(sel("justtrades_webhook_workers_alive"), PER_INSTANCE)]),
        timeseries("Requests waiting for a thread", "Requests each replica received in full that wait for a free "
                   "HTTP server thread. The latencies above start when a thread takes the request, so they leave "
                   "this wait out. Requests waiting in every scrape mean a replica at its limit.", "short",
                   [Target(sel("justtrades_http_requests_waiting"), PER_INSTANCE)],
                   thresholds=steps((None, GREEN), (1, ORANGE))),

        row("Spool during database outages"),
        timeseries("Spooled deliveries waiting", "Deliveries each replica keeps in its local spool while the "
                   "database is unreachable, and the files moved aside for an operator. Anything above 0 "
                   "after the database is back means the replayer is stuck.", "short",
                   [Target(sel("justtrades_webhook_spool_depth"), "{{instance}} waiting"),
                    Target(sel("justtrades_webhook_spool_failed_files"), "{{instance}} failed")]),
        timeseries("Spool size and age", "Bytes in each replica's spool and the age of its oldest delivery "
                   "(0 when empty).", "bytes",
                   [Target(sel("justtrades_webhook_spool_bytes"), "{{instance}} bytes"),
                    Target(sel("justtrades_webhook_spool_oldest_age_seconds"), "{{instance}} oldest (s)")]),
        timeseries("Spool traffic", "Deliveries spooled, replayed into the database, and rejected because "
                   "the spool was full or unwritable, per second.", "reqps",
                   [Target(f"sum by (instance) ({rate('justtrades_webhook_spooled_total')})", "{{instance}} spooled"),
                    Target(f"sum by (instance) ({rate('justtrades_webhook_spool_replayed_total')})",
                           "{{instance}} replayed"),
                    Target(f"sum by (instance) ({rate('justtrades_webhook_spool_rejected_total')})",
                           "{{instance}} rejected")]),
    ]
    return dashboard(
        UID_WEBHOOKS, TITLES[UID_WEBHOOKS],
        "TradingView webhooks: are deliveries arriving, what became of them (accepted, rejected, blocked and "
        "why), and how fast the platform answers.",
        panels,
    )


# ----------------------------------------------------------------------------------------------------------
# Market data and connections: TradingView feed, prices, position monitor, threads, database, exporter.


def market_data() -> dict:
    panels = [
        row("TradingView feed"),
        state_timeline("TradingView connection", "TradingView WebSocket connected and session token (JWT) "
                       "valid, per replica. The alerts warn when either is down and turn critical after 5 minutes "
                       "disconnected or an hour without a valid token.",
                       [Target(sel("justtrades_tradingview_websocket_connected"), "{{instance}} connected"),
                        Target(sel("justtrades_tradingview_jwt_valid"), "{{instance}} JWT valid")],
                       mappings=YES_NO_BAD_WHEN_NO, width=9),
        state_timeline("Degraded price modes", "Delayed mode (prices 10 to 15 minutes old) and the HTTP polling "
                       "fallback that runs while the WebSocket is down, per replica.",
                       [Target(sel("justtrades_tradingview_delayed"), "{{instance}} delayed"),
                        Target(sel("justtrades_tradingview_polling_fallback_active"), "{{instance}} polling")],
                       mappings=YES_NO_BAD_WHEN_YES, width=9),
        state_timeline("CME session", "Whether the CME Globex session is open. Stale prices only matter while "
                       "it is open.",
                       [Target(f"max by (job) ({sel('justtrades_market_open')})", PER_JOB)],
                       mappings=OPEN_CLOSED, width=6),
        timeseries("Price age by symbol", "Seconds since each cached price was last updated (the newest over "
                   "the replicas). During market hours: warning above 60 s, a feed failure above 15 minutes.",
                   "s",
                   [Target(f"time() - max by (symbol) ({sel('justtrades_price_last_update_timestamp_seconds')})",
                           "{{symbol}}")],
                   thresholds=steps((None, GREEN), (60, ORANGE), (900, RED))),
        timeseries("Last price by symbol", "The last cached price per product root, as the feed delivered it.",
                   "short",
                   [Target(f"max by (symbol) ({sel('justtrades_price')})", "{{symbol}}")], min_zero=False),
        timeseries("Time since last feed message", "Seconds since the last TradingView message (quotes and "
                   "heartbeats) per replica. A growing value while connected means a silent socket.", "s",
                   [Target(age("justtrades_tradingview_last_message_timestamp_seconds", "instance"),
                           "{{instance}} since last message")]),
        timeseries("Reconnects and market data tokens", "TradingView reconnects per minute, and the market "
                   "data tokens the platform has available, per replica.", "short",
                   [Target(f"sum by (instance) ({rate('justtrades_tradingview_reconnects_total')}) * 60",
                           "{{instance}} reconnects per minute"),
                    Target(sel("justtrades_market_data_tokens_available"), "{{instance}} tokens available")]),

        row("Tradovate position monitor"),
        timeseries("Monitor connections", "Position monitor WebSocket connections by state, and the broker "
                   "accounts they cover.", "short",
                   [Target(f"sum by (state) ({sel('justtrades_position_monitor_connections')})", "{{state}}"),
                    Target(f"max by (job) ({sel('justtrades_position_monitor_accounts')})", "accounts")]),
        timeseries("Monitor events", "Position, fill and order events per second from Tradovate.", "cps",
                   [Target(f"sum by (type) ({rate('justtrades_position_monitor_events_total')})", "{{type}}")],
                   stacked=True),
        timeseries("Monitor errors", "Authentication failures, dead subscriptions (no data for 3 windows) and "
                   "account group query errors per minute. Auth failures on every connection mean the token "
                   "refresh daemon is broken; repeating account group errors mean a query bug.", "cpm",
                   [Target(f"sum by (job) ({rate('justtrades_position_monitor_auth_failures_total')}) * 60",
                           "auth failures"),
                    Target(f"sum by (job) ({rate('justtrades_position_monitor_stale_windows_total')}) * 60",
                           "stale windows"),
                    Target(f"sum by (job) ({rate('justtrades_position_monitor_account_group_errors_total')}) * 60",
                           "account group errors")], bars=True),
        timeseries("Time since last monitor message", "Seconds since the position monitor last heard from "
                   "Tradovate, per replica.", "s",
                   [Target(age("justtrades_position_monitor_last_message_timestamp_seconds", "instance"),
                           PER_INSTANCE)]),
        timeseries("Broker fills recorded", "Tradovate fills written to the fills table per minute, so live "
                   "traders' losses reach the daily PnL, and failed writes of fill and position events (each "
                   "retry counted). Failures with no fills mean the database is unreachable.", "cpm",
                   [Target(f"sum by (job) ({rate('justtrades_position_monitor_fills_recorded_total')}) * 60",
                           "fills recorded"),
                    Target(f"sum by (job) ({rate('justtrades_position_monitor_write_failures_total')}) * 60",
                           "write failures")], bars=True),
        timeseries("Event write queue", "Fill and position events waiting for the database writer per replica, "
                   "and events dropped per minute on a full queue (a re-sync recovers them).", "short",
                   [Target(sel("justtrades_position_monitor_write_queue_events"), "{{instance}} waiting"),
                    Target(f"sum by (instance) ({rate('justtrades_position_monitor_events_dropped_total')}) * 60",
                           "{{instance}} dropped per minute")]),

        row("Threads"),
        state_timeline("Thread state", "Each background thread per replica: running or not. An expected "
                       "thread that stopped needs a restart.",
                       [Target(sel("justtrades_thread_up"), "{{instance}} {{thread}}")],
                       mappings=UP_DOWN, width=24, height=8),
        timeseries("Heartbeat age", "Seconds since each thread's last heartbeat. A running thread whose "
                   "heartbeat grows is stuck.", "s",
                   [Target(f"time() - {sel('justtrades_thread_last_beat_timestamp_seconds')}",
                           "{{instance}} {{thread}}")]),
        timeseries("Thread restarts", "Restarts of each background thread per minute.", "cpm",
                   [Target(f"sum by (thread) ({rate('justtrades_thread_restarts_total')}) * 60", "{{thread}}")],
                   bars=True),

        row("Service"),
        timeseries("Database pool", "Database connections per state (checked_out, idle, overflow), per "
                   "replica. Overflow in use means the pool is too small for the load.", "short",
                   [Target(f"sum by (instance, state) ({sel('justtrades_database_pool_connections')})",
                           "{{instance}} {{state}}")], stacked=True, width=8),
        timeseries("Process memory", "Resident memory of each platform process (platform job only).", "bytes",
                   [Target(sel("process_resident_memory_bytes"), PER_INSTANCE)], width=8),
        timeseries("Metrics snapshot age", "Age of the snapshot behind each platform process's /metrics "
                   "(platform job only). It is refreshed every JT_METRICS_REFRESH_SECONDS (5 s by default); an age "
                   "that keeps growing means a refresh waits, usually for the database.", "s",
                   [Target(sel("justtrades_metrics_snapshot_age_seconds"), PER_INSTANCE)], width=8),
        timeseries("Metrics collectors down", "Collectors whose last run failed, per replica (platform job "
                   "only). Their series are missing or partial; the platform log has the error.", "short",
                   [Target(f"sum by (instance, collector) (1 - {sel('justtrades_metrics_collector_up')})",
                           "{{instance}} {{collector}}")], width=8),
        table("Versions", "The platform version each replica runs (justtrades_build_info), so a half-finished "
              "rollout shows up.", "none",
              [Target(sel("justtrades_build_info"), instant=True, table=True)],
              hidden_columns=["Time", "Value", "__name__"], width=8, height=8),
        timeseries("Positions, trades and paper trades", "Open trades, indexed positions and fills, and the "
                   "paper trading service's open and closed trades.", "short",
                   [Target(f"max by (job) ({sel('justtrades_open_trades')})", "{{job}} open trades"),
                    Target(f"max by (job) ({sel('justtrades_indexed_positions')})", "{{job}} indexed positions"),
                    Target(f"max by (job) ({sel('justtrades_indexed_trades')})", "{{job}} indexed fills"),
                    Target(f"max by (job, state) ({sel('justtrades_paper_trades')})", "{{job}} paper {{state}}")]),
        timeseries("Time since last paper close", "Seconds since the paper trading service last closed a "
                   "trade.", "s",
                   [Target(age("justtrades_paper_last_close_timestamp_seconds"), PER_JOB)]),

        row("Exporter"),
        state_timeline("Polled endpoints", "Whether each JSON endpoint answered the exporter's last poll with "
                       "200 and a JSON object (exporter job only).",
                       [Target(sel("justtrades_exporter_endpoint_up"), "{{endpoint}}")],
                       mappings=UP_DOWN, width=24, height=8),
        timeseries("Exporter errors", "Failed endpoint polls and unusable JSON fields per minute. A field "
                   "error means the platform's JSON lacks a field the contract expects; that sample is left "
                   "out, never reported as 0.", "cpm",
                   [Target(f"sum by (endpoint) ({rate('justtrades_exporter_endpoint_errors_total')}) * 60",
                           "{{endpoint}} poll errors"),
                    Target(f"sum by (endpoint, field) ({rate('justtrades_exporter_field_errors_total')}) * 60",
                           "{{endpoint}} {{field}}")], bars=True),
        timeseries("Exporter poll time", "Time the exporter took to poll every endpoint for one scrape.", "s",
                   [Target(sel("justtrades_exporter_scrape_duration_seconds"), PER_INSTANCE)]),
    ]
    return dashboard(
        UID_MARKET, TITLES[UID_MARKET],
        "Market data and connections: is the TradingView feed live and are prices fresh, is the Tradovate "
        "position monitor connected, are the background threads running, and is the exporter reaching the "
        "platform.",
        panels,
    )


# ----------------------------------------------------------------------------------------------------------
# Accounts and membership: broker token health, loss limits, users, Whop sync.


def accounts() -> dict:
    panels = [
        row("Broker accounts"),
        timeseries("Accounts and re-authentication", "Broker accounts in total and those whose token expired "
                   "and need the user to re-authenticate. Warning at one, critical when all need it.", "short",
                   [Target(f"max by (job) ({sel('justtrades_accounts')})", "{{job}} accounts"),
                    Target(f"max by (job) ({sel('justtrades_accounts_needing_reauth')})", "{{job}} need re-auth")]),
        state_timeline("All tokens valid", "Every broker account's token is valid (all_accounts_valid).",
                       [Target(f"min by (job) ({sel('justtrades_accounts_all_valid')})", PER_JOB)],
                       mappings=YES_NO_BAD_WHEN_NO, height=8),
        timeseries("Earliest token expiry", "Time left until the first broker token expires; the token refresh "
                   "daemon should renew it well before 0.", "s",
                   [Target(f"min by (job) ({sel('justtrades_account_token_earliest_expiry_timestamp_seconds')})"
                           " - time()", PER_JOB)],
                   thresholds=steps((None, RED), (600, ORANGE), (3600, GREEN)), min_zero=False),

        row("Loss limits and P&L"),
        timeseries("Maximum daily loss", "Traders the max daily loss monitor watches and those over their limit "
                   "today (their signals are blocked).", "short",
                   [Target(f"max by (job) ({sel('justtrades_max_loss_monitored_traders')})", "{{job}} monitored"),
                    Target(f"max by (job) ({sel('justtrades_max_loss_breached_traders')})", "{{job}} breached")],
                   thresholds=steps((None, GREEN), (1, ORANGE))),
        timeseries("Daily P&L", "Profit and loss of all traders today, in US dollars.", "currencyUSD",
                   [Target(f"max by (job) ({sel('justtrades_daily_pnl_usd')})", PER_JOB)], min_zero=False),

        row("Users"),
        timeseries("Users", "Users in total, approved and affiliated.", "short",
                   [Target(f"max by (job) ({sel('justtrades_users')})", "{{job}} total"),
                    Target(f"max by (job) ({sel('justtrades_users_approved')})", "{{job}} approved"),
                    Target(f"max by (job) ({sel('justtrades_users_affiliated')})", "{{job}} affiliated")]),
        timeseries("Recorders and strategies", "Recorders (strategies with a webhook token) and strategies.",
                   "short",
                   [Target(f"max by (job) ({sel('justtrades_recorders')})", "{{job}} recorders"),
                    Target(f"max by (job) ({sel('justtrades_strategies')})", "{{job}} strategies")]),

        row("Whop membership sync"),
        timeseries("Sync age", "Seconds since the Whop sync last ran, against its interval. Warning above 2 "
                   "minutes, critical above 5 (the daemon stopped).", "s",
                   [Target(age("justtrades_whop_sync_last_run_timestamp_seconds"), "{{job}} since last run"),
                    Target(f"max by (job) ({sel('justtrades_whop_sync_interval_seconds')})", "{{job}} interval")],
                   thresholds=steps((None, GREEN), (120, ORANGE), (300, RED))),
        timeseries("Synced users and resent e-mails", "Users the sync brought over and activation e-mails it "
                   "re-sent, per hour.", "short",
                   [Target(f"sum by (job) ({rate('justtrades_whop_synced_total')}) * 3600", "{{job}} synced per hour"),
                    Target(f"sum by (job) ({rate('justtrades_whop_resent_total')}) * 3600", "{{job}} resent per hour")],
                   bars=True),
        timeseries("Activation backlog", "Users stuck without activation for 3 days or more (warning above 0, "
                   "critical above 5) and activation e-mails waiting to be re-sent (warning above 10).", "short",
                   [Target(f"max by (job) ({sel('justtrades_whop_stuck_users')})", "{{job}} stuck users"),
                    Target(f"max by (job) ({sel('justtrades_whop_pending_resends')})", "{{job}} pending resends")],
                   thresholds=steps((None, GREEN), (1, ORANGE), (6, RED)), width=24),
    ]
    return dashboard(
        UID_ACCOUNTS, TITLES[UID_ACCOUNTS],
        "Accounts and membership: can every broker account trade, which traders hit their daily loss limit, "
        "and is the Whop membership sync keeping up.",
        panels,
    )


def build_all() -> dict[str, dict]:
    """Return every dashboard by file name."""
    return {
        "overview.json": overview(),
        "broker-execution.json": broker_execution(),
        "webhooks.json": webhooks(),
        "market-data.json": market_data(),
        "accounts.json": accounts(),
    }
