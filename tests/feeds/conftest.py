"""Fixtures for the feed tests: apps whose feeds point at local peers, and a bounded wait."""

from __future__ import annotations

import os
import time

# The suite must never reach TradingView or Tradovate: apps built without explicit feed settings run no feed daemon.
os.environ.setdefault("JT_FEEDS_ENABLED", "false")

import pytest  # noqa: E402
from prometheus_client import generate_latest  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from justtrades.daemons import DaemonSettings  # noqa: E402
from justtrades.feeds.settings import (  # noqa: E402
    FeedSettings,
    PositionMonitorSettings,
    TokenRefreshSettings,
    TradingViewSettings,
)
from tests.conftest import TEST_API_KEY  # noqa: E402

# A port nothing listens on: settings for peers a test does not use point here, never at a real host.
UNUSED_URL = "ws://127.0.0.1:9/unused"
FAST_THREADS = DaemonSettings(
    supervise_interval_seconds=0.05, restart_backoff_base_seconds=0.3, restart_backoff_max_seconds=1.0,
    join_timeout_seconds=3.0,
)


def wait_until(predicate, timeout: float = 10.0, interval: float = 0.05, message: str = "condition"):
    """Poll `predicate` until it returns a truthy value; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    pytest.fail(f"{message} not reached within {timeout}s")


def tradingview_settings(**overrides) -> TradingViewSettings:
    values = dict(
        ws_url=UNUSED_URL, poll_url="", jwt_refresh_url="http://127.0.0.1:9/chart/", connect_timeout_seconds=2.0,
        liveness_deadline_seconds=1.0, backoff_base_seconds=0.1, backoff_max_seconds=0.4, poll_interval_seconds=0.2,
        http_timeout_seconds=2.0, session_check_seconds=0.2, manual_refresh_min_interval_seconds=30.0,
    )
    values.update(overrides)
    return TradingViewSettings(**values)


def position_settings(**overrides) -> PositionMonitorSettings:
    values = dict(
        ws_url_demo=UNUSED_URL, ws_url_live=UNUSED_URL, connect_timeout_seconds=2.0, response_timeout_seconds=2.0,
        heartbeat_seconds=0.2, stats_window_seconds=0.5, stale_windows=3, backoff_base_seconds=0.1,
        backoff_max_seconds=0.4, reload_seconds=0.3,
    )
    values.update(overrides)
    return PositionMonitorSettings(**values)


def feed_settings(tradingview=None, position_monitor=None, token_refresh=None) -> FeedSettings:
    """Feed settings with only the given daemons enabled, every URL on 127.0.0.1."""
    return FeedSettings(
        tradingview=tradingview or tradingview_settings(enabled=False),
        position_monitor=position_monitor or position_settings(enabled=False),
        token_refresh=token_refresh or TokenRefreshSettings(enabled=False),
    )


@pytest.fixture
def make_app(sqlite_url):
    """Build started apps on a migrated SQLite database; every app is stopped at the end of the test."""
    from justtrades.app import create_app
    from justtrades.config import Settings

    apps = []

    def build(feeds: FeedSettings, *, database_url: str = sqlite_url, start_background: bool = True, **components):
        settings = Settings(database_url=database_url, admin_api_key=TEST_API_KEY, secret_key="test-secret",
                            worker_poll_seconds=0.2, broker_workers=1)
        components.setdefault("threads", FAST_THREADS)
        app = create_app(settings, start_background=start_background, feeds=feeds, **components)
        app.config["TESTING"] = True
        apps.append(app)
        return app

    yield build
    for app in apps:
        app.extensions["justtrades"].stop()


def api_get(client, path: str):
    return client.get(path, headers={"X-API-Key": TEST_API_KEY})


def scrape(app) -> dict[tuple[str, tuple], float]:
    """Return every sample of the app's registry as {(name, sorted labels): value}."""
    text = generate_latest(app.extensions["justtrades"].registry).decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def metric(app, name: str, **labels) -> float | None:
    return scrape(app).get((name, tuple(sorted(labels.items()))))
