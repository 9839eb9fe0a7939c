"""Alembic environment: runs migrations on the connection or URL the caller passes in its Config."""

from alembic import context
from sqlalchemy import pool

from justtrades.db.engine import create_database_engine
from justtrades.db.models import Base

config = context.config
target_metadata = Base.metadata


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return

    engine = create_database_engine(config.get_main_option("sqlalchemy.url"))
    try:
        with engine.connect() as connection:
            _run(connection)
    finally:
        engine.dispose()


def _run(connection) -> None:
    # render_as_batch lets ALTER-style migrations run on SQLite, which cannot alter most columns in place.
    context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported; run 'justtrades migrate' against a database")
run_migrations_online()
