"""Thread registry: heartbeats, crash reports without secrets, supervised restarts, and /api/thread-health."""

from __future__ import annotations

import threading

import pytest

from justtrades.daemons import DaemonSettings, ThreadRegistry, redact_error
from tests.feeds.conftest import FAST_THREADS, api_get, feed_settings, make_app, metric, wait_until  # noqa: F401 (make_app is a fixture)


def crash_once(crashed: threading.Event, message: str = "boom"):
    """Return a target that raises on its first run and beats until stopped on later runs."""

    def target(context):
        if not crashed.is_set():
            crashed.set()
            raise RuntimeError(message)
        while not context.wait(0.02):
            context.beat()

    return target


@pytest.fixture
def registry():
    registry = ThreadRegistry(FAST_THREADS)
    yield registry
    registry.stop_all(timeout=3)


def test_crashed_thread_restarts(registry):
    crashed = threading.Event()
    registry.register("worker", crash_once(crashed))
    registry.start()

    state = wait_until(
        lambda: (s := registry.snapshot()["threads"]["worker"])["status"] == "running" and s["restarts"] == 1 and s,
        message="restart",
    )
    assert crashed.is_set()
    assert state["alive"] is True
    assert state["last_error"] == "RuntimeError: boom"
    assert registry.snapshot()["all_running"] is True


def test_crash_shows_error_before_restart():
    registry = ThreadRegistry(DaemonSettings(supervise_interval_seconds=0.05, restart_backoff_base_seconds=1.0,
                                             restart_backoff_max_seconds=1.0, join_timeout_seconds=3.0))
    crashed = threading.Event()
    registry.register("worker", crash_once(crashed))
    registry.start()
    try:
        state = wait_until(lambda: (s := registry.snapshot()["threads"]["worker"])["status"] == "error" and s)
        assert state["alive"] is False
        assert state["restarts"] == 0
        assert registry.snapshot()["all_running"] is False
    finally:
        registry.stop_all(timeout=3)


def test_beats_update_last_beat(registry):
    beats = threading.Event()

    def target(context):
        while not context.wait(0.02):
            context.beat()
            beats.set()

    registry.register("beater", target)
    registry.start()
    first = wait_until(lambda: registry.snapshot()["threads"]["beater"]["last_beat"])
    beats.wait(2)
    later = wait_until(lambda: (b := registry.snapshot()["threads"]["beater"]["last_beat"]) != first and b)
    assert later > first


def test_never_policy_stays_stopped(registry):
    registry.register("once", lambda context: None, restart="never")
    registry.start()

    wait_until(lambda: registry.snapshot()["threads"]["once"]["status"] == "stopped")
    threading.Event().wait(0.3)
    state = registry.snapshot()["threads"]["once"]
    assert state["status"] == "stopped"
    assert state["restarts"] == 0


def test_restart_delay_doubles_to_maximum():
    registry = ThreadRegistry(DaemonSettings(restart_backoff_base_seconds=0.5, restart_backoff_max_seconds=3.0))
    assert [registry.restart_delay(streak) for streak in (1, 2, 3, 4, 5)] == [0.5, 1.0, 2.0, 3.0, 3.0]


def test_stop_all_joins_threads(registry):
    registry.register("loop", lambda context: context.wait(60))
    registry.start()
    wait_until(lambda: registry.snapshot()["threads"]["loop"]["alive"])

    registry.stop_all(timeout=3)
    state = registry.snapshot()["threads"]["loop"]
    assert state["alive"] is False
    assert state["status"] == "stopped"


def test_duplicate_thread_name_rejected(registry):
    registry.register("feed", lambda context: None)
    with pytest.raises(ValueError, match="already registered"):
        registry.register("feed", lambda context: None)


def test_unknown_restart_policy_rejected(registry):
    with pytest.raises(ValueError, match="restart policy 'sometimes'"):
        registry.register("feed", lambda context: None, restart="sometimes")


@pytest.mark.parametrize(
    "text, secret",
    [
        ("login failed: token=abc123def456", "abc123def456"),
        ("401 with Authorization: Bearer sk_live_0123456789", "sk_live_0123456789"),
        ("rejected eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl now", "eyJhbGciOiJIUzI1NiJ9"),
        ("opaque 9f8e7d6c5b4a39281706f5e4d3c2b1a0ffeeddcc in body", "9f8e7d6c5b4a39281706f5e4d3c2b1a0ffeeddcc"),
        ("password: hunter2", "hunter2"),
    ],
)
def test_redact_error_hides_secrets(text, secret):
    redacted = redact_error(RuntimeError(text))
    assert secret not in redacted
    assert "[redacted]" in redacted
    assert redacted.startswith("RuntimeError: ")


def test_redact_error_truncates_long_messages():
    assert len(redact_error(RuntimeError("x " * 500))) == 300


# Through the app: /api/thread-health and the thread metrics.


def test_thread_health_requires_api_key(make_app):
    client = make_app(feed_settings()).test_client()

    assert client.get("/api/thread-health").status_code == 401
    assert client.get("/api/thread-health", headers={"X-API-Key": "wrong"}).status_code == 403


def test_killed_thread_shows_and_comes_back(make_app):
    app = make_app(feed_settings())
    runtime = app.extensions["justtrades"]
    client = app.test_client()
    runtime.threads.register("test-daemon", crash_once(threading.Event(), "simulated crash with token=0123456789abcdef"))

    # The crash shows in the endpoint during the restart backoff (0.3 s in FAST_THREADS).
    body = wait_until(
        lambda: (b := api_get(client, "/api/thread-health").get_json())["threads"]["test-daemon"]["status"] == "error"
        and b,
        interval=0.02,
        message="crash in /api/thread-health",
    )
    assert body["all_running"] is False
    assert body["threads"]["test-daemon"]["alive"] is False
    assert "0123456789abcdef" not in str(body)

    # Then it comes back, counted.
    state = wait_until(
        lambda: (s := api_get(client, "/api/thread-health").get_json()["threads"]["test-daemon"])["status"] == "running"
        and s["restarts"] == 1
        and s,
        message="restart in /api/thread-health",
    )
    assert state["last_error"].startswith("RuntimeError: simulated crash")
    assert "[redacted]" in state["last_error"]
    assert metric(app, "justtrades_thread_up", thread="test-daemon") == 1.0
    assert metric(app, "justtrades_thread_restarts_total", thread="test-daemon") == 1.0
    assert metric(app, "justtrades_thread_last_beat_timestamp_seconds", thread="test-daemon") > 0


def test_thread_metric_down_while_crashed(make_app):
    slow_restarts = DaemonSettings(supervise_interval_seconds=0.05, restart_backoff_base_seconds=30.0,
                                   restart_backoff_max_seconds=30.0, join_timeout_seconds=3.0)
    app = make_app(feed_settings(), threads=slow_restarts)
    runtime = app.extensions["justtrades"]
    runtime.threads.register("test-daemon", crash_once(threading.Event()))

    wait_until(lambda: metric(app, "justtrades_thread_up", thread="test-daemon") == 0.0, message="thread_up 0")
    body = api_get(app.test_client(), "/api/thread-health").get_json()
    assert body["threads"]["test-daemon"]["status"] == "error"
    assert body["all_running"] is False
    assert metric(app, "justtrades_thread_restarts_total", thread="test-daemon") == 0.0
