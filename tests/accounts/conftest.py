"""Fixtures of the accounts tests: databases (SQLite and a PostgreSQL database of this session), apps, users."""

from __future__ import annotations

import datetime as dt
import os
import shutil
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import text

from tests.conftest import POSTGRES_ADMIN_URL, require_component

API_KEY = "accounts-test-api-key-0123456789"
ADMIN_EMAIL = "admin@example.com"
ADMIN_PASSWORD = "admin-password-1"
USER_EMAIL = "user@example.com"
USER_PASSWORD = "user-password-1"


def _postgres_available() -> bool:
    try:
        import psycopg

        with psycopg.connect(POSTGRES_ADMIN_URL, connect_timeout=3):
            return True
    except Exception:
        return False


def _create_postgres_database(name: str) -> str:
    import psycopg

    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        connection.execute(f'CREATE DATABASE "{name}"')
    return POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"


def _drop_postgres_database(name: str) -> None:
    import psycopg

    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _migrate(url: str) -> None:
    from justtrades.db.engine import create_database_engine
    from justtrades.db.migrate import upgrade

    engine = create_database_engine(url)
    upgrade(engine)
    engine.dispose()


@pytest.fixture(scope="session")
def accounts_postgres():
    """Two PostgreSQL databases of this test session's own, dropped at the end.

    `migrated` (jt_accounts_<pid>) is migrated once and emptied before each test; `empty`
    (jt_accounts_<pid>_empty) has its tables dropped before each test, for the migration tests.
    """
    require_component(_postgres_available(), "PostgreSQL on 127.0.0.1:5432")
    names = {"migrated": f"jt_accounts_{os.getpid()}", "empty": f"jt_accounts_{os.getpid()}_empty"}
    urls = {role: _create_postgres_database(name) for role, name in names.items()}
    _migrate(urls["migrated"])
    yield urls

    for name in names.values():
        _drop_postgres_database(name)


def _run_on_postgres(url: str, *statements: str) -> None:
    from justtrades.db.engine import create_database_engine

    engine = create_database_engine(url)
    with engine.begin() as connection:
        for statement in statements:
            connection.execute(text(statement))
    engine.dispose()


def _empty_postgres_tables(url: str) -> None:
    from justtrades.db.models import Base

    tables = ", ".join(f'"{table.name}"' for table in Base.metadata.sorted_tables)
    _run_on_postgres(url, f"TRUNCATE {tables} RESTART IDENTITY CASCADE")


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory) -> Path:
    """A SQLite file migrated once per session; tests copy it instead of running every migration again."""
    path = tmp_path_factory.mktemp("accounts-template") / "template.sqlite3"
    _migrate(f"sqlite:///{path}")
    return path


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_database_url(request, tmp_path):
    """An empty database with no tables: once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'accounts.sqlite3'}"
    url = request.getfixturevalue("accounts_postgres")["empty"]
    _run_on_postgres(url, "DROP SCHEMA public CASCADE", "CREATE SCHEMA public")
    return url


@pytest.fixture
def empty_postgres_url(accounts_postgres):
    """An empty PostgreSQL database, for behaviour that exists only there (advisory locks)."""
    url = accounts_postgres["empty"]
    _run_on_postgres(url, "DROP SCHEMA public CASCADE", "CREATE SCHEMA public")
    return url


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path, sqlite_template):
    """A database migrated to the newest revision with empty tables, on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        path = tmp_path / "accounts.sqlite3"
        shutil.copyfile(sqlite_template, path)
        return f"sqlite:///{path}"
    url = request.getfixturevalue("accounts_postgres")["migrated"]
    _empty_postgres_tables(url)
    return url


@pytest.fixture
def postgres_db_url(accounts_postgres):
    """The migrated PostgreSQL database with empty tables, for behaviour that exists only there (row locks)."""
    url = accounts_postgres["migrated"]
    _empty_postgres_tables(url)
    return url


@pytest.fixture
def sqlite_db_url(tmp_path, sqlite_template):
    path = tmp_path / "accounts.sqlite3"
    shutil.copyfile(sqlite_template, path)
    return f"sqlite:///{path}"


def make_app(database_url: str, accounts_settings=None, *, start_background: bool = False, **settings_overrides):
    from justtrades.accounts.settings import AccountsSettings
    from justtrades.app import create_app
    from justtrades.config import Settings

    settings = Settings(database_url=database_url, admin_api_key=API_KEY, secret_key="accounts-test-secret",
                        **settings_overrides)
    app = create_app(settings, start_background=start_background, accounts=accounts_settings or AccountsSettings())
    app.config["TESTING"] = True
    return app


@pytest.fixture
def app_factory():
    apps = []

    def build(database_url: str, accounts_settings=None, **kwargs):
        app = make_app(database_url, accounts_settings, **kwargs)
        apps.append(app)
        return app

    yield build
    for app in apps:
        app.extensions["justtrades"].stop()


@pytest.fixture
def app(db_url, app_factory):
    return app_factory(db_url)


@pytest.fixture
def runtime(app):
    return app.extensions["justtrades"]


_PASSWORD_HASHES: dict[str, str] = {}


def _password_hash(password: str) -> str:
    # scrypt takes a noticeable fraction of a second; hash each test password once per session.
    from werkzeug.security import generate_password_hash

    if password not in _PASSWORD_HASHES:
        _PASSWORD_HASHES[password] = generate_password_hash(password)
    return _PASSWORD_HASHES[password]


def add_user(runtime, email: str, password: str | None, role: str = "user", **fields) -> int:
    """Insert a user through create_user, with the password hash reused across tests."""
    from justtrades.accounts.users import create_user, utc_now
    from justtrades.db.engine import transaction

    with transaction(runtime.session_factory) as session:
        user = create_user(session, email, None, role)
        if password is not None:
            user.password_hash = _password_hash(password)
            user.activated_at = utc_now()
        for name, value in fields.items():
            setattr(user, name, value)
        return user.id


@pytest.fixture
def users(runtime):
    """One admin and one regular user, both with passwords."""
    return {
        "admin": add_user(runtime, ADMIN_EMAIL, ADMIN_PASSWORD, "admin"),
        "user": add_user(runtime, USER_EMAIL, USER_PASSWORD, "user"),
    }


def log_in(client, email: str, password: str) -> str:
    """Log the test client in and return its CSRF token."""
    response = client.post("/login", json={"email": email, "password": password})
    assert response.status_code == 200, response.get_json()
    return response.get_json()["csrf_token"]


def add_trading_setup(runtime, *, max_daily_loss: Decimal | None = Decimal("1000"), recorder_name: str = "JADNQ",
                      account_name: str = "Paper 1", broker: str = "paper") -> dict:
    """Insert a recorder, an account and a trader bound to both; return their ids."""
    from justtrades.db.engine import transaction
    from justtrades.db.models import Account, Recorder, Trader

    with transaction(runtime.session_factory) as session:
        recorder = Recorder(name=recorder_name, webhook_token=f"token-{recorder_name}", strategy="trend",
                            enabled=True, trading_windows="", cooldown_seconds=0)
        account = Account(name=account_name, broker=broker, environment="demo", auth_status="valid", enabled=True)
        session.add_all([recorder, account])
        session.flush()
        trader = Trader(recorder_id=recorder.id, account_id=account.id, enabled=True, quantity=1,
                        max_daily_loss=max_daily_loss)
        session.add(trader)
        session.flush()
        return {"recorder": recorder.id, "account": account.id, "trader": trader.id}


def add_fill(runtime, trader_id: int, account_id: int, side: str, quantity: int, price: str,
             filled_at: dt.datetime, symbol: str = "NQZ6") -> None:
    from justtrades.db.engine import transaction
    from justtrades.db.models import Fill

    with transaction(runtime.session_factory) as session:
        session.add(Fill(account_id=account_id, trader_id=trader_id, symbol=symbol, side=side, quantity=quantity,
                         price=Decimal(price), filled_at=filled_at))
