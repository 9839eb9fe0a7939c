"""The recorder execution status explains a trading window that blocks entries now."""

from __future__ import annotations

import datetime as dt

from ..conftest import TEST_API_KEY

# 21:30 UTC is 16:30 in New York, after GOLDSWING's 08:20-13:30 window.
AFTER_WINDOW = dt.datetime(2026, 12, 3, 21, 30, tzinfo=dt.timezone.utc)
IN_WINDOW = dt.datetime(2026, 12, 3, 15, 30, tzinfo=dt.timezone.utc)


def status_of_goldswing(app, moment):
    app.extensions["justtrades"].clock = lambda: moment
    return app.test_client().get("/api/recorders/3/execution-status", headers={"X-API-Key": TEST_API_KEY}).get_json()


def test_outside_window_is_partial_with_issue(app):
    document = status_of_goldswing(app, AFTER_WINDOW)

    assert document["recorder_name"] == "GOLDSWING"
    assert document["execution_capability"] == "partial"
    assert any("trading windows" in issue for issue in document["issues"])


def test_inside_window_is_full(app):
    document = status_of_goldswing(app, IN_WINDOW)

    assert document["execution_capability"] == "full"
    assert document["issues"] == []
