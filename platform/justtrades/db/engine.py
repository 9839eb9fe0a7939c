"""Engine and session factory for SQLite (embedded default) and PostgreSQL."""

from __future__ import annotations

import contextlib
from pathlib import Path

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import Session, sessionmaker


def create_database_engine(database_url: str) -> Engine:
    """Create an engine with the pragmas and pool settings each backend needs under worker threads."""
    url = make_url(database_url)

    if url.get_backend_name() == "sqlite":
        return _create_sqlite_engine(url)

    if url.drivername == "postgresql":
        # psycopg 3 is the driver we install; plain "postgresql://" would ask for psycopg2.
        url = url.set(drivername="postgresql+psycopg")
    return create_engine(url, pool_size=20, max_overflow=10, pool_pre_ping=True, pool_timeout=10)


def _create_sqlite_engine(url) -> Engine:
    if url.database and url.database != ":memory:":
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)

    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30}, pool_size=20, max_overflow=10)

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
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin_immediate(connection):
        # Take the write lock at BEGIN, so two writers queue on busy_timeout instead of failing on upgrade.
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def create_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextlib.contextmanager
def transaction(session_factory: sessionmaker[Session]):
    """Open a session and commit on success or roll back on error."""
    with session_factory() as session:
        with session.begin():
            yield session
