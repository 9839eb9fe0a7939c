"""A healthy set of contract metrics, as a platform or exporter in good shape would serve them, for live tests.

Values are numbers or functions of the current time (timestamps such as the last Whop sync must stay fresh).
Tests change single samples to drive an alert and put the healthy value back to clear it.
"""

from __future__ import annotations

import threading
import time
from typing import Callable

Labels = tuple[tuple[str, str], ...]
Value = float | Callable[[], float]

POSITION_MONITOR_STATES = ("connecting", "authenticated", "subscribed", "stale", "disconnected")


def _now() -> float:
    return time.time()


def healthy_samples() -> dict[tuple[str, Labels], Value]:
    samples: dict[tuple[str, Labels], Value] = {
        ("justtrades_up", ()): 1,
        # The market is closed, so "no webhook during market hours" and price age rules stay quiet with static
        # counters; the price rules are exercised by the promtool unit tests.
        ("justtrades_market_open", ()): 0,
        ("justtrades_broker_workers_alive", ()): 10,
        ("justtrades_broker_worker_restarts_total", ()): 0,
        ("justtrades_broker_queue_depth", ()): 0,
        ("justtrades_broker_queue_oldest_job_age_seconds", ()): 0,
        ("justtrades_broker_execution_failures_total", (("reason", "timeout"),)): 0,
        ("justtrades_traders_enabled", ()): 5,
        ("justtrades_webhook_avg_latency_seconds", ()): 0.04,
        ("justtrades_webhooks_processed_total", ()): 100,
        ("justtrades_http_requests_waiting", ()): 0,
        ("justtrades_tradingview_websocket_connected", ()): 1,
        ("justtrades_tradingview_jwt_valid", ()): 1,
        ("justtrades_tradingview_delayed", ()): 0,
        ("justtrades_price_last_update_timestamp_seconds", (("symbol", "NQ"),)): _now,
        ("justtrades_accounts", ()): 3,
        ("justtrades_accounts_needing_reauth", ()): 0,
        ("justtrades_position_monitor_accounts", ()): 3,
        ("justtrades_position_monitor_auth_failures_total", ()): 0,
        ("justtrades_position_monitor_stale_windows_total", ()): 0,
        ("justtrades_position_monitor_account_group_errors_total", ()): 0,
        ("justtrades_whop_sync_last_run_timestamp_seconds", ()): _now,
        ("justtrades_whop_stuck_users", ()): 0,
        ("justtrades_whop_pending_resends", ()): 0,
        ("justtrades_max_loss_breached_traders", ()): 0,
    }
    for status in ("success", "failed", "blocked"):
        samples[("justtrades_webhook_signals_total", (("status", status),))] = 0
    for state in POSITION_MONITOR_STATES:
        samples[("justtrades_position_monitor_connections", (("state", state),))] = 2 if state == "subscribed" else 0
    for thread in ("position-monitor", "whop-sync", "token-refresh", "tradingview-feed"):
        samples[("justtrades_thread_up", (("thread", thread),))] = 1
    return samples


class CannedMetrics:
    """Thread-safe samples rendered in the Prometheus text format."""

    def __init__(self):
        self._samples = healthy_samples()
        self._lock = threading.Lock()

    def names(self) -> set[str]:
        with self._lock:
            return {name for name, _ in self._samples}

    def set(self, name: str, value: Value, **labels: str) -> None:
        key = (name, tuple(sorted(labels.items())))
        with self._lock:
            if key not in self._samples:
                raise KeyError(f"no canned sample {name}{labels}; add it to healthy_samples() first")
            self._samples[key] = value

    def reset(self, name: str, **labels: str) -> None:
        """Put the healthy value of one sample back."""
        key = (name, tuple(sorted(labels.items())))
        self.set(name, healthy_samples()[key], **labels)

    def render(self) -> str:
        with self._lock:
            samples = sorted(self._samples.items())

        lines = []
        typed = set()
        for (name, labels), value in samples:
            if name not in typed:
                kind = "counter" if name.endswith("_total") else "gauge"
                lines.append(f"# TYPE {name} {kind}")
                typed.add(name)
            number = value() if callable(value) else value
            label_text = ",".join(f'{key}="{text}"' for key, text in labels)
            lines.append(f"{name}{{{label_text}}} {float(number)!r}" if labels else f"{name} {float(number)!r}")
        return "\n".join(lines) + "\n"
