"""Requests and the database: an unreachable one gives 503 with Retry-After, a NUL character it cannot store gives
400, and its error messages leave out the statement's values."""

from __future__ import annotations

import shutil

import pytest
from sqlalchemy import text

from justtrades.db.engine import create_database_engine
from justtrades.db.migrate import upgrade
from tests.conftest import TEST_API_KEY, build_app


@pytest.fixture
def app_with_database(database_url):
    app = build_app(database_url)
    yield app
    app.extensions["justtrades"].stop()


def test_json_endpoint_answers_503_when_database_gone(tmp_path, caplog):
    folder = tmp_path / "db"
    folder.mkdir()
    url = f"sqlite:///{folder / 'platform.sqlite3'}"
    engine = create_database_engine(url)
    upgrade(engine)
    engine.dispose()
    app = build_app(url)
    runtime = app.extensions["justtrades"]
    try:
        # The SQLite file and its folder vanish, as on a lost volume. Pooled connections are closed, so the next
        # request has to open the file again.
        shutil.rmtree(folder)
        runtime.engine.dispose()

        response = app.test_client().get("/api/webhook-activity", headers={"X-API-Key": TEST_API_KEY})
    finally:
        runtime.stop()

    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
    assert "database unavailable" in response.get_json()["error"]
    assert "/health/detailed" in response.get_json()["error"]
    assert "Traceback" not in caplog.text
    assert "GET /api/webhook-activity failed: database unavailable (OperationalError)" in caplog.text


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_nul_character_reaching_postgresql_is_400(app_with_database, caplog):
    response = app_with_database.test_client().post("/login", data={"email": "ops\x00@example.com", "password": "x"})

    assert response.status_code == 400
    assert "NUL character" in response.get_json()["error"]
    assert "Traceback" not in caplog.text


def test_database_errors_hide_statement_parameters(database_url):
    engine = create_database_engine(database_url)

    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT no_such_column FROM recorders WHERE name = :name"),
                               {"name": "secret-looking-value"})
    except Exception as error:
        message = str(error)
    finally:
        engine.dispose()

    assert "no_such_column" in message
    assert "secret-looking-value" not in message
