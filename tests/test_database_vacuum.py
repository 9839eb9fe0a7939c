"""The platform vacuums its PostgreSQL tables that have many dead rows, whether autovacuum runs or not."""

from __future__ import annotations

import logging
import time

import pytest
from sqlalchemy import text

from justtrades.config import Settings
from justtrades.db import upkeep
from justtrades.db.engine import create_database_engine
from tests.conftest import _truncate_postgres, build_app

DEAD_ROWS = 1500


@pytest.fixture
def postgres_url(postgres_database):
    _truncate_postgres(postgres_database)
    return postgres_database


def _make_dead_rows(url: str, rows: int) -> None:
    """Insert counter rows and update each once: every update leaves one dead row version behind."""
    engine = create_database_engine(url)
    with engine.begin() as connection:
        connection.execute(text(
            "INSERT INTO counters (name, stripe, value) SELECT 'vacuum_test_' || n, 0, 0 FROM generate_series(1, :rows) n"
        ), {"rows": rows})
    with engine.begin() as connection:
        connection.execute(text("UPDATE counters SET value = value + 1 WHERE name LIKE 'vacuum_test_%'"))
    # A backend reports its table statistics when it ends, so closing the connections makes the counts visible.
    engine.dispose()


def _table_stats(url: str, table: str) -> dict:
    engine = create_database_engine(url)
    with engine.connect() as connection:
        row = connection.execute(text(
            "SELECT n_dead_tup, vacuum_count FROM pg_stat_user_tables WHERE relname = :table"
        ), {"table": table}).one()
    engine.dispose()
    return {"dead_rows": row.n_dead_tup, "vacuums": row.vacuum_count}


def _wait_for(condition, seconds: float = 10.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    return condition()


def test_vacuum_only_tables_past_threshold(postgres_url):
    _make_dead_rows(postgres_url, DEAD_ROWS)
    assert _wait_for(lambda: _table_stats(postgres_url, "counters")["dead_rows"] >= DEAD_ROWS)
    vacuums_before = _table_stats(postgres_url, "recorders")["vacuums"]
    engine = create_database_engine(postgres_url)

    try:
        first = upkeep.TableVacuum(engine, ("counters", "recorders")).run_once()
        second = upkeep.TableVacuum(engine, ("counters", "recorders")).run_once()
    finally:
        engine.dispose()

    assert [(vacuum.table, vacuum.dead_rows >= DEAD_ROWS) for vacuum in first] == [("counters", True)]
    assert second == []
    assert _table_stats(postgres_url, "counters")["dead_rows"] == 0
    assert _table_stats(postgres_url, "recorders")["vacuums"] == vacuums_before


def test_platform_thread_vacuums_on_postgresql(postgres_url, caplog):
    caplog.set_level(logging.INFO, logger="justtrades.db.upkeep")
    _make_dead_rows(postgres_url, DEAD_ROWS)
    vacuums_before = _table_stats(postgres_url, "counters")["vacuums"]
    app = build_app(postgres_url, start_background=True, database_vacuum_seconds=0.2)
    runtime = app.extensions["justtrades"]

    try:
        vacuumed = _wait_for(lambda: _table_stats(postgres_url, "counters")["vacuums"] > vacuums_before)
        threads = runtime.threads.snapshot()["threads"]
    finally:
        runtime.stop()

    assert vacuumed
    assert threads[upkeep.THREAD_NAME]["status"] == "running"
    assert "vacuumed table counters: " in caplog.text


def test_vacuum_thread_needs_postgresql_and_interval(sqlite_url, postgres_url):
    on_sqlite = build_app(sqlite_url, database_vacuum_seconds=0.2)
    switched_off = build_app(postgres_url, database_vacuum_seconds=0)

    try:
        sqlite_threads = on_sqlite.extensions["justtrades"].threads.snapshot()["threads"]
        off_threads = switched_off.extensions["justtrades"].threads.snapshot()["threads"]
    finally:
        on_sqlite.extensions["justtrades"].stop()
        switched_off.extensions["justtrades"].stop()

    assert upkeep.THREAD_NAME not in sqlite_threads
    assert upkeep.THREAD_NAME not in off_threads


class _Rounds:
    """A thread context that runs the loop a fixed number of rounds, without sleeping."""

    def __init__(self, rounds: int):
        self.rounds = rounds
        self.beats = 0

    def wait(self, seconds: float) -> bool:
        self.rounds -= 1
        return self.rounds < 0

    def beat(self) -> None:
        self.beats += 1


def test_failed_round_is_logged_and_retried(caplog):
    # Nothing listens on port 1 of the loopback address, so each round fails to connect at once.
    engine = create_database_engine("postgresql://postgres@127.0.0.1:1/test")
    context = _Rounds(2)

    try:
        upkeep.TableVacuum(engine, ("counters",)).run(context, 0.1)
    finally:
        engine.dispose()

    assert context.beats == 0
    assert "vacuum of the platform's tables failed (1 in a row, OperationalError)" in caplog.text
    assert "vacuum of the platform's tables failed (2 in a row, OperationalError)" in caplog.text


def test_vacuum_interval_from_environment():
    assert Settings.from_environ({}).database_vacuum_seconds == 15.0
    assert Settings.from_environ({"JT_DB_VACUUM_SECONDS": "0"}).database_vacuum_seconds == 0.0
