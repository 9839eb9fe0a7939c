"""The paper trading service status, driven by paper fills through the whole signal path."""

from __future__ import annotations

import datetime as dt

from ..execution.test_execution import ES_TOKEN, REFERENCE_TIME, send, wait_for_jobs


def test_status_before_any_trade(client):
    document = client.get("/api/paper-trades/service-status").get_json()

    assert document == {
        "v2_database_exists": True,
        "total_paper_trades": 0,
        "open_count": 0,
        "closed_count": 0,
        "last_close_time": None,
    }


def test_round_trip_opens_then_closes_a_trade(running_app):
    running_app.extensions["justtrades"].clock = lambda: REFERENCE_TIME
    client = running_app.test_client()

    send(running_app, ES_TOKEN, '{"action":"buy","ticker":"ES1!","price":6120.5}')
    wait_for_jobs(running_app)
    opened = client.get("/api/paper-trades/service-status").get_json()
    send(running_app, ES_TOKEN, '{"action":"exit","ticker":"ES1!","price":6121.5}')
    wait_for_jobs(running_app)
    closed = client.get("/api/paper-trades/service-status").get_json()

    assert (opened["open_count"], opened["closed_count"]) == (1, 0)
    assert (closed["open_count"], closed["closed_count"], closed["total_paper_trades"]) == (0, 1, 1)
    last_close = dt.datetime.fromisoformat(closed["last_close_time"].replace("Z", "+00:00"))
    assert abs((dt.datetime.now(dt.timezone.utc) - last_close).total_seconds()) < 60
    metrics = client.get("/metrics").get_data(as_text=True)
    assert 'justtrades_paper_trades{state="closed"} 1.0' in metrics
    assert "justtrades_paper_last_close_timestamp_seconds" in metrics
