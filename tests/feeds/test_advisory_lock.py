"""The advisory lock that keeps the position monitor and token refresh on one replica (real PostgreSQL)."""

from __future__ import annotations

from justtrades.db.engine import create_database_engine
from justtrades.feeds.advisory_lock import AdvisoryLock, lock_key


def test_lock_held_by_one_holder(postgres_database):
    first_engine = create_database_engine(postgres_database)
    second_engine = create_database_engine(postgres_database)
    first = AdvisoryLock(first_engine, "justtrades.test-lock")
    second = AdvisoryLock(second_engine, "justtrades.test-lock")
    try:
        assert first.acquire() is True
        assert second.acquire() is False
        assert first.acquire() is True  # still held: confirmed on its own connection

        first.release()
        assert second.acquire() is True
        assert first.acquire() is False
    finally:
        first.release()
        second.release()
        first_engine.dispose()
        second_engine.dispose()


def test_lock_lost_with_its_connection(postgres_database):
    engine = create_database_engine(postgres_database)
    other_engine = create_database_engine(postgres_database)
    lock = AdvisoryLock(engine, "justtrades.test-lock-lost")
    other = AdvisoryLock(other_engine, "justtrades.test-lock-lost")
    try:
        assert lock.acquire() is True
        lock._connection.invalidate()  # the database connection drops, and the session lock goes with it

        assert other.acquire() is True
        assert lock.acquire() is False
    finally:
        lock.release()
        other.release()
        engine.dispose()
        other_engine.dispose()


def test_sqlite_lock_always_granted(sqlite_url):
    engine = create_database_engine(sqlite_url)
    try:
        assert AdvisoryLock(engine, "x").acquire() is True
        assert AdvisoryLock(engine, "x").acquire() is True
    finally:
        engine.dispose()


def test_lock_key_is_stable_signed_64_bit():
    key = lock_key("justtrades.position-monitor")
    assert key == lock_key("justtrades.position-monitor")
    assert -(2**63) <= key < 2**63
    assert key != lock_key("justtrades.token-refresh")
