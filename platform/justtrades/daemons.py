"""Thread registry: every background thread registers here, beats, and is restarted by a supervisor when it crashes.

A target is a function `target(context)` that runs until `context.stopping()` and calls `context.beat()` whenever
it makes progress. A target that raises is marked `error`. The supervisor then starts a new thread after a backoff
that doubles per consecutive crash, up to `restart_backoff_max_seconds`, and counts the restart.

`/api/thread-health` and the `justtrades_thread_*` metrics read the same `snapshot()`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import os
import re
import threading
import time
from typing import Callable

from flask import Blueprint, Flask, current_app, jsonify
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from .auth import admin_or_api_key_required

logger = logging.getLogger(__name__)

RESTART_POLICIES = ("always", "on-failure", "never")

_MAX_ERROR_CHARS = 300

# Values that look like credentials: key=value pairs with a secret-looking key, bearer tokens, JWTs, long opaque strings.
_SECRET_PATTERNS = (
    re.compile(r"(?i)\b(token|key|secret|password|passwd|jwt|authorization|cookie|session\w*)(\s*[=:]\s*)((?:bearer\s+)?\S+)"),
    re.compile(r"(?i)\bbearer\s+\S+"),
    re.compile(r"\beyJ[\w-]+\.[\w-]+\.[\w-]*"),
    re.compile(r"\b[A-Za-z0-9_\-+/]{32,}={0,2}"),
)


def redact_error(error: BaseException) -> str:
    """Describe an exception for operators with anything credential-like replaced by [redacted]."""
    text = f"{type(error).__name__}: {error}"

    text = _SECRET_PATTERNS[0].sub(lambda match: f"{match.group(1)}{match.group(2)}[redacted]", text)
    for pattern in _SECRET_PATTERNS[1:]:
        text = pattern.sub("[redacted]", text)

    if len(text) > _MAX_ERROR_CHARS:
        text = text[: _MAX_ERROR_CHARS - 3] + "..."
    return text


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _iso(moment: dt.datetime | None) -> str | None:
    return moment.isoformat().replace("+00:00", "Z") if moment else None


@dataclasses.dataclass(frozen=True)
class DaemonSettings:
    """Supervisor tunables; tests shorten them."""

    supervise_interval_seconds: float = 1.0
    restart_backoff_base_seconds: float = 1.0
    restart_backoff_max_seconds: float = 60.0
    join_timeout_seconds: float = 5.0

    def __post_init__(self):
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if value <= 0:
                raise ValueError(f"DaemonSettings.{field.name}={value!r} must be above 0")
        if self.restart_backoff_max_seconds < self.restart_backoff_base_seconds:
            raise ValueError(
                f"DaemonSettings.restart_backoff_max_seconds={self.restart_backoff_max_seconds} is below "
                f"restart_backoff_base_seconds={self.restart_backoff_base_seconds}; raise the maximum"
            )

    @classmethod
    def from_environ(cls, environ=None) -> "DaemonSettings":
        environ = os.environ if environ is None else environ
        defaults = cls()

        def number(name: str, default: float) -> float:
            raw = environ.get(name)
            if raw in (None, ""):
                return default
            try:
                return float(raw)
            except ValueError:
                raise ValueError(f"{name}={raw!r} is not a number; set it to seconds such as {default}") from None

        return cls(
            supervise_interval_seconds=number("JT_THREAD_SUPERVISE_SECONDS", defaults.supervise_interval_seconds),
            restart_backoff_base_seconds=number(
                "JT_THREAD_RESTART_BACKOFF_SECONDS", defaults.restart_backoff_base_seconds
            ),
            restart_backoff_max_seconds=number(
                "JT_THREAD_RESTART_BACKOFF_MAX_SECONDS", defaults.restart_backoff_max_seconds
            ),
            join_timeout_seconds=number("JT_THREAD_JOIN_TIMEOUT_SECONDS", defaults.join_timeout_seconds),
        )


class ThreadContext:
    """Handle passed to a running target: its name, heartbeats, and the stop request."""

    def __init__(self, entry: "_Entry", registry_stop: threading.Event):
        self.name = entry.name
        self._entry = entry
        self._registry_stop = registry_stop

    def beat(self) -> None:
        """Record progress; the supervisor also reads a beat as the end of a crash streak."""
        self._entry.record_beat()

    def stopping(self) -> bool:
        return self._registry_stop.is_set() or self._entry.stop_event.is_set()

    def wait(self, seconds: float) -> bool:
        """Sleep up to `seconds`, waking early on a stop request; return True when stopping."""
        deadline = time.monotonic() + max(seconds, 0.0)
        while not self.stopping():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self._entry.stop_event.wait(min(remaining, 0.2))
        return True


class _Entry:
    """One registered thread and its bookkeeping; fields are guarded by `lock`."""

    def __init__(self, name: str, target: Callable[[ThreadContext], None], restart: str, on_stop):
        self.name = name
        self.target = target
        self.restart = restart
        self.on_stop = on_stop
        self.lock = threading.Lock()
        self.stop_event = threading.Event()

        self.thread: threading.Thread | None = None
        self.status = "stopped"
        self.started_at: dt.datetime | None = None
        self.last_beat: dt.datetime | None = None
        self.last_error: str | None = None
        self.last_error_at: dt.datetime | None = None
        self.restarts = 0
        self.crash_streak = 0
        self.ended_at_monotonic: float | None = None

    def record_beat(self) -> None:
        with self.lock:
            self.last_beat = _utc_now()
            self.crash_streak = 0

    def is_alive(self) -> bool:
        thread = self.thread
        return thread is not None and thread.is_alive()


class ThreadRegistry:
    """Registers, starts, supervises and stops the background threads of one process."""

    def __init__(self, settings: DaemonSettings | None = None, *, shutdown_event: threading.Event | None = None):
        self.settings = settings or DaemonSettings.from_environ()
        self._stop = shutdown_event or threading.Event()
        self._entries: dict[str, _Entry] = {}
        self._lock = threading.Lock()
        self._started = False
        self._supervisor: threading.Thread | None = None

    # Registration

    def register(
        self,
        name: str,
        target: Callable[[ThreadContext], None],
        *,
        restart: str = "on-failure",
        on_stop: Callable[[], None] | None = None,
    ) -> None:
        """Add a thread; it starts with `start()`, or at once when the registry has already started.

        `on_stop` runs at shutdown to unblock the target (close its socket, for example).
        """
        if restart not in RESTART_POLICIES:
            raise ValueError(f"restart policy {restart!r} for thread {name!r} is unknown; use one of {RESTART_POLICIES}")

        with self._lock:
            if name in self._entries:
                raise ValueError(f"a thread named {name!r} is already registered; pick a unique name")
            entry = _Entry(name, target, restart, on_stop)
            self._entries[name] = entry
            started = self._started

        if started:
            self._launch(entry)

    def unregister(self, name: str, timeout: float | None = None) -> None:
        """Stop a thread and forget it (a daemon whose work went away, such as a removed account group)."""
        with self._lock:
            entry = self._entries.pop(name, None)
        if entry is not None:
            self._stop_entry(entry, timeout if timeout is not None else self.settings.join_timeout_seconds)

    def names(self) -> list[str]:
        with self._lock:
            return list(self._entries)

    # Lifecycle

    def start(self) -> None:
        """Start every registered thread and the supervisor; calling it again does nothing."""
        with self._lock:
            if self._started:
                return
            self._started = True
            entries = list(self._entries.values())

        for entry in entries:
            self._launch(entry)

        self._supervisor = threading.Thread(target=self._supervise, name="jt-thread-supervisor", daemon=True)
        self._supervisor.start()
        logger.info("thread registry started %d thread(s) and the supervisor", len(entries))

    def stop_all(self, timeout: float | None = None) -> None:
        """Request every thread to stop, run their on_stop hooks and join them, each join bounded by `timeout`."""
        timeout = self.settings.join_timeout_seconds if timeout is None else timeout
        self._stop.set()

        with self._lock:
            entries = list(self._entries.values())
        for entry in entries:
            self._stop_entry(entry, timeout)

        if self._supervisor is not None:
            self._supervisor.join(timeout)

    def _stop_entry(self, entry: _Entry, timeout: float) -> None:
        entry.stop_event.set()
        if entry.on_stop is not None:
            try:
                entry.on_stop()
            except Exception:
                logger.exception("on_stop hook of thread %s failed; joining it anyway", entry.name)

        thread = entry.thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
            if thread.is_alive():
                logger.warning("thread %s did not stop within %.1fs; leaving it as a daemon thread", entry.name, timeout)

    # Running and supervising

    def _launch(self, entry: _Entry) -> None:
        context = ThreadContext(entry, self._stop)
        thread = threading.Thread(target=self._run, args=(entry, context), name=f"jt-{entry.name}", daemon=True)

        with entry.lock:
            entry.thread = thread
            entry.status = "running"
            entry.started_at = _utc_now()
            entry.last_beat = entry.started_at
            entry.ended_at_monotonic = None
        thread.start()

    def _run(self, entry: _Entry, context: ThreadContext) -> None:
        logger.info("thread %s started", entry.name)
        try:
            entry.target(context)
        except BaseException as error:  # noqa: B036 - a dying thread must always be recorded
            message = redact_error(error)
            with entry.lock:
                entry.status = "error"
                entry.last_error = message
                entry.last_error_at = _utc_now()
                entry.crash_streak += 1
                entry.ended_at_monotonic = time.monotonic()
            logger.error("thread %s crashed: %s", entry.name, message, exc_info=error)
            return

        with entry.lock:
            entry.status = "stopped"
            entry.ended_at_monotonic = time.monotonic()
        if context.stopping():
            logger.info("thread %s stopped", entry.name)
        else:
            logger.warning("thread %s returned without a stop request", entry.name)

    def _supervise(self) -> None:
        while not self._stop.wait(self.settings.supervise_interval_seconds):
            try:
                self._restart_due_threads()
            except Exception:
                # The supervisor must outlive any bug in one pass, or nothing restarts crashed threads.
                logger.exception("thread supervisor pass failed; trying again in %.1fs", self.settings.supervise_interval_seconds)

    def _restart_due_threads(self) -> None:
        with self._lock:
            entries = list(self._entries.values())

        now = time.monotonic()
        for entry in entries:
            if self._stop.is_set():
                return
            if entry.stop_event.is_set():
                continue  # being unregistered
            if self._restart_is_due(entry, now):
                with entry.lock:
                    entry.restarts += 1
                    restarts = entry.restarts
                logger.warning("restarting thread %s (restart %d, last error: %s)", entry.name, restarts, entry.last_error)
                self._launch(entry)

    def _restart_is_due(self, entry: _Entry, now: float) -> bool:
        with entry.lock:
            if entry.is_alive() or entry.ended_at_monotonic is None:
                return False
            if entry.status == "error":
                wanted = entry.restart in ("always", "on-failure")
            else:
                wanted = entry.restart == "always"
            if not wanted:
                return False
            return now - entry.ended_at_monotonic >= self.restart_delay(entry.crash_streak)

    def restart_delay(self, crash_streak: int) -> float:
        """Return the wait before a restart: the base doubled per consecutive crash, capped at the maximum."""
        exponent = max(crash_streak - 1, 0)
        delay = self.settings.restart_backoff_base_seconds * (2 ** min(exponent, 30))
        return min(delay, self.settings.restart_backoff_max_seconds)

    # Snapshot

    def snapshot(self) -> dict:
        """Return the state of every registered thread, as /api/thread-health and the metrics show it."""
        with self._lock:
            entries = list(self._entries.values())

        threads = {entry.name: self._describe(entry) for entry in entries}
        running = sum(1 for state in threads.values() if state["status"] == "running")
        supervisor = self._supervisor
        return {
            "threads": threads,
            "all_running": running == len(threads),
            "running_count": running,
            "thread_count": len(threads),
            "supervisor_alive": supervisor is not None and supervisor.is_alive(),
            "timestamp": _iso(_utc_now()),
        }

    @staticmethod
    def _describe(entry: _Entry) -> dict:
        with entry.lock:
            # A thread that has just recorded its crash or return is still finishing: it no longer runs its target.
            alive = entry.is_alive() and entry.ended_at_monotonic is None
            status = entry.status
            if status == "running" and not alive:
                # Between the thread's last instruction and the bookkeeping in _run, report what is true.
                status = "stopped"
            return {
                "status": status,
                "alive": alive,
                "last_beat": _iso(entry.last_beat),
                "started_at": _iso(entry.started_at),
                "last_error": entry.last_error,
                "last_error_at": _iso(entry.last_error_at),
                "restarts": entry.restarts,
                "restart_policy": entry.restart,
            }


# Flask component: /api/thread-health and the justtrades_thread_* metrics.

blueprint = Blueprint("thread_health", __name__)


@blueprint.get("/api/thread-health")
@admin_or_api_key_required
def thread_health():
    return jsonify(current_app.extensions["justtrades"].threads.snapshot())


def collect_thread_metrics(registry: ThreadRegistry):
    """Yield the thread gauges and the restart counter from one snapshot."""
    snapshot = registry.snapshot()

    up = GaugeMetricFamily("justtrades_thread_up", "1 when the background thread is running, 0 otherwise", labels=["thread"])
    restarts = CounterMetricFamily(
        "justtrades_thread_restarts_total", "Restarts of the background thread by the supervisor", labels=["thread"]
    )
    last_beat = GaugeMetricFamily(
        "justtrades_thread_last_beat_timestamp_seconds",
        "Unix time of the background thread's last heartbeat",
        labels=["thread"],
    )

    for name, state in snapshot["threads"].items():
        up.add_metric([name], 1.0 if state["status"] == "running" else 0.0)
        restarts.add_metric([name], float(state["restarts"]))
        if state["last_beat"]:
            beat = dt.datetime.fromisoformat(state["last_beat"].replace("Z", "+00:00"))
            last_beat.add_metric([name], beat.timestamp())

    yield up
    yield restarts
    yield last_beat


def init_app(app: Flask, runtime) -> None:
    app.register_blueprint(blueprint)
    runtime.add_collector("threads", lambda: collect_thread_metrics(runtime.threads), live=True)

    # Components register their threads in init_app; the registry starts them all together with the runtime.
    runtime.on_start(runtime.threads.start)
