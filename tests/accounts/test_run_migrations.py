"""POST /api/run-migrations and the accounts migration, upgraded and downgraded on SQLite and PostgreSQL."""

from __future__ import annotations

import threading

from sqlalchemy import inspect, text

from justtrades.accounts.schema import ADVISORY_LOCK_KEY, column_report
from justtrades.db import migrate
from justtrades.db.engine import create_database_engine
from justtrades.db.models import Base

from .conftest import API_KEY

ACCOUNTS_TABLES = {"login_failures", "whop_sync_state"}


def _tables(url: str) -> set[str]:
    engine = create_database_engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def _migrate_to(url: str, revision: str) -> None:
    engine = create_database_engine(url)
    migrate.upgrade(engine, revision)
    engine.dispose()


def test_run_migrations_adds_then_reports_existing(empty_database_url, app_factory):
    _migrate_to(empty_database_url, "0001")
    app = app_factory(empty_database_url)
    client = app.test_client()

    first = client.post("/api/run-migrations", headers={"X-API-Key": API_KEY})

    assert first.status_code == 200
    body = first.get_json()
    assert body["success"] is True
    assert "0002" in body["applied_revisions"]
    statuses = {(row["table"], row["column"]): row["status"] for row in body["migrations"]}
    assert statuses[("login_failures", "key_hash")] == "added"
    assert statuses[("whop_sync_state", "last_run_at")] == "added"
    assert statuses[("users", "email")] == "already_exists"
    expected_rows = {(table.name, column.name) for table in Base.metadata.sorted_tables for column in table.columns}
    assert set(statuses) == expected_rows
    assert set(statuses.values()) <= {"added", "already_exists"}

    second = client.post("/api/run-migrations", headers={"X-API-Key": API_KEY}).get_json()

    assert second["success"] is True
    assert second["applied_revisions"] == []
    assert {row["status"] for row in second["migrations"]} == {"already_exists"}
    assert len(second["migrations"]) == len(body["migrations"])


def test_run_migrations_on_empty_database(empty_database_url, app_factory):
    app = app_factory(empty_database_url)

    body = app.test_client().post("/api/run-migrations", headers={"X-API-Key": API_KEY}).get_json()

    assert body["success"] is True
    assert body["applied_revisions"][0] == "0001"
    assert {row["status"] for row in body["migrations"]} == {"added"}


def test_accounts_migration_downgrades(empty_database_url):
    _migrate_to(empty_database_url, "head")
    assert ACCOUNTS_TABLES <= _tables(empty_database_url)

    engine = create_database_engine(empty_database_url)
    migrate.downgrade(engine, "0001")
    engine.dispose()

    remaining = _tables(empty_database_url)
    assert not ACCOUNTS_TABLES & remaining
    assert "users" in remaining

    _migrate_to(empty_database_url, "head")
    assert ACCOUNTS_TABLES <= _tables(empty_database_url)


def test_column_report_flags_missing_column():
    before = {table.name: {column.name for column in table.columns} for table in Base.metadata.sorted_tables}
    after = {name: set(columns) for name, columns in before.items()}
    before["users"].discard("whop_status")
    after["users"].discard("whop_status")
    before["traders"].discard("max_daily_loss")

    report = {(row["table"], row["column"]): row["status"] for row in column_report(before, after)}

    assert report[("users", "whop_status")] == "missing"
    assert report[("traders", "max_daily_loss")] == "added"
    assert report[("users", "email")] == "already_exists"


def test_concurrent_runs_apply_once(empty_database_url, app_factory):
    """Two replicas asked at once: one applies the migrations, the other finds them applied."""
    apps = [app_factory(empty_database_url), app_factory(empty_database_url)]
    results = []

    def call(app):
        response = app.test_client().post("/api/run-migrations", headers={"X-API-Key": API_KEY})
        results.append((response.status_code, response.get_json()))

    threads = [threading.Thread(target=call, args=(app,)) for app in apps]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)

    assert [status for status, _ in results] == [200, 200]
    applied = sorted(len(body["applied_revisions"]) for _, body in results)
    assert applied[0] == 0
    assert applied[1] >= 2


def test_postgres_run_waits_for_replica_lock(empty_postgres_url, app_factory):
    app = app_factory(empty_postgres_url)
    other_replica = create_database_engine(empty_postgres_url)
    holder = other_replica.connect()
    holder.execute(text("SELECT pg_advisory_lock(:key)"), {"key": ADVISORY_LOCK_KEY})
    holder.commit()
    results = []
    thread = threading.Thread(
        target=lambda: results.append(
            app.test_client().post("/api/run-migrations", headers={"X-API-Key": API_KEY}).status_code
        )
    )

    thread.start()
    thread.join(1.0)
    waited = thread.is_alive()
    holder.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": ADVISORY_LOCK_KEY})
    holder.commit()
    thread.join(60)
    holder.close()
    other_replica.dispose()

    assert waited
    assert results == [200]
    assert "login_failures" in _tables(empty_postgres_url)
