"""The database of one benchmark run: a SQLite file in the work folder, or a PostgreSQL database of its own."""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

POSTGRES_ADMIN_URL = os.environ.get("JT_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


@contextlib.contextmanager
def database_url_for(backend: str, workdir: Path):
    """Yield a database URL for `backend` (sqlite or postgresql); a PostgreSQL database is dropped afterwards."""
    if backend == "sqlite":
        yield f"sqlite:///{workdir / 'platform.sqlite3'}"
        return
    if backend != "postgresql":
        raise ValueError(f"unknown database backend {backend!r}; use sqlite or postgresql")
    with postgres_database() as url:
        yield url


@contextlib.contextmanager
def postgres_database():
    """Create jt_bench_<pid>_<random> on the PostgreSQL server of JT_BENCH_POSTGRES_URL and drop it at the end."""
    import psycopg

    name = f"jt_bench_{os.getpid()}_{secrets.token_hex(3)}"
    try:
        admin = psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as error:
        raise RuntimeError(f"PostgreSQL at {POSTGRES_ADMIN_URL} is not reachable ({error}); start it or set "
                           "JT_BENCH_POSTGRES_URL") from error
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True, connect_timeout=5) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
