"""Tradovate position monitor: one user socket per token group, kept in step with the accounts table.

The `position-monitor` thread loads the account groups every `reload_seconds`, starts a registered thread per
group (`position-monitor:<environment>:<group>`) and stops the threads of groups that went away. On PostgreSQL
it first takes an advisory lock, so only one replica holds the sockets. Its log lines keep the wording of the
original monitor (`position_monitor` logger), because operators' runbooks grep for them.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading

from sqlalchemy.exc import SQLAlchemyError

from ..daemons import ThreadContext, ThreadRegistry, redact_error
from .account_groups import AccountGroup, load_account_groups
from .advisory_lock import AdvisoryLock
from .event_writer import THREAD_NAME as WRITER_THREAD_NAME
from .event_writer import EventWriter
from .position_connection import EVENT_TYPES, STATES, GroupConnection
from .settings import PositionMonitorSettings

logger = logging.getLogger("position_monitor")

THREAD_NAME = "position-monitor"


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class PositionMonitor:
    def __init__(self, settings: PositionMonitorSettings, session_factory, engine, threads: ThreadRegistry):
        self.settings = settings
        self.session_factory = session_factory
        self.threads = threads
        self.lock = AdvisoryLock(engine, "justtrades.position-monitor")
        self.writer = EventWriter(session_factory)

        self._lock = threading.Lock()
        self._connections: dict[str, GroupConnection] = {}
        self._totals = {"auth_failures": 0, "stale_windows": 0, "account_group_errors": 0}
        self._events = {event_type: 0 for event_type in EVENT_TYPES}
        self.leader = False
        self.started_at: dt.datetime | None = None
        self.last_load_at: dt.datetime | None = None
        self.last_load_error: str | None = None
        self.start_error: str | None = None

    def register_threads(self) -> None:
        self.threads.register(THREAD_NAME, self.run, restart="always", on_stop=self._release)
        self.threads.register(WRITER_THREAD_NAME, self.writer.run, restart="always")

    # Totals reported by the connections

    def count(self, name: str, event_type: str | None) -> None:
        with self._lock:
            if name == "events":
                self._events[event_type] += 1
            else:
                self._totals[name] += 1

    # Main loop

    def run(self, context: ThreadContext) -> None:
        logger.info("Position WebSocket monitor daemon thread started")
        logger.info("Starting Position WebSocket Monitor...")
        self.started_at = _utc_now()

        while not context.stopping():
            context.beat()
            self.leader = self.lock.acquire()
            if self.leader:
                self._reload()
            else:
                logger.debug("another replica holds the position monitor lock; standing by")
                self._sync_connections([])
            if context.wait(self.settings.reload_seconds):
                break

        self._sync_connections([])

    def _reload(self) -> None:
        try:
            load = load_account_groups(self.session_factory)
        except SQLAlchemyError as error:
            message = redact_error(error)
            with self._lock:
                self._totals["account_group_errors"] += 1
                self.last_load_error = message
            logger.error("Error loading account groups: %s", message)
            return

        self.last_load_at = _utc_now()
        self.last_load_error = None
        logger.info(
            "Built subaccount->recorder map: %d subaccounts, %d recorder mappings", load.subaccounts, load.recorder_mappings
        )
        logger.info("Account groups query returned %d rows", load.rows)
        if not load.groups:
            logger.warning("No active Tradovate accounts for position monitoring")
        else:
            total = sum(len(group.accounts) for group in load.groups)
            logger.info("Position monitor: %d token group(s), %d total accounts", len(load.groups), total)
        self._sync_connections(load.groups)

    def _sync_connections(self, groups: list[AccountGroup]) -> None:
        wanted = {self._thread_name(group): group for group in groups}

        with self._lock:
            removed = [name for name in self._connections if name not in wanted]
            for name in removed:
                self._connections.pop(name)
        for name in removed:
            self.threads.unregister(name)

        for name, group in wanted.items():
            with self._lock:
                connection = self._connections.get(name)
            if connection is not None:
                connection.update_group(group)
                continue

            connection = GroupConnection(group, self.settings, self.count, self.writer)
            with self._lock:
                self._connections[name] = connection
            self.threads.register(name, connection.run, restart="always", on_stop=connection.close)

    @staticmethod
    def _thread_name(group: AccountGroup) -> str:
        return f"{THREAD_NAME}:{group.environment}:{group.key}"

    def _release(self) -> None:
        with self._lock:
            connections = list(self._connections.values())
        for connection in connections:
            connection.close()
        self.lock.release()

    # Snapshot

    def snapshot(self) -> dict:
        """Return the monitor state for /api/position-monitor/status and the metrics (times stay datetime)."""
        with self._lock:
            connections = [connection.describe() for connection in self._connections.values()]
            totals = dict(self._totals)
            events = dict(self._events)

        by_state = {state: 0 for state in STATES}
        for connection in connections:
            by_state[connection["state"]] += 1
        message_times = [c["last_message_at"] for c in connections if c["last_message_at"]]

        return {
            "enabled": self.settings.enabled,
            "running": self.started_at is not None,
            "leader": self.leader,
            "start_error": self.start_error,
            "started_at": self.started_at,
            "last_load_at": self.last_load_at,
            "last_load_error": self.last_load_error,
            "token_groups": len(connections),
            "accounts": sum(len(c["accounts"]) for c in connections),
            "connections_by_state": by_state,
            "last_message_at": max(message_times) if message_times else None,
            "events": events,
            "auth_failures": totals["auth_failures"],
            "stale_detections": totals["stale_windows"],
            "account_group_errors": totals["account_group_errors"],
            "errors": sum(c["errors"] for c in connections),
            "invalid_entities": sum(c["invalid_entities"] for c in connections),
            "writes": self.writer.snapshot(),
            "connections": connections,
        }
