"""Vacuum of the platform's PostgreSQL tables, so that reads of the job queue stay fast under steady load.

A job row is updated twice after its insert (claimed, then finished), and each update of its indexed status
leaves a dead row version and a dead index entry behind. Until VACUUM removes them, the poll for due jobs and the
queue depth read walk past every job that went through the queue since the last vacuum: in a run at 200
webhooks/s on a server without autovacuum, the paper workers' poll took 127 ms after 100 s and the workers fell
behind (docs/benchmarks.md, fix 20). Autovacuum does this work when it is on, but by default it waits until a
fifth of a table is dead, which on a large job table is hours of traffic.

So the platform vacuums its own tables: every JT_DB_VACUUM_SECONDS it reads their dead-row counts from
pg_stat_user_tables and runs VACUUM (ANALYZE) on each one with at least MIN_DEAD_ROWS. SKIP_LOCKED passes over a
table that autovacuum or another platform process is vacuuming instead of waiting behind it.
"""

from __future__ import annotations

import dataclasses
import logging
import time

from flask import Flask
from sqlalchemy import bindparam, text
from sqlalchemy.engine import Engine

from ..daemons import ThreadContext
from .models import Base

logger = logging.getLogger(__name__)

THREAD_NAME = "database-vacuum"
# A busy job table reaches this within seconds and a quiet one rarely, so a quiet platform does not vacuum every round.
MIN_DEAD_ROWS = 1000

_DEAD_ROWS = text(
    "SELECT relname, n_dead_tup FROM pg_stat_user_tables"
    " WHERE schemaname = current_schema() AND relname IN :tables AND n_dead_tup >= :minimum"
    " ORDER BY n_dead_tup DESC"
).bindparams(bindparam("tables", expanding=True))


@dataclasses.dataclass(frozen=True)
class Vacuum:
    """One VACUUM of a table: its name, its dead rows before the run and the run's duration."""

    table: str
    dead_rows: int
    seconds: float


class TableVacuum:
    """Vacuums the tables of the platform's schema that have at least `min_dead_rows` dead rows."""

    def __init__(self, engine: Engine, tables: tuple[str, ...], min_dead_rows: int = MIN_DEAD_ROWS):
        self._engine = engine
        self._tables = tables
        self._min_dead_rows = min_dead_rows

    def run_once(self) -> list[Vacuum]:
        """Vacuum every table due for it now; return what was done, in order."""
        done = []
        # VACUUM cannot run inside a transaction block.
        with self._engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            due = connection.execute(_DEAD_ROWS, {"tables": list(self._tables), "minimum": self._min_dead_rows}).all()
            quote = connection.dialect.identifier_preparer.quote
            for table, dead_rows in due:
                started = time.monotonic()
                # The name comes from the platform's own metadata, never from input.
                connection.exec_driver_sql(f"VACUUM (ANALYZE, SKIP_LOCKED) {quote(table)}")
                vacuum = Vacuum(table, dead_rows, time.monotonic() - started)
                logger.info("vacuumed table %s: %d dead rows, %.0f ms", table, dead_rows, vacuum.seconds * 1000)
                done.append(vacuum)
        return done

    def run(self, context: ThreadContext, interval_seconds: float) -> None:
        """Vacuum every interval until the runtime stops."""
        failures = 0
        while not context.wait(interval_seconds):
            try:
                self.run_once()
            except Exception as error:
                # Usually the database is away; the next round tries again, and one line per failure is enough.
                failures += 1
                logger.warning("vacuum of the platform's tables failed (%d in a row, %s); retrying in %g s",
                               failures, type(error).__name__, interval_seconds)
                continue

            failures = 0
            context.beat()


def init_app(app: Flask, runtime) -> None:
    interval = runtime.settings.database_vacuum_seconds
    if runtime.engine.dialect.name != "postgresql" or not interval:
        return

    vacuum = TableVacuum(runtime.engine, tuple(sorted(Base.metadata.tables)))
    runtime.threads.register(THREAD_NAME, lambda context: vacuum.run(context, interval), restart="always")
