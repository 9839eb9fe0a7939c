"""Migration 0008: raw webhook rows trade their webhook tokens for digests, on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import hashlib

from sqlalchemy import inspect, text

from justtrades.db import migrate
from justtrades.db.engine import create_database_engine

RECORDER_TOKEN = "raw-migration-recorder-5f1c2a9e"
STRANGER_TOKEN = "someone-elses-guess-0000beef"
SHORT_TOKEN = "short"
RECEIVED_AT = dt.datetime(2026, 3, 11, 15, 0, tzinfo=dt.timezone.utc)


def _sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _at_0007_with_raw_rows(url: str):
    engine = create_database_engine(url)
    migrate.upgrade(engine, "0007")
    with engine.begin() as connection:
        connection.execute(text(
            "INSERT INTO recorders (name, webhook_token, enabled, trading_windows, cooldown_seconds, created_at) "
            "VALUES ('RAWMIG', :token, true, '', 0, :created_at)"
        ), {"token": RECORDER_TOKEN, "created_at": RECEIVED_AT})
        for token in (RECORDER_TOKEN, STRANGER_TOKEN, SHORT_TOKEN):
            connection.execute(text(
                "INSERT INTO raw_webhooks (received_at, webhook_token, size_bytes, body, truncated) "
                "VALUES (:received_at, :token, 2, '{}', false)"
            ), {"received_at": RECEIVED_AT, "token": token})
    return engine


def _raw_rows(engine) -> list[dict]:
    with engine.connect() as connection:
        return [dict(row._mapping) for row in connection.execute(text("SELECT * FROM raw_webhooks ORDER BY id"))]


def test_upgrade_replaces_tokens_with_digests(empty_database_url):
    engine = _at_0007_with_raw_rows(empty_database_url)
    try:
        migrate.upgrade(engine, "head")
        rows = _raw_rows(engine)
        columns = {column["name"] for column in inspect(engine).get_columns("raw_webhooks")}
    finally:
        engine.dispose()

    assert "webhook_token" not in columns
    assert [row["token_sha256"] for row in rows] == [_sha256(RECORDER_TOKEN), _sha256(STRANGER_TOKEN),
                                                      _sha256(SHORT_TOKEN)]
    assert [row["token_tail"] for row in rows] == ["2a9e", "beef", ""]
    stored = repr(rows)
    assert RECORDER_TOKEN not in stored
    assert STRANGER_TOKEN not in stored


def test_downgrade_restores_recorder_tokens(empty_database_url):
    engine = _at_0007_with_raw_rows(empty_database_url)
    try:
        migrate.upgrade(engine, "head")
        migrate.downgrade(engine, "0007")
        rows = _raw_rows(engine)
    finally:
        engine.dispose()

    # A digest gives back only the tokens of recorders that still exist.
    assert [row["webhook_token"] for row in rows] == [RECORDER_TOKEN, "", ""]
    assert "token_sha256" not in rows[0]
