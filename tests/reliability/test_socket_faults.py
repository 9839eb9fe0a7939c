"""Half-open, slow and flapping connections for both WebSocket clients: the TradingView price feed and the
Tradovate position monitor.

Each client talks to its local peer through a ChaosProxy. A half-open or too slow connection must be detected
within the client's deadline; reconnects must back off, so the proxy records a bounded number of connection attempts
over a window instead of a storm; a slow connection within the deadline must not be dropped; and once the path is
healthy again the client must be back within its maximum backoff.
"""

from __future__ import annotations

import time
from urllib.parse import urlsplit, urlunsplit

import pytest
from sqlalchemy import text

from justtrades.db.engine import create_database_engine, create_session_factory, transaction
from justtrades.db.models import Account
from tests.conftest import TEST_API_KEY
from tests.feeds.conftest import FAST_THREADS, feed_settings, position_settings, tradingview_settings
from tests.peers.tradingview_ws import TradingViewPeer
from tests.peers.tradovate_ws import TradovateSocketPeer

from .chaos_proxy import ChaosProxy
from .support import report_result, wait_until

BACKOFF_BASE = 0.2
BACKOFF_MAX = 1.6
CONNECT_TIMEOUT = 1.0
# Silence each client tolerates: the TradingView liveness deadline; 2 empty stats windows of 0.5 s for Tradovate.
DEADLINE = 1.0
DETECTION_MARGIN = 1.5  # thread scheduling on a loaded two-core machine
OBSERVATION_WINDOW = 6.0
TOKEN = "tok-chaos-0123456789abcdef"


def through(proxy: ChaosProxy, url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, f"127.0.0.1:{proxy.port}", parts.path, parts.query, ""))


class TradingViewClient:
    name = "tradingview"
    # A connection up this long counts as healthy, so its failure starts the backoff again from the base. It must
    # exceed CONNECT_TIMEOUT, because the feed counts from the start of the attempt.
    stable_seconds = 2.0

    def __init__(self, make_app):
        self._make_app = make_app
        self.app = None

    def peer(self):
        return TradingViewPeer(heartbeat_seconds=0.3)

    def peer_url(self, peer) -> str:
        return peer.ws_url

    def start(self, url: str) -> None:
        settings = tradingview_settings(ws_url=url, liveness_deadline_seconds=DEADLINE, backoff_base_seconds=BACKOFF_BASE,
                                        backoff_max_seconds=BACKOFF_MAX, connect_timeout_seconds=CONNECT_TIMEOUT,
                                        stable_connection_seconds=self.stable_seconds, poll_url="")
        self.app = self._make_app(feed_settings(tradingview=settings))

    def healthy(self) -> bool:
        snapshot = self.app.extensions["justtrades"].price_feed.snapshot()
        return snapshot["websocket_connected"] and bool(snapshot["cached_prices"])

    def connected(self) -> bool:
        return self.app.extensions["justtrades"].price_feed.snapshot()["websocket_connected"]

    def disconnects(self) -> int:
        return self.app.extensions["justtrades"].price_feed.snapshot()["reconnects"]


class PositionMonitorClient:
    name = "position_monitor"
    # One silence-detection period subscribed (stats window x stale windows) counts as healthy.
    stable_seconds = 0.5 * 2

    def __init__(self, make_app, database_url: str):
        self._make_app = make_app
        self._database_url = database_url
        self.app = None

    def peer(self):
        return TradovateSocketPeer(valid_tokens={TOKEN}, heartbeat_seconds=0.25)

    def peer_url(self, peer) -> str:
        return peer.url

    def start(self, url: str) -> None:
        engine = create_database_engine(self._database_url)
        with transaction(create_session_factory(engine)) as session:
            session.execute(text("DELETE FROM accounts"))
            session.add(Account(id=1, name="Chaos", broker="tradovate", environment="demo", broker_account_id=26029294,
                                token_group="chaos", access_token=TOKEN, auth_status="valid", enabled=True))
        engine.dispose()
        settings = position_settings(ws_url_demo=url, ws_url_live=url, heartbeat_seconds=0.2, stats_window_seconds=0.5,
                                     stale_windows=2, response_timeout_seconds=CONNECT_TIMEOUT,
                                     connect_timeout_seconds=CONNECT_TIMEOUT, backoff_base_seconds=BACKOFF_BASE,
                                     backoff_max_seconds=BACKOFF_MAX)
        self.app = self._make_app(feed_settings(position_monitor=settings), database_url=self._database_url)

    def _connections(self) -> list[dict]:
        return self.app.extensions["justtrades"].position_monitor.snapshot()["connections"]

    def healthy(self) -> bool:
        connections = self._connections()
        return len(connections) == 1 and connections[0]["state"] == "subscribed"

    def connected(self) -> bool:
        connections = self._connections()
        return bool(connections) and connections[0]["state"] in ("authenticated", "subscribed", "stale")

    def disconnects(self) -> int:
        connections = self._connections()
        return connections[0]["errors"] if connections else 0


@pytest.fixture
def make_app(sqlite_url):
    """Build started apps whose feeds use the given settings; every app is stopped at the end of the test."""
    from justtrades.app import create_app
    from justtrades.config import Settings

    apps = []

    def build(feeds, *, database_url: str = sqlite_url):
        settings = Settings(database_url=database_url, admin_api_key=TEST_API_KEY, secret_key="test", broker_workers=1)
        app = create_app(settings, feeds=feeds, threads=FAST_THREADS)
        apps.append(app)
        return app

    yield build
    for app in apps:
        app.extensions["justtrades"].stop()


@pytest.fixture(params=["tradingview", "position_monitor"])
def client(request, make_app, sqlite_url):
    if request.param == "tradingview":
        return TradingViewClient(make_app)
    return PositionMonitorClient(make_app, sqlite_url)


@pytest.fixture
def chaos(client):
    """The client connected to its peer through a proxy in pass mode."""
    with client.peer() as peer, ChaosProxy(urlsplit(client.peer_url(peer)).port) as proxy:
        client.start(through(proxy, client.peer_url(peer)))
        wait_until(client.healthy, 10, f"{client.name} never connected through the proxy")
        yield proxy


def _attempts_over_window(proxy: ChaosProxy) -> int:
    start = time.monotonic()
    time.sleep(OBSERVATION_WINDOW)
    return proxy.accepted_between(start, time.monotonic())


def _max_attempts(window: float, attempt_seconds: float) -> int:
    """Return the maximum number of connection attempts a client backing off from BACKOFF_BASE to BACKOFF_MAX can make in `window`.

    Each attempt takes at least `attempt_seconds` before it fails, and the wait after attempt n is at least half
    of min(BACKOFF_MAX, BACKOFF_BASE * 2**n) (the other half is random).
    """
    elapsed, attempts = 0.0, 0
    while elapsed < window:
        elapsed += attempt_seconds + min(BACKOFF_MAX, BACKOFF_BASE * 2 ** attempts) / 2
        attempts += 1
    return attempts + 1  # one attempt may already be on its way when the window opens


def _recovers(client, proxy) -> float:
    proxy.set_mode("pass")
    started = time.monotonic()
    wait_until(client.healthy, BACKOFF_MAX + 2 * CONNECT_TIMEOUT + 3, f"{client.name} did not recover")
    return time.monotonic() - started


def test_half_open_detected_and_retried_gently(client, chaos):
    chaos.set_mode("blackhole")
    went_dark = time.monotonic()
    wait_until(lambda: not client.connected(), DEADLINE + DETECTION_MARGIN + 1, f"{client.name} kept a dead socket")
    detected_after = time.monotonic() - went_dark

    attempts = _attempts_over_window(chaos)
    recovered_after = _recovers(client, chaos)

    report_result(f"socket_half_open_{client.name}", detected_after_seconds=round(detected_after, 2),
                  attempts_in_window=attempts, window_seconds=OBSERVATION_WINDOW,
                  recovered_after_seconds=round(recovered_after, 2))
    assert detected_after <= DEADLINE + DETECTION_MARGIN
    assert 2 <= attempts <= _max_attempts(OBSERVATION_WINDOW, CONNECT_TIMEOUT)


def test_slow_within_deadline_keeps_connection(client, chaos):
    disconnects_before = client.disconnects()

    chaos.set_mode("slow", delay_seconds=0.2)
    time.sleep(3)

    assert client.disconnects() == disconnects_before
    assert client.healthy()


def test_slower_than_deadline_detected(client, chaos):
    chaos.set_mode("slow", delay_seconds=3 * DEADLINE)
    went_slow = time.monotonic()
    wait_until(lambda: not client.connected(), DEADLINE + DETECTION_MARGIN + 1, f"{client.name} kept a stalled socket")
    detected_after = time.monotonic() - went_slow

    attempts = _attempts_over_window(chaos)
    _recovers(client, chaos)

    assert detected_after <= DEADLINE + DETECTION_MARGIN
    assert 1 <= attempts <= _max_attempts(OBSERVATION_WINDOW, CONNECT_TIMEOUT)


def test_flapping_peer_causes_no_storm(client, chaos):
    chaos.set_mode("flap", flap_seconds=0.3)

    attempts = _attempts_over_window(chaos)
    recovered_after = _recovers(client, chaos)

    report_result(f"socket_flapping_{client.name}", attempts_in_window=attempts, window_seconds=OBSERVATION_WINDOW,
                  recovered_after_seconds=round(recovered_after, 2))
    # A connection lives 0.3 s before its reset, so that is the shortest attempt.
    assert 2 <= attempts <= _max_attempts(OBSERVATION_WINDOW, 0.3)


def test_blip_after_stable_connection_reconnects_fast(client, chaos):
    """Backoff grows over failures in a row, not over the life of the process."""
    for _ in range(4):
        wait_until(client.healthy, 10, f"{client.name} did not come back after a blip")
        time.sleep(client.stable_seconds + 0.5)
        blip = time.monotonic()
        chaos.reset_connections()

    reconnected = wait_until(lambda: chaos.accepted_after(blip), 10, f"{client.name} never reconnected")
    delay = reconnected[0] - blip

    report_result(f"socket_blip_{client.name}", reconnect_seconds_after_fourth_blip=round(delay, 2))
    # From the base, the wait is at most BACKOFF_BASE; four growing failures in a row would wait 0.8 to 1.6 s.
    assert delay < 4 * BACKOFF_BASE
