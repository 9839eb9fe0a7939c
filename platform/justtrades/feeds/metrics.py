"""Prometheus collectors of the feeds, each built from the snapshot its JSON endpoint serialises."""

from __future__ import annotations

import datetime as dt

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from .position_connection import EVENT_TYPES, STATES


def _timestamp(value) -> float | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    return value.timestamp()


def _gauge(name: str, documentation: str, value: float | None, labels: list[str] | None = None):
    family = GaugeMetricFamily(name, documentation, labels=labels)
    if value is not None and labels is None:
        family.add_metric([], float(value))
    return family


def collect_tradingview(feed):
    """Yield the TradingView gauges from feed.snapshot(); price series exist only for subscribed roots."""
    status = feed.snapshot()

    yield _gauge("justtrades_tradingview_websocket_connected", "1 while the TradingView WebSocket is connected", status["websocket_connected"])
    yield _gauge("justtrades_tradingview_jwt_valid", "1 while the TradingView session JWT is valid", status["jwt_token_valid"])
    yield _gauge("justtrades_tradingview_delayed", "1 while TradingView reports delayed quotes (update_mode delayed_*)", status["delayed"])
    yield _gauge(
        "justtrades_tradingview_polling_fallback_active",
        "1 while prices come from HTTP polling because the WebSocket is down",
        status["polling_fallback_active"],
    )

    reconnects = CounterMetricFamily("justtrades_tradingview_reconnects_total", "TradingView WebSocket reconnect attempts")
    reconnects.add_metric([], float(status["reconnects"]))
    yield reconnects

    yield _gauge(
        "justtrades_tradingview_last_message_timestamp_seconds",
        "Unix time of the last TradingView WebSocket message, heartbeats included",
        _timestamp(status["last_message_at"]),
    )

    price = GaugeMetricFamily("justtrades_price", "Last cached price per product root", labels=["symbol"])
    updated = GaugeMetricFamily(
        "justtrades_price_last_update_timestamp_seconds", "Unix time the cached price was last updated", labels=["symbol"]
    )
    for root, entry in status["cached_prices"].items():
        price.add_metric([root], entry["last"])
        updated.add_metric([root], _timestamp(entry["updated"]))
    yield price
    yield updated


def collect_accounts(accounts: dict):
    """Yield the account auth gauges and market-data tokens from one account_auth_status() snapshot."""
    yield _gauge("justtrades_accounts", "Enabled Tradovate accounts", accounts["total_accounts"])
    yield _gauge("justtrades_accounts_needing_reauth", "Tradovate accounts whose token is expired or missing", accounts["count"])
    yield _gauge("justtrades_accounts_all_valid", "1 when every Tradovate account has a valid token", accounts["all_accounts_valid"])
    yield _gauge(
        "justtrades_account_token_earliest_expiry_timestamp_seconds",
        "Unix time the first valid Tradovate token expires",
        _timestamp(accounts["earliest_token_expiry"]),
    )
    yield _gauge(
        "justtrades_market_data_tokens_available",
        "Tradovate token groups holding an unexpired token, usable for market data",
        accounts["valid_token_groups"],
    )


def collect_position_monitor(monitor):
    status = monitor.snapshot()

    connections = GaugeMetricFamily(
        "justtrades_position_monitor_connections", "Position monitor WebSocket connections by state", labels=["state"]
    )
    for state in STATES:
        connections.add_metric([state], float(status["connections_by_state"][state]))
    yield connections

    yield _gauge("justtrades_position_monitor_accounts", "Accounts watched by the position monitor", status["accounts"])
    yield _gauge(
        "justtrades_position_monitor_last_message_timestamp_seconds",
        "Unix time of the last message on any position monitor socket",
        _timestamp(status["last_message_at"]),
    )

    events = CounterMetricFamily("justtrades_position_monitor_events_total", "Position monitor props events by entity type", labels=["type"])
    for event_type in EVENT_TYPES:
        events.add_metric([event_type], float(status["events"][event_type]))
    yield events

    writes = status["writes"]
    for name, value, documentation in (
        ("justtrades_position_monitor_auth_failures_total", status["auth_failures"], "Authorize requests without an s:200 response"),
        ("justtrades_position_monitor_stale_windows_total", status["stale_detections"], "Stats windows in which a socket received nothing"),
        (
            "justtrades_position_monitor_account_group_errors_total",
            status["account_group_errors"],
            "Failed loads of the Tradovate account groups",
        ),
        ("justtrades_position_monitor_fills_recorded_total", writes["fills_recorded"], "Tradovate fills written to the fills table"),
        (
            "justtrades_position_monitor_write_failures_total",
            writes["write_failures"],
            "Failed database writes of fill and position events, retries included",
        ),
        (
            "justtrades_position_monitor_events_dropped_total",
            writes["events_dropped"],
            "Fill and position events dropped because the writer's queue was full",
        ),
    ):
        counter = CounterMetricFamily(name, documentation)
        counter.add_metric([], float(value))
        yield counter

    yield _gauge(
        "justtrades_position_monitor_write_queue_events",
        "Fill and position events waiting to be written",
        writes["write_queue_events"],
    )
