"""Engine and session factory for SQLite (embedded default) and PostgreSQL."""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from pathlib import Path

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import Session, SessionTransactionOrigin, sessionmaker
from sqlalchemy.util import immutabledict

from . import counters  # noqa: F401 - registers the flush listener that keeps counters.fills_total
from . import postgres
from .postgres import PostgresTimeouts, lifted_timeouts, urgent_calls  # noqa: F401 - the engine's public helpers

# Connection execution option set by the session factory: False for a session's implicit (autobegin)
# transaction, True for `session.begin()`. Engine-level transactions have no value and count as writes.
# NOTE: an implicit transaction that writes and calls session.commit() would begin deferred and could fail
# with "database is locked" on SQLite; write inside `with session.begin():` instead.
WRITE_OPTION = "justtrades_sqlite_write"
SQLITE_LOCK_TIMEOUT_SECONDS = 30.0


def create_database_engine(database_url: str, timeouts: PostgresTimeouts | None = None) -> Engine:
    """Create an engine with the pragmas and pool settings each backend needs under worker threads.

    PostgreSQL connections get the timeouts of `timeouts`, read from the JT_DB_* variables when it is None.
    """
    url = make_url(database_url)

    if url.get_backend_name() == "sqlite":
        return _create_sqlite_engine(url)

    if url.drivername == "postgresql":
        # psycopg 3 is the driver we install; plain "postgresql://" would ask for psycopg2.
        url = url.set(drivername="postgresql+psycopg")
    timeouts = timeouts or PostgresTimeouts.from_environ()
    # hide_parameters keeps the statement's values out of the error messages, which the log shows: a webhook
    # token or a credential can be one of them.
    engine = create_engine(url, pool_size=20, max_overflow=10, pool_pre_ping=True, hide_parameters=True,
                           pool_timeout=timeouts.pool_timeout_seconds, connect_args=timeouts.connect_args())
    if url.get_dialect().driver == "psycopg":
        # The reply deadline reads psycopg's socket; other drivers keep the server-side timeouts only.
        postgres.install(engine, timeouts)
    return engine


def _create_sqlite_engine(url) -> Engine:
    if url.database and url.database != ":memory:":
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)

    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30}, pool_size=20, max_overflow=10,
                           hide_parameters=True)
    write_lock = SQLiteWriteLock(SQLITE_LOCK_TIMEOUT_SECONDS)
    _release_write_lock_after_transactions(engine, write_lock)

    @event.listens_for(engine, "connect")
    def _set_pragmas(dbapi_connection, _record):
        # pysqlite opens transactions itself; switch that off so the BEGIN below is the only one.
        dbapi_connection.isolation_level = None

        # WAL lets the webhook path write while workers read; foreign keys are off by default in SQLite.
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        # 128 KiB of page cache per connection instead of SQLite's 2 MiB: with up to 30 pooled connections the
        # default let RSS grow by tens of MiB as the file grew (bench.memory: +24% over 10,000 webhooks, +4% with
        # this). Reads still hit the operating system's file cache.
        cursor.execute("PRAGMA cache_size=-128")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection):
        if not connection.get_execution_options().get(WRITE_OPTION, True):
            # A read uses a WAL snapshot and takes no lock, so it neither waits for writers nor blocks them.
            connection.exec_driver_sql("BEGIN")
            return

        # Take the write lock at BEGIN, so two writers queue instead of failing on a read-to-write upgrade.
        # Writers of this process queue on write_lock first: SQLite's default busy handler sleeps up to
        # 100 ms between tries, so with many writer threads the lock would sit idle while they sleep.
        write_lock.acquire(connection.connection)
        try:
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        except BaseException:
            write_lock.release(connection.connection)
            raise

    return engine


class SQLiteWriteLock:
    """One SQLite write transaction at a time in this process, handed to the next writer without polling.

    Threads serving an HTTP request go before background threads (broker workers, daemons), so a webhook
    acknowledgement waits behind the running transaction and other requests, not behind the workers' queue.
    """

    def __init__(self, timeout_seconds: float):
        self._timeout = timeout_seconds
        self._condition = threading.Condition()
        self._owner = None  # the DBAPI connection whose transaction holds the lock
        self._urgent_waiting = 0

    def acquire(self, dbapi_connection) -> None:
        dbapi_connection = _raw_connection(dbapi_connection)
        urgent = _serving_a_request()
        deadline = time.monotonic() + self._timeout
        with self._condition:
            if urgent:
                self._urgent_waiting += 1
            try:
                while self._owner is not None or (not urgent and self._urgent_waiting):
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        # The same error SQLite raises after busy_timeout, so callers handle both alike.
                        raise sqlite3.OperationalError(
                            f"database is locked: no write lock within {self._timeout:.0f} s in this process"
                        )
                    self._condition.wait(remaining)
                self._owner = dbapi_connection
            finally:
                if urgent:
                    self._urgent_waiting -= 1

    def release(self, dbapi_connection) -> None:
        """Release the lock if this connection holds it; a commit or rollback of a read is a no-op."""
        dbapi_connection = _raw_connection(dbapi_connection)
        with self._condition:
            if self._owner is not dbapi_connection:
                return
            self._owner = None
            self._condition.notify_all()


def _release_write_lock_after_transactions(engine: Engine, write_lock: SQLiteWriteLock) -> None:
    # The engine's commit and rollback events fire before the COMMIT runs, so the release wraps the
    # dialect's calls instead; the pool's rollback of a returned connection goes through do_rollback too.
    dialect = engine.dialect
    commit, rollback = dialect.do_commit, dialect.do_rollback

    def _do_commit(dbapi_connection):
        try:
            commit(dbapi_connection)
        finally:
            write_lock.release(dbapi_connection)

    def _do_rollback(dbapi_connection):
        try:
            rollback(dbapi_connection)
        finally:
            write_lock.release(dbapi_connection)

    dialect.do_commit = _do_commit
    dialect.do_rollback = _do_rollback


def _raw_connection(connection):
    # The dialect's commit and rollback get the pool's proxy; the begin hook can reach the DBAPI connection.
    return getattr(connection, "dbapi_connection", connection)


def _serving_a_request() -> bool:
    try:
        from flask import has_request_context
    except ImportError:
        return False
    return has_request_context()


def create_session_factory(engine: Engine) -> sessionmaker[Session]:
    factory = sessionmaker(engine, expire_on_commit=False)
    if engine.dialect.name == "sqlite":
        event.listen(factory, "after_transaction_create", _mark_write_intent)
    return factory


def _mark_write_intent(session: Session, transaction) -> None:
    """Tell the SQLite begin hook whether this session transaction may write (see WRITE_OPTION)."""
    if transaction.parent is not None:
        return
    writes = transaction.origin is not SessionTransactionOrigin.AUTOBEGIN
    # Session.execution_options is new in SQLAlchemy 2.1; under 2.0 the option never reaches the connection
    # and every transaction begins as a write, which is slower but correct.
    current = getattr(session, "execution_options", None) or immutabledict()
    session.execution_options = current.union({WRITE_OPTION: writes})


@contextlib.contextmanager
def transaction(session_factory: sessionmaker[Session]):
    """Open a session and commit on success or roll back on error."""
    with session_factory() as session:
        with session.begin():
            yield session
