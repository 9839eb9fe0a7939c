"""POST /api/run-migrations: apply pending Alembic migrations and report every model column's status.

The report compares the live schema (read with `sqlalchemy.inspect`) before and after the upgrade with the
models' metadata. A column present before is `already_exists`, and one that appeared is `added`. A column
still absent is `missing`, which means the models are ahead of the migrations, and `success` is false.
"""

from __future__ import annotations

import contextlib
import logging
import threading

from sqlalchemy import inspect, text
from sqlalchemy.engine import Engine

from ..db import migrate
from ..db.postgres import lifted_timeouts
from ..db.models import Base

logger = logging.getLogger(__name__)

# Two concurrent requests would both try to apply the same revision: a thread lock serialises them within a
# process, and on PostgreSQL an advisory lock serialises the replicas.
_UPGRADE_LOCK = threading.Lock()
ADVISORY_LOCK_KEY = int.from_bytes(b"jtmigrate", "big") & 0x7FFFFFFFFFFFFFFF
LOCK_WAIT_SECONDS = 60


@contextlib.contextmanager
def _replica_lock(engine: Engine):
    if engine.dialect.name != "postgresql":
        yield
        return

    # lifted_timeouts: the platform's lock timeout and reply deadline are shorter than this wait.
    with engine.connect() as connection, lifted_timeouts(connection):
        # Bounded wait: a replica stuck in a long migration makes this request fail instead of hang.
        connection.execute(text(f"SET statement_timeout = '{LOCK_WAIT_SECONDS}s'"))
        connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": ADVISORY_LOCK_KEY})
        # The setting would stay on the pooled connection after this request; only the lock wait needs it.
        connection.execute(text("RESET statement_timeout"))
        connection.commit()
        try:
            yield
        finally:
            connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": ADVISORY_LOCK_KEY})
            connection.commit()


def live_columns(engine: Engine) -> dict[str, set[str]]:
    inspector = inspect(engine)
    return {table: {column["name"] for column in inspector.get_columns(table)} for table in inspector.get_table_names()}


def run_migrations(engine: Engine) -> dict:
    """Upgrade the database to the newest revision and return the reference's per-column report."""
    with _UPGRADE_LOCK, _replica_lock(engine):
        before = live_columns(engine)
        pending = migrate.pending_revisions(engine)
        migrate.upgrade(engine)
        after = live_columns(engine)

    report = column_report(before, after)
    success = all(row["status"] != "missing" for row in report)
    if pending:
        logger.info("applied migration(s) %s", ", ".join(pending))
    if not success:
        missing = [f"{row['table']}.{row['column']}" for row in report if row["status"] == "missing"]
        logger.error("columns of the models are missing after the upgrade: %s", ", ".join(missing))
    return {"success": success, "applied_revisions": pending, "migrations": report}


def column_report(before: dict[str, set[str]], after: dict[str, set[str]]) -> list[dict]:
    report = []
    for table in Base.metadata.sorted_tables:
        for column in table.columns:
            if column.name in before.get(table.name, ()):
                status = "already_exists"
            elif column.name in after.get(table.name, ()):
                status = "added"
            else:
                status = "missing"
            report.append({"table": table.name, "column": column.name, "status": status})
    return report
