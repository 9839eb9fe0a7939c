"""Translation of each endpoint's JSON document into contract samples, one function per endpoint.

A field that is null, missing or of an unexpected type is reported through the reader and gives no sample. The
other fields of the same document still give theirs.
"""

from __future__ import annotations

from typing import Callable

from . import contract, values
from .fields import FieldReader
from .samples import SampleSet

POOL_STATES = ("checked_out", "idle", "overflow")
SIGNAL_STATUSES = ("success", "failed", "blocked")


def read_health(reader: FieldReader, samples: SampleSet) -> None:
    # justtrades_up is a predicate over the response, so a missing status is reported and reads as not up.
    status = reader.string("status")
    samples.add("justtrades_up", 1.0 if status == "ok" else 0.0)

    # An older platform has no market_open; the collector then computes the session from the clock.
    if reader.has("market_open"):
        samples.add("justtrades_market_open", reader.boolean("market_open"))

    version = reader.string("version")
    if version is not None:
        samples.add("justtrades_build_info", 1.0, version=version)


def read_health_detailed(reader: FieldReader, samples: SampleSet) -> None:
    samples.add("justtrades_database_up", reader.boolean("database.ok"))

    if reader.mapping("database.pool") is not None:
        for state in POOL_STATES:
            samples.add("justtrades_database_pool_connections", reader.number(f"database.pool.{state}"), state=state)


def read_status(reader: FieldReader, samples: SampleSet) -> None:
    samples.add("justtrades_open_trades", reader.number("open_trades"))
    samples.add("justtrades_indexed_positions", reader.number("indexed_positions"))
    samples.add("justtrades_indexed_trades", reader.number("indexed_trades"))


def read_broker_execution_status(reader: FieldReader, samples: SampleSet) -> None:
    samples.add("justtrades_broker_workers_alive", reader.number("broker_execution.workers_alive"))
    samples.add("justtrades_broker_workers_configured", reader.number("broker_execution.workers_configured"))
    samples.add("justtrades_broker_worker_restarts_total", reader.number("broker_execution.worker_restarts"))
    samples.add("justtrades_broker_queue_depth", reader.number("broker_execution.queue_size"))
    # The reference reports only the depth. For it the series is left out, and the backlog alert reads the depth alone.
    oldest_age = "broker_execution.oldest_job_age_seconds"
    if reader.has(oldest_age):
        samples.add("justtrades_broker_queue_oldest_job_age_seconds", reader.number(oldest_age))
    samples.add("justtrades_broker_executions_total", reader.number("broker_execution.total_processed"))
    samples.add("justtrades_broker_execution_avg_seconds", _milliseconds(reader.number("broker_execution.avg_execution_ms")))
    _read_failures_by_reason(reader, samples)

    samples.add("justtrades_webhook_workers_alive", reader.number("fast_webhook.workers_alive"))
    # The reference does not report the HTTP queue, so for it the series is left out.
    if reader.has("fast_webhook.requests_waiting"):
        samples.add("justtrades_http_requests_waiting", reader.number("fast_webhook.requests_waiting"))
    samples.add("justtrades_webhooks_processed_total", reader.number("fast_webhook.total_processed"))
    samples.add("justtrades_webhook_avg_latency_seconds", _milliseconds(reader.number("fast_webhook.avg_latency_ms")))

    samples.add("justtrades_traders_enabled", reader.number("traders.total_enabled"))
    samples.add("justtrades_trader_accounts", reader.number("traders.total_accounts"))
    samples.add("justtrades_signal_blocks_active", _length(reader.sequence("signal_blocking.currently_blocked")))


def _read_failures_by_reason(reader: FieldReader, samples: SampleSet) -> None:
    # A platform older than the per-reason breakdown reports only a total, exposed as one unclassified reason.
    if not reader.has("broker_execution.failures_by_reason"):
        total = reader.number("broker_execution.total_failures")
        samples.add("justtrades_broker_execution_failures_total", total, reason="unclassified")
        return

    _add_counts(
        reader, samples, "broker_execution.failures_by_reason", "justtrades_broker_execution_failures_total", "reason"
    )


def read_broker_queue_stats(reader: FieldReader, samples: SampleSet) -> None:
    samples.add("justtrades_broker_queue_processing_rate", reader.number("processing_rate"))
    samples.add("justtrades_broker_queue_success_ratio", _percent(reader.number("success_rate")))


def read_webhook_activity(reader: FieldReader, samples: SampleSet) -> None:
    for status in SIGNAL_STATUSES:
        samples.add("justtrades_webhook_signals_total", reader.number(f"stats.{status}"), status=status)
    samples.add("justtrades_webhook_success_ratio", _percent(reader.number("stats.success_rate")))

    # The list is newest first; an empty list means no activity yet, which is not an error.
    activity = reader.sequence("activity")
    if not activity:
        return
    newest = activity[0]
    if not isinstance(newest, dict) or "timestamp" not in newest:
        reader.report("activity.0.timestamp", f"missing in {values.describe(newest)}")
        return
    timestamp = reader.convert_item(newest["timestamp"], "activity.0.timestamp", "activity.0.timestamp", values.to_timestamp)
    samples.add("justtrades_webhook_last_activity_timestamp_seconds", timestamp)


def read_raw_webhooks(reader: FieldReader, samples: SampleSet) -> None:
    samples.add("justtrades_raw_webhooks_total", reader.number("total"))
    _add_counts(reader, samples, "action_breakdown", "justtrades_raw_webhooks_by_action_total", "action")


def read_tradingview_status(reader: FieldReader, samples: SampleSet) -> None:
    samples.add("justtrades_tradingview_websocket_connected", reader.boolean("websocket_connected"))
    samples.add("justtrades_tradingview_jwt_valid", reader.boolean("jwt_token_valid"))
    samples.add("justtrades_tradingview_delayed", reader.boolean("delayed"))
    samples.add("justtrades_tradingview_polling_fallback_active", reader.boolean("polling_fallback_active"))
    samples.add("justtrades_tradingview_reconnects_total", reader.number("reconnects"))
    samples.add("justtrades_tradingview_last_message_timestamp_seconds", reader.timestamp("last_message_at"))

    prices = reader.mapping("cached_prices")
    for symbol, entry in (prices or {}).items():
        if not isinstance(entry, dict):
            reader.report("cached_prices.*", f"cached_prices.{symbol}: expected an object, got {values.describe(entry)}")
            continue
        last = _item(reader, entry, "last", f"cached_prices.{symbol}", values.to_number)
        updated = _item(reader, entry, "updated", f"cached_prices.{symbol}", values.to_timestamp)
        samples.add("justtrades_price", last, symbol=symbol)
        samples.add("justtrades_price_last_update_timestamp_seconds", updated, symbol=symbol)


def read_market_data_status(reader: FieldReader, samples: SampleSet) -> None:
    samples.add("justtrades_market_data_tokens_available", reader.number("available_tokens"))


def read_accounts_auth_status(reader: FieldReader, samples: SampleSet) -> None:
    samples.add("justtrades_accounts", reader.number("total_accounts"))
    samples.add("justtrades_accounts_needing_reauth", reader.number("count"))
    samples.add("justtrades_accounts_all_valid", reader.boolean("all_accounts_valid"))
    samples.add("justtrades_account_token_earliest_expiry_timestamp_seconds", reader.timestamp("earliest_token_expiry"))


def read_position_monitor_status(reader: FieldReader, samples: SampleSet) -> None:
    _read_connections_by_state(reader, samples)
    samples.add("justtrades_position_monitor_accounts", reader.number("accounts"))
    samples.add("justtrades_position_monitor_last_message_timestamp_seconds", reader.timestamp("last_message_at"))
    _add_counts(reader, samples, "events", "justtrades_position_monitor_events_total", "type")
    samples.add("justtrades_position_monitor_auth_failures_total", reader.number("auth_failures"))
    samples.add("justtrades_position_monitor_stale_windows_total", reader.number("stale_detections"))
    samples.add("justtrades_position_monitor_account_group_errors_total", reader.number("account_group_errors"))


def _read_connections_by_state(reader: FieldReader, samples: SampleSet) -> None:
    """Read the connection counts by state.

    The platform sends `connections_by_state` ({"subscribed": 2, ...}) next to a `connections` list; older shapes
    send only `connections`, as counts by state or as a list of connections with a `state` field each.
    """
    metric = "justtrades_position_monitor_connections"
    if reader.has("connections_by_state") or not reader.has("connections"):
        _add_counts(reader, samples, "connections_by_state", metric, "state")
        return
    if isinstance(reader.raw("connections"), dict):
        _add_counts(reader, samples, "connections", metric, "state")
        return

    connections = reader.sequence("connections")
    if connections is None:
        return

    counts: dict[str, int] = {}
    for index, connection in enumerate(connections):
        state = connection.get("state") if isinstance(connection, dict) else None
        if not isinstance(state, str) or not state:
            reason = f"connections.{index}: expected a state string in {values.describe(connection)}"
            reader.report("connections.*.state", reason)
            continue
        counts[state] = counts.get(state, 0) + 1
    for state, count in sorted(counts.items()):
        samples.add(metric, count, state=state)


def read_thread_health(reader: FieldReader, samples: SampleSet) -> None:
    threads = reader.mapping("threads")
    for name, thread in (threads or {}).items():
        if not isinstance(thread, dict):
            reader.report("threads.*", f"threads.{name}: expected an object, got {values.describe(thread)}")
            continue
        where = f"threads.{name}"

        status = thread.get("status")
        if isinstance(status, str):
            samples.add("justtrades_thread_up", 1.0 if status == "running" else 0.0, thread=name)
        else:
            reader.report("threads.*.status", f"{where}.status: expected a string, got {values.describe(status)}")

        restarts = _item(reader, thread, "restarts", where, values.to_number)
        samples.add("justtrades_thread_restarts_total", restarts, thread=name)
        samples.add(
            "justtrades_thread_last_beat_timestamp_seconds",
            _item(reader, thread, "last_beat", where, values.to_timestamp),
            thread=name,
        )


def read_paper_trades_status(reader: FieldReader, samples: SampleSet) -> None:
    samples.add("justtrades_paper_trades", reader.number("open_count"), state="open")
    samples.add("justtrades_paper_trades", reader.number("closed_count"), state="closed")
    samples.add("justtrades_paper_last_close_timestamp_seconds", reader.timestamp("last_close_time"))


def read_dashboard_stats(reader: FieldReader, samples: SampleSet) -> None:
    samples.add("justtrades_users", reader.number("total_users"))
    samples.add("justtrades_users_approved", reader.number("approved_users"))
    samples.add("justtrades_users_affiliated", reader.number("affiliated"))
    samples.add("justtrades_recorders", reader.number("recorders"))
    samples.add("justtrades_strategies", reader.number("strategies"))
    samples.add("justtrades_daily_pnl_usd", reader.number("daily_pnl"))


def read_max_loss_monitor_status(reader: FieldReader, samples: SampleSet) -> None:
    samples.add("justtrades_max_loss_monitored_traders", reader.number("monitored_traders"))
    samples.add("justtrades_max_loss_breached_traders", reader.number("daily_loss_breach_count"))


def read_whop_sync_status(reader: FieldReader, samples: SampleSet) -> None:
    samples.add("justtrades_whop_sync_last_run_timestamp_seconds", reader.timestamp("last_run"))
    samples.add("justtrades_whop_sync_interval_seconds", reader.number("sync_interval_seconds"))
    samples.add("justtrades_whop_synced_total", reader.number("total_synced"))
    samples.add("justtrades_whop_resent_total", reader.number("total_resent"))
    samples.add("justtrades_whop_pending_resends", reader.number("pending_resends"))
    samples.add("justtrades_whop_stuck_users", _length(reader.sequence("stuck_users")))


def read_webhook_spool(reader: FieldReader, samples: SampleSet) -> None:
    samples.add("justtrades_webhook_spool_depth", reader.number("depth"))
    samples.add("justtrades_webhook_spool_bytes", reader.number("bytes"))
    samples.add("justtrades_webhook_spool_oldest_age_seconds", reader.number("oldest_age_seconds"))
    samples.add("justtrades_webhook_spool_failed_files", reader.number("failed_files"))
    samples.add("justtrades_webhook_spooled_total", reader.number("spooled_total"))
    samples.add("justtrades_webhook_spool_replayed_total", reader.number("replayed_total"))
    samples.add("justtrades_webhook_spool_rejected_total", reader.number("rejected_total"))


TRANSLATORS: dict[contract.Endpoint, Callable[[FieldReader, SampleSet], None]] = {
    contract.HEALTH: read_health,
    contract.HEALTH_DETAILED: read_health_detailed,
    contract.STATUS: read_status,
    contract.BROKER_EXECUTION_STATUS: read_broker_execution_status,
    contract.BROKER_QUEUE_STATS: read_broker_queue_stats,
    contract.WEBHOOK_ACTIVITY: read_webhook_activity,
    contract.RAW_WEBHOOKS: read_raw_webhooks,
    contract.TRADINGVIEW_STATUS: read_tradingview_status,
    contract.MARKET_DATA_STATUS: read_market_data_status,
    contract.ACCOUNTS_AUTH_STATUS: read_accounts_auth_status,
    contract.POSITION_MONITOR_STATUS: read_position_monitor_status,
    contract.THREAD_HEALTH: read_thread_health,
    contract.PAPER_TRADES_STATUS: read_paper_trades_status,
    contract.DASHBOARD_STATS: read_dashboard_stats,
    contract.MAX_LOSS_MONITOR_STATUS: read_max_loss_monitor_status,
    contract.WHOP_SYNC_STATUS: read_whop_sync_status,
    contract.WEBHOOK_SPOOL: read_webhook_spool,
}


def _add_counts(reader: FieldReader, samples: SampleSet, path: str, metric: str, label: str) -> None:
    """Add one sample per key of a JSON object of counts ({"buy": 85, "sell": 72})."""
    counts = reader.mapping(path)
    for key, raw in (counts or {}).items():
        value = reader.convert_item(raw, f"{path}.*", f"{path}.{key}", values.to_number)
        samples.add(metric, value, **{label: key})


def _item(reader: FieldReader, entry: dict, key: str, where: str, convert: Callable) -> float | None:
    field = f"{where.split('.')[0]}.*.{key}"
    if key not in entry:
        reader.report(field, f"{where}.{key}: missing")
        return None
    return reader.convert_item(entry[key], field, f"{where}.{key}", convert)


def _milliseconds(value: float | None) -> float | None:
    return None if value is None else value / 1000.0


def _percent(value: float | None) -> float | None:
    return None if value is None else value / 100.0


def _length(items: list | None) -> float | None:
    return None if items is None else float(len(items))
