"""The objects one platform process shares between views, workers, daemons and collectors."""

from __future__ import annotations

import datetime as dt
import logging
import threading
from typing import Any, Callable, Iterable

from prometheus_client.core import CollectorRegistry, Metric
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from .config import Settings
from .daemons import ThreadRegistry
from .db.engine import create_database_engine, create_session_factory
from .execution.jobs import new_instance_id
from .monitoring.refresher import MetricsSnapshot

logger = logging.getLogger(__name__)


class Runtime:
    """Shared state of one process. Components add their own services as attributes in their init_app."""

    def __init__(self, settings: Settings, component_settings: dict[str, Any] | None = None):
        self.settings = settings
        self.component_settings = dict(component_settings or {})
        self.started_at = dt.datetime.now(dt.timezone.utc)
        self.instance_id = new_instance_id()

        self.engine: Engine = create_database_engine(settings.database_url)
        self.session_factory: sessionmaker[Session] = create_session_factory(self.engine)
        self.registry = CollectorRegistry(auto_describe=False)
        self.metrics_snapshot = MetricsSnapshot(self.registry)

        # The time of arrival of webhooks; tests replace it to replay alerts at a fixed moment.
        self.clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.timezone.utc)

        self._stop_callbacks: list[Callable[[], None]] = []
        self._start_callbacks: list[Callable[[], None]] = []
        self.shutdown_event = threading.Event()
        self.threads = ThreadRegistry(self.component_settings.get("threads"), shutdown_event=self.shutdown_event)

    def add_collector(self, name: str, collect: Callable[[], Iterable[Metric]], *, live: bool = False) -> None:
        """Register a function that builds metric families from a snapshot; the metrics refresher runs it.

        live=True runs it on every scrape instead; only for collectors that read no database.
        """
        self.metrics_snapshot.add(name, collect, live=live)

    def on_start(self, callback: Callable[[], None]) -> None:
        """Run callback when background work starts (not in unit tests built with start_background=False)."""
        self._start_callbacks.append(callback)

    def on_stop(self, callback: Callable[[], None]) -> None:
        """Run callback at shutdown, in reverse order of registration."""
        self._stop_callbacks.append(callback)

    def start(self) -> None:
        for callback in self._start_callbacks:
            callback()

    def stop(self) -> None:
        self.shutdown_event.set()
        for callback in reversed(self._stop_callbacks):
            try:
                callback()
            except Exception:
                logger.exception("shutdown step %r failed; continuing with the others", callback)
        self.threads.stop_all()
        self.engine.dispose()
