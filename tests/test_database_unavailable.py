"""A request that fails because the database is unreachable gets 503 with Retry-After, never a 500."""

from __future__ import annotations

import shutil

from justtrades.db.engine import create_database_engine
from justtrades.db.migrate import upgrade
from tests.conftest import TEST_API_KEY, build_app


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
