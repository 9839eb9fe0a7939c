"""The `justtrades` command: migrate, seed (idempotent, with clear errors), create-admin, and serve's start-up output."""

from __future__ import annotations

import subprocess
import sys

import pytest
from sqlalchemy import func, select

from justtrades.db.engine import create_database_engine, create_session_factory
from justtrades.db.models import Account, Recorder, Trader, User

from .conftest import DEMO_SEED, _postgres_available, require_component


def run_cli(tmp_path, *arguments, env_extra=None):
    env = {"DATABASE_URL": f"sqlite:///{tmp_path / 'cli.sqlite3'}", "PATH": "/usr/bin:/bin", **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "justtrades.cli", *arguments], env=env, capture_output=True,
                          text=True, timeout=120)


def count(tmp_path, model) -> int:
    engine = create_database_engine(f"sqlite:///{tmp_path / 'cli.sqlite3'}")
    with create_session_factory(engine)() as session:
        value = session.scalar(select(func.count()).select_from(model))
    engine.dispose()
    return value


def test_seed_twice_changes_nothing(tmp_path):
    first = run_cli(tmp_path, "seed", str(DEMO_SEED))
    second = run_cli(tmp_path, "seed", str(DEMO_SEED))

    assert first.returncode == 0, first.stderr
    assert "11 created, 0 updated" in first.stdout
    assert "0 created, 0 updated" in second.stdout
    assert (count(tmp_path, Account), count(tmp_path, Recorder), count(tmp_path, Trader)) == (3, 3, 5)


def test_seed_rejects_unknown_field_naming_it(tmp_path):
    seed = tmp_path / "bad.yaml"
    seed.write_text("accounts:\n  - name: A\n    colour: blue\n")

    result = run_cli(tmp_path, "seed", str(seed))

    assert result.returncode == 2
    assert "colour" in result.stderr
    assert "Traceback" not in result.stderr


def test_seed_rejects_short_webhook_token(tmp_path):
    seed = tmp_path / "short.yaml"
    seed.write_text("recorders:\n  - name: R\n    webhook_token: abc\n")

    result = run_cli(tmp_path, "seed", str(seed))

    assert result.returncode == 2
    assert "at least 16 characters" in result.stderr


def test_create_admin_takes_password_from_environment(tmp_path):
    result = run_cli(tmp_path, "create-admin", "ops@example.com", env_extra={"JT_ADMIN_PASSWORD": "correct-horse-9"})
    again = run_cli(tmp_path, "create-admin", "ops@example.com", env_extra={"JT_ADMIN_PASSWORD": "correct-horse-9"})

    assert result.returncode == 0, result.stderr
    assert count(tmp_path, User) == 1
    assert again.returncode == 2
    assert "already exists" in again.stderr
    assert "correct-horse-9" not in result.stdout + result.stderr


def test_migrate_reports_up_to_date(tmp_path):
    result = run_cli(tmp_path, "migrate")

    assert result.returncode == 0, result.stderr
    assert "is up to date" in result.stdout


def test_migrate_lists_applied_migrations_once(tmp_path):
    first = run_cli(tmp_path, "migrate")
    second = run_cli(tmp_path, "migrate")

    assert "applied migrations 0001, 0002" in first.stdout
    assert "applied migrations" not in second.stdout
    assert "is up to date" in second.stdout


def test_feed_setting_error_is_one_line(tmp_path):
    result = run_cli(tmp_path, "serve", "--port", "0", env_extra={"JT_FEEDS_ENABLED": "maybe"})

    assert result.returncode == 2
    assert "JT_FEEDS_ENABLED='maybe' is not a boolean" in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_database_is_one_line(tmp_path):
    require_component(_postgres_available(), "PostgreSQL on 127.0.0.1:5432")
    # No database of this name exists on the local server, so connecting fails at once.
    url = "postgresql://postgres:not-a-real-password@127.0.0.1:5432/jt_cli_no_such_database"

    result = run_cli(tmp_path, "migrate", env_extra={"DATABASE_URL": url})

    assert result.returncode == 2
    assert "error: cannot open the database postgresql://postgres:***@127.0.0.1:5432/jt_cli_no_such_database" in result.stderr
    assert "does not exist" in result.stderr
    assert "not-a-real-password" not in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(("host", "shown"), [
    ("127.0.0.1", "/webhook/demo-nq-7f3a9c2e41b8d605"),
    ("0.0.0.0", "/webhook/...d605"),
])
def test_serve_prints_full_tokens_on_loopback_only(host, shown, capsys, tmp_path):
    from justtrades import cli
    from justtrades.app import create_app
    from justtrades.config import Settings
    from justtrades.db.engine import transaction
    from justtrades.db.migrate import upgrade
    from justtrades.seed import apply_seed, load_seed_file

    settings = Settings(database_url=f"sqlite:///{tmp_path / 'urls.sqlite3'}", secret_key="test")
    engine = create_database_engine(settings.database_url)
    upgrade(engine)
    engine.dispose()
    app = create_app(settings, start_background=False)
    runtime = app.extensions["justtrades"]
    with transaction(runtime.session_factory) as session:
        apply_seed(session, load_seed_file(DEMO_SEED))

    cli._print_webhook_urls(runtime, host, 5000)
    printed = capsys.readouterr().out
    runtime.stop()

    assert f"webhook for JADNQ: http://127.0.0.1:5000{shown}\n" in printed
    assert ("demo-nq-7f3a9c2e41b8d605" in printed) is (host == "127.0.0.1")
    assert "JT_ADMIN_API_KEY is not set" in printed
