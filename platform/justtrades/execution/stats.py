"""In-process statistics of the webhook and execution paths, read by the JSON endpoints and /metrics alike."""

from __future__ import annotations

import collections
import threading
import time

from prometheus_client import Histogram

from ..brokers.base import FailureReason

# Buckets from 1 ms up to TradingView's 3 s delivery limit, so both "fast" and "about to be dropped" resolve.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0)


class RollingMean:
    """Mean of the last `size` observations; bounded memory however long the process runs."""

    def __init__(self, size: int = 500):
        self._values: collections.deque[float] = collections.deque(maxlen=size)
        self._sum = 0.0
        self._lock = threading.Lock()

    def observe(self, value: float) -> None:
        with self._lock:
            if len(self._values) == self._values.maxlen:
                self._sum -= self._values[0]
            self._values.append(value)
            self._sum += value

    def mean(self) -> float:
        with self._lock:
            if not self._values:
                return 0.0
            return self._sum / len(self._values)


class RateMeter:
    """Events per second over the last `window` seconds, from timestamps kept in one-second buckets."""

    def __init__(self, window: int = 60):
        self._window = window
        self._buckets: collections.deque[list[int]] = collections.deque()
        self._lock = threading.Lock()

    def mark(self, now: float | None = None) -> None:
        second = int(now if now is not None else time.monotonic())
        with self._lock:
            if self._buckets and self._buckets[-1][0] == second:
                self._buckets[-1][1] += 1
            else:
                self._buckets.append([second, 1])
            self._trim(second)

    def rate(self, now: float | None = None) -> float:
        second = int(now if now is not None else time.monotonic())
        with self._lock:
            self._trim(second)
            return sum(count for _, count in self._buckets) / self._window

    def _trim(self, second: int) -> None:
        while self._buckets and self._buckets[0][0] <= second - self._window:
            self._buckets.popleft()


class ExecutionStats:
    """Counts and timings of broker executions in this process."""

    def __init__(self, registry):
        self._lock = threading.Lock()
        self.total_processed = 0
        self.total_succeeded = 0
        self.failures_by_reason = {reason.value: 0 for reason in FailureReason}
        self.execution_ms = RollingMean()
        self.processing_rate = RateMeter()
        self.recent_outcomes: collections.deque[bool] = collections.deque(maxlen=500)

        self.execution_seconds = Histogram(
            "justtrades_broker_execution_duration_seconds",
            "Time of the broker call that placed a job's order.",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.signal_to_order_seconds = Histogram(
            "justtrades_signal_to_order_seconds",
            "Time from webhook receipt to the broker's acknowledgement of the order, per job.",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )

    def record_success(self, execution_seconds: float, signal_to_order_seconds: float | None) -> None:
        self.execution_seconds.observe(execution_seconds)
        if signal_to_order_seconds is not None:
            self.signal_to_order_seconds.observe(signal_to_order_seconds)
        self.execution_ms.observe(execution_seconds * 1000)
        self.processing_rate.mark()

        with self._lock:
            self.total_processed += 1
            self.total_succeeded += 1
            self.recent_outcomes.append(True)

    def record_no_order(self) -> None:
        """Count a job that ended without an order, such as a close with no position to close."""
        self.processing_rate.mark()
        with self._lock:
            self.total_processed += 1
            self.total_succeeded += 1
            self.recent_outcomes.append(True)

    def record_failure(self, reason: FailureReason, final: bool) -> None:
        """Count a failed attempt; a final failure also ends the job and counts as processed."""
        with self._lock:
            self.failures_by_reason[reason.value] += 1
            if final:
                self.total_processed += 1
                self.recent_outcomes.append(False)
        if final:
            self.processing_rate.mark()

    def snapshot(self) -> dict:
        with self._lock:
            outcomes = list(self.recent_outcomes)
            data = {
                "total_processed": self.total_processed,
                "total_failures": sum(self.failures_by_reason.values()),
                "failures_by_reason": dict(self.failures_by_reason),
            }

        data["avg_execution_ms"] = round(self.execution_ms.mean(), 1)
        data["processing_rate"] = round(self.processing_rate.rate(), 3)
        # With no executions yet nothing has failed, so the rate is 100 rather than undefined.
        data["success_rate"] = round(100.0 * sum(outcomes) / len(outcomes), 1) if outcomes else 100.0
        return data


class WebhookStats:
    """Counts and timings of webhook requests handled by this process."""

    OUTCOMES = (
        "accepted", "rejected", "unknown_token", "too_large", "duplicate", "blocked", "forbidden", "spooled", "error",
    )

    def __init__(self, registry):
        self._lock = threading.Lock()
        self.total_processed = 0
        self.by_outcome = {outcome: 0 for outcome in self.OUTCOMES}
        self.blocked_by_reason: dict[str, int] = {}
        self.latency_ms = RollingMean()
        self.duration_seconds = Histogram(
            "justtrades_webhook_duration_seconds",
            "Time from the start of a webhook request to its response.",
            ["outcome"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        for outcome in self.OUTCOMES:
            self.duration_seconds.labels(outcome)

    def record(self, outcome: str, seconds: float, blocked_reason: str | None = None) -> None:
        self.duration_seconds.labels(outcome).observe(seconds)
        self.latency_ms.observe(seconds * 1000)
        with self._lock:
            self.total_processed += 1
            self.by_outcome[outcome] += 1
            if blocked_reason:
                self.blocked_by_reason[blocked_reason] = self.blocked_by_reason.get(blocked_reason, 0) + 1

    def snapshot(self) -> dict:
        with self._lock:
            data = {
                "total_processed": self.total_processed,
                "by_outcome": dict(self.by_outcome),
                "blocked_by_reason": dict(self.blocked_by_reason),
            }
        data["avg_latency_ms"] = round(self.latency_ms.mean(), 1)
        return data
