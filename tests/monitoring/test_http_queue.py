"""The HTTP queue gauge: requests that reached waitress in full and wait for a free server thread."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from justtrades.monitoring.snapshots import http_requests_waiting
from justtrades.wsgi import create_server
from tests.conftest import TEST_API_KEY, build_app, stop_waitress

WAIT_SECONDS = 10.0


@pytest.fixture
def one_thread_server(sqlite_url):
    """A platform served by waitress with one thread, and a route that keeps that thread busy until released."""
    app = build_app(sqlite_url, seed=None)
    release = threading.Event()

    @app.get("/test/hold")
    def hold():
        release.wait(WAIT_SECONDS)
        return "released"

    server = create_server(app, "127.0.0.1", 0, threads=1)
    thread = threading.Thread(target=server.run, name="test-http-queue-server", daemon=True)
    thread.start()
    yield app.extensions["justtrades"], f"http://127.0.0.1:{server.effective_port}", release

    release.set()
    stop_waitress(server, thread)
    app.extensions["justtrades"].stop()


def _wait_for(condition, seconds: float = WAIT_SECONDS) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def test_queued_requests_are_counted_until_served(one_thread_server):
    runtime, url, release = one_thread_server

    with ThreadPoolExecutor(max_workers=3) as pool:
        answers = [pool.submit(requests.get, f"{url}/test/hold", timeout=WAIT_SECONDS + 5) for _ in range(3)]
        # One request keeps the only thread busy, so the other two wait in waitress's queue.
        assert _wait_for(lambda: http_requests_waiting(runtime) == 2)

        release.set()
        statuses = [answer.result().status_code for answer in answers]

    assert statuses == [200, 200, 200]
    assert http_requests_waiting(runtime) == 0


def test_http_queue_in_json_endpoints(one_thread_server):
    _, url, release = one_thread_server
    release.set()
    headers = {"X-API-Key": TEST_API_KEY}

    detailed = requests.get(f"{url}/health/detailed", headers=headers, timeout=WAIT_SECONDS).json()
    status = requests.get(f"{url}/api/broker-execution/status", headers=headers, timeout=WAIT_SECONDS).json()

    assert detailed["queues"]["http_requests_waiting"] == 0
    assert status["fast_webhook"]["requests_waiting"] == 0


def test_http_queue_is_zero_without_a_server(sqlite_url):
    app = build_app(sqlite_url, seed=None)
    try:
        assert http_requests_waiting(app.extensions["justtrades"]) == 0
    finally:
        app.extensions["justtrades"].stop()
