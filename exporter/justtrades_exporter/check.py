"""The `check` command: the monitoring reference's alert thresholds, evaluated against one poll of the platform.

Each row gives a state with Nagios plugin codes (0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN). The command's state is
the worst row, ranked CRITICAL > WARNING > UNKNOWN > OK, so an unreadable value never hides a real problem and
never passes for OK.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import time
from typing import Any, Callable

from . import contract, values
from .contract import Endpoint
from .scraper import PlatformReading

# Windows this command chooses where the reference gives none; each is stated in the row's thresholds.
NO_ACTIVITY_WARNING_SECONDS = 3600
FAILURE_WINDOW_SECONDS = 3600


class State(enum.IntEnum):
    OK = 0
    WARNING = 1
    CRITICAL = 2
    UNKNOWN = 3


_RANK = {State.OK: 0, State.UNKNOWN: 1, State.WARNING: 2, State.CRITICAL: 3}


def worst(states) -> State:
    return max(states, key=_RANK.__getitem__, default=State.OK)


@dataclasses.dataclass(frozen=True)
class RowResult:
    row: str
    state: State
    value: str
    warning: str
    critical: str
    endpoint: str
    note: str | None = None

    def line(self) -> str:
        text = f"{self.state.name} {self.row}: value {self.value} (warning {self.warning}, critical {self.critical})"
        return f"{text}; {self.note}" if self.note else text

    def as_dict(self) -> dict[str, Any]:
        return {
            "row": self.row,
            "state": self.state.name,
            "value": self.value,
            "warning": self.warning,
            "critical": self.critical,
            "endpoint": self.endpoint,
            "note": self.note,
        }


@dataclasses.dataclass(frozen=True)
class CheckContext:
    reading: PlatformReading
    now: float

    def value(self, name: str, **labels: str) -> float | None:
        return self.reading.samples.value(name, **labels)

    @property
    def market_open(self) -> bool:
        return self.value("justtrades_market_open") == 1.0

    def why_missing(self, endpoint: Endpoint) -> str:
        """Explain a missing value: the endpoint's poll error, or its bad fields."""
        result = self.reading.results.get(endpoint)
        if result is None:
            return f"{endpoint.path} was not polled"
        if not result.ok:
            return f"{endpoint.path}: {result.error}"

        problems = self.reading.field_problems.get(endpoint, ())
        if problems:
            return f"{endpoint.path}: " + "; ".join(problems[:3])
        return f"{endpoint.path}: field missing"


@dataclasses.dataclass(frozen=True)
class Row:
    name: str
    endpoint: Endpoint
    warning: str
    critical: str
    evaluate: Callable[[CheckContext, "Row"], RowResult]

    def result(self, state: State, value: str, note: str | None = None) -> RowResult:
        return RowResult(self.name, state, value, self.warning, self.critical, self.endpoint.path, note)

    def unknown(self, context: CheckContext, note: str | None = None) -> RowResult:
        return self.result(State.UNKNOWN, "unknown", note or context.why_missing(self.endpoint))


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.4g}"


def _duration(seconds: float) -> str:
    """Format an age for a person: 45s, 12 min, 5 h, 3 days."""
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.0f} h"
    return f"{seconds / 86400:.0f} days"


def _above(value: float, warning: float, critical: float) -> State:
    if value > critical:
        return State.CRITICAL
    if value > warning:
        return State.WARNING
    return State.OK


def _below(value: float, warning: float, critical: float) -> State:
    if value < critical:
        return State.CRITICAL
    if value < warning:
        return State.WARNING
    return State.OK


# Rows of the reference's RECOMMENDED ALERT THRESHOLDS table.


def service_health(context: CheckContext, row: Row) -> RowResult:
    result = context.reading.results[contract.HEALTH]
    if result is None or result.status is None:
        error = result.error if result is not None else "not polled"
        return row.result(State.CRITICAL, "no response", error)
    if result.status != 200:
        return row.result(State.CRITICAL, f"HTTP {result.status}")
    if not result.ok:
        return row.result(State.CRITICAL, "HTTP 200", result.error)

    status = result.document.get("status")
    if status != "ok":
        return row.result(State.WARNING, f"HTTP 200, status {status!r}")
    return row.result(State.OK, "HTTP 200, status ok")


def broker_workers_alive(context: CheckContext, row: Row) -> RowResult:
    alive = context.value("justtrades_broker_workers_alive")
    if alive is None:
        return row.unknown(context)

    # The reference's 10 and 5 assume 10 configured workers; a platform that reports its pool size is held to it.
    configured = context.value("justtrades_broker_workers_configured") or 10.0
    critical = math.ceil(configured / 2)
    state = _below(alive, configured, critical)
    note = None if context.value("justtrades_broker_workers_configured") else "workers_configured not reported; 10 assumed"
    return dataclasses.replace(
        row.result(state, _number(alive), note), warning=f"< {_number(configured)}", critical=f"< {critical}"
    )


def queue_depth(context: CheckContext, row: Row) -> RowResult:
    depth = context.value("justtrades_broker_queue_depth")
    if depth is None:
        return row.unknown(context)
    return row.result(_above(depth, 10, 50), _number(depth))


def webhook_success_rate(context: CheckContext, row: Row) -> RowResult:
    ratio = context.value("justtrades_webhook_success_ratio")
    if ratio is None:
        return row.unknown(context)

    signals = [context.value("justtrades_webhook_signals_total", status=s) for s in ("success", "failed", "blocked")]
    if all(count == 0 for count in signals):
        return row.result(State.OK, "no signals", "no webhook activity recorded yet")

    percent = ratio * 100
    return row.result(_below(percent, 95, 80), f"{percent:.1f}%")


def tradingview_websocket(context: CheckContext, row: Row) -> RowResult:
    connected = context.value("justtrades_tradingview_websocket_connected")
    if connected is None:
        return row.unknown(context)
    if connected == 1.0:
        return row.result(State.OK, "connected")

    # One poll cannot see when the disconnect began; the last message bounds it from above.
    last_message = context.value("justtrades_tradingview_last_message_timestamp_seconds")
    if last_message is None:
        return row.result(
            State.WARNING, "disconnected", "no last_message_at in the JSON, so the disconnect's duration is unknown"
        )

    silent = context.now - last_message
    state = State.CRITICAL if silent > 300 else State.WARNING
    return row.result(state, "disconnected", f"last message {_duration(silent)} ago, so disconnected for at most that long")


def jwt_valid(context: CheckContext, row: Row) -> RowResult:
    valid = context.value("justtrades_tradingview_jwt_valid")
    if valid is None:
        return row.unknown(context)
    if valid == 1.0:
        return row.result(State.OK, "true")
    return row.result(
        State.WARNING, "false", "the JSON has no time the JWT became invalid, so one poll can only report WARNING"
    )


def token_auth(context: CheckContext, row: Row) -> RowResult:
    needing = context.value("justtrades_accounts_needing_reauth")
    total = context.value("justtrades_accounts")
    if needing is None:
        all_valid = context.value("justtrades_accounts_all_valid")
        if all_valid is None:
            return row.unknown(context)
        if all_valid == 1.0:
            return row.result(State.OK, "all accounts valid")
        return row.result(State.WARNING, "some accounts expired", "no count in the JSON, so all-expired cannot be told")

    if needing == 0:
        return row.result(State.OK, "0 expired")
    if total is None:
        return row.result(State.WARNING, f"{_number(needing)} expired", "total_accounts not reported")
    state = State.CRITICAL if needing >= total else State.WARNING
    return row.result(state, f"{_number(needing)} of {_number(total)} expired")


def whop_sync_age(context: CheckContext, row: Row) -> RowResult:
    last_run = context.value("justtrades_whop_sync_last_run_timestamp_seconds")
    if last_run is None:
        return row.unknown(context)
    age = context.now - last_run
    return row.result(_above(age, 120, 300), _duration(age))


def stuck_users(context: CheckContext, row: Row) -> RowResult:
    stuck = context.value("justtrades_whop_stuck_users")
    if stuck is None:
        return row.unknown(context)
    return row.result(_above(stuck, 0, 5), _number(stuck))


def execution_failures(context: CheckContext, row: Row) -> RowResult:
    result = context.reading.results.get(contract.BROKER_EXECUTION_FAILURES)
    if result is None or not result.ok:
        return row.unknown(context)

    failures = result.document.get("failures")
    if not isinstance(failures, list):
        return row.unknown(context, f"{row.endpoint.path}: failures is {values.describe(failures)}, expected a list")

    recent = 0
    unreadable = 0
    for failure in failures:
        try:
            timestamp = values.to_timestamp(failure.get("timestamp") if isinstance(failure, dict) else None)
        except values.FieldValueError:
            unreadable += 1
            continue
        if context.now - timestamp <= FAILURE_WINDOW_SECONDS:
            recent += 1

    # The endpoint returns at most `limit` failures: when all of them are recent, more may exist.
    limit = int(dict(contract.BROKER_EXECUTION_FAILURES.params)["limit"])
    value = f"at least {recent}" if len(failures) >= limit and recent == len(failures) else str(recent)
    state = _above(recent, 0, 10)
    if not unreadable:
        return row.result(state, value)

    note = f"{unreadable} failures without a readable timestamp were not counted"
    if state == State.OK:
        return row.unknown(context, note)
    return row.result(state, f"at least {recent}", note)


def webhook_latency(context: CheckContext, row: Row) -> RowResult:
    latency = context.value("justtrades_webhook_avg_latency_seconds")
    if latency is None:
        return row.unknown(context)
    milliseconds = latency * 1000
    return row.result(_above(milliseconds, 100, 500), f"{milliseconds:.0f}ms")


# Rows from the per-endpoint threshold bullets that one poll can evaluate.


def queue_outside_market_hours(context: CheckContext, row: Row) -> RowResult:
    depth = context.value("justtrades_broker_queue_depth")
    if depth is None:
        return row.unknown(context)
    if context.market_open:
        return row.result(State.OK, _number(depth), "market open, so this row does not apply")
    return row.result(State.WARNING if depth > 0 else State.OK, _number(depth))


def price_feed_age(context: CheckContext, row: Row) -> RowResult:
    updates = context.reading.samples.with_name("justtrades_price_last_update_timestamp_seconds")
    if not updates:
        result = context.reading.results.get(row.endpoint)
        if result is None or not result.ok:
            return row.unknown(context)
        return row.result(State.WARNING if context.market_open else State.OK, "no cached prices")

    oldest = min(updates, key=lambda sample: sample.value)
    age = context.now - oldest.value
    symbol = dict(oldest.labels)["symbol"]
    value = f"{_duration(age)} ({symbol}, the oldest)"
    if not context.market_open:
        return row.result(State.OK, value, "market closed, so this row does not apply")
    return row.result(_above(age, 60, 900), value)


def webhook_activity_in_market_hours(context: CheckContext, row: Row) -> RowResult:
    if not context.market_open:
        return row.result(State.OK, "market closed", "this row applies only while the market is open")

    result = context.reading.results.get(row.endpoint)
    if result is None or not result.ok:
        return row.unknown(context)

    newest = context.value("justtrades_webhook_last_activity_timestamp_seconds")
    if newest is None:
        activity = result.document.get("activity")
        if isinstance(activity, list) and not activity:
            return row.result(State.WARNING, "no activity recorded")
        return row.unknown(context)

    age = context.now - newest
    return row.result(State.WARNING if age > NO_ACTIVITY_WARNING_SECONDS else State.OK, f"last signal {_duration(age)} ago")


def pending_resends(context: CheckContext, row: Row) -> RowResult:
    pending = context.value("justtrades_whop_pending_resends")
    if pending is None:
        return row.unknown(context)
    return row.result(State.WARNING if pending > 10 else State.OK, _number(pending))


def background_threads(context: CheckContext, row: Row) -> RowResult:
    threads = context.reading.samples.with_name("justtrades_thread_up")
    if not threads:
        return row.unknown(context)

    stopped = sorted(dict(sample.labels)["thread"] for sample in threads if sample.value != 1.0)
    if stopped:
        return row.result(State.CRITICAL, f"{len(stopped)} not running ({', '.join(stopped)})")
    return row.result(State.OK, f"{len(threads)} running")


ROWS = (
    Row("Service health", contract.HEALTH, "status not ok", "non-200 response", service_health),
    Row("Broker workers alive", contract.BROKER_EXECUTION_STATUS, "< 10", "< 5", broker_workers_alive),
    Row("Queue depth", contract.BROKER_EXECUTION_STATUS, "> 10", "> 50", queue_depth),
    Row("Webhook success rate", contract.WEBHOOK_ACTIVITY, "< 95%", "< 80%", webhook_success_rate),
    Row("TradingView WebSocket", contract.TRADINGVIEW_STATUS, "disconnected", "disconnected > 5 min", tradingview_websocket),
    Row("JWT valid", contract.TRADINGVIEW_STATUS, "false", "false > 1 hour", jwt_valid),
    Row("Token auth", contract.ACCOUNTS_AUTH_STATUS, "1+ accounts expired", "all accounts expired", token_auth),
    Row("Whop sync age", contract.WHOP_SYNC_STATUS, "> 120s", "> 300s", whop_sync_age),
    Row("Stuck users", contract.WHOP_SYNC_STATUS, "> 0", "> 5", stuck_users),
    Row(
        "Execution failures",
        contract.BROKER_EXECUTION_FAILURES,
        "> 0 in last hour",
        "> 10 in last hour",
        execution_failures,
    ),
    Row("Webhook latency", contract.BROKER_EXECUTION_STATUS, "> 100ms avg", "> 500ms avg", webhook_latency),
    Row("Queue depth outside market hours", contract.BROKER_EXECUTION_STATUS, "> 0", "none", queue_outside_market_hours),
    Row("Price feed age", contract.TRADINGVIEW_STATUS, "> 60s in market hours", "> 15 min in market hours", price_feed_age),
    Row(
        "Webhook activity",
        contract.WEBHOOK_ACTIVITY,
        "none for > 1 hour in market hours",
        "none",
        webhook_activity_in_market_hours,
    ),
    Row("Pending Whop resends", contract.WHOP_SYNC_STATUS, "> 10", "none", pending_resends),
    Row("Background threads", contract.THREAD_HEALTH, "none", "any not running", background_threads),
)

CHECK_ENDPOINTS = (contract.BROKER_EXECUTION_FAILURES,)


@dataclasses.dataclass(frozen=True)
class CheckReport:
    rows: tuple[RowResult, ...]
    checked_at: float

    @property
    def state(self) -> State:
        return worst(row.state for row in self.rows)

    def lines(self) -> list[str]:
        """Return one line per row, worst first (a Nagios host shows the first line), table order within a state."""
        ordered = sorted(self.rows, key=lambda row: -_RANK[row.state])
        return [row.line() for row in ordered]

    def as_dict(self, platform_url: str) -> dict[str, Any]:
        return {
            "state": self.state.name,
            "exit_code": int(self.state),
            "platform_url": platform_url,
            "checked_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.checked_at)),
            "rows": [row.as_dict() for row in self.rows],
        }


def evaluate(reading: PlatformReading, now: float) -> CheckReport:
    context = CheckContext(reading, now)
    return CheckReport(tuple(row.evaluate(context, row) for row in ROWS), now)
