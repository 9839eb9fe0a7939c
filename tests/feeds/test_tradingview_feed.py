"""The TradingView feed against a local quote server: prices, delays, silence, outages, polling and JWT refresh."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

import pytest

from tests.feeds.conftest import feed_settings, metric, tradingview_settings, wait_until
from tests.peers.tradingview_ws import TradingViewPeer, make_jwt


@pytest.fixture
def peer():
    with TradingViewPeer() as peer:
        yield peer


def start_feed(make_app, peer: TradingViewPeer, **overrides):
    settings = tradingview_settings(ws_url=peer.ws_url, **overrides)
    app = make_app(feed_settings(tradingview=settings))
    return app, app.test_client()


def status(client) -> dict:
    return client.get("/api/tradingview/status").get_json()


def test_feed_caches_subscribed_prices(peer, make_app):
    jwt = make_jwt(3600)
    peer.accepted_jwts.add(jwt)
    app, client = start_feed(make_app, peer, jwt=jwt)

    body = wait_until(lambda: (b := status(client))["websocket_connected"] and len(b["cached_prices"]) == 8 and b)

    assert body["subscribed_symbols"] == ["NQ", "ES", "GC", "MNQ", "MGC", "CL", "SI", "MES"]
    assert body["cached_prices"]["NQ"]["last"] == 21534.75
    assert body["cached_prices"]["SI"]["last"] == 32.455
    assert body["cached_prices"]["NQ"]["updated"].endswith("Z")
    assert body["jwt_token_valid"] is True
    assert body["delayed"] is False
    assert body["update_mode"] == "streaming"
    assert body["polling_fallback_active"] is False
    assert body["last_message_at"] is not None
    assert peer.auth_tokens == [jwt]
    assert sorted(peer.subscribed[0]) == sorted(
        ["CME_MINI:NQ1!", "CME_MINI:ES1!", "COMEX:GC1!", "CME_MINI:MNQ1!", "COMEX:MGC1!", "NYMEX:CL1!", "COMEX:SI1!",
         "CME_MINI:MES1!"]
    )
    assert jwt not in json.dumps(body)


def test_feed_echoes_heartbeats(peer, make_app):
    start_feed(make_app, peer)
    wait_until(lambda: peer.heartbeat_echoes >= 2, message="two heartbeat echoes")


def test_price_snapshot_gives_decimals(peer, make_app):
    app, client = start_feed(make_app, peer)
    feed = app.extensions["justtrades"].price_feed

    prices = wait_until(lambda: (p := feed.price_snapshot()).get("GC") and p)

    last, updated = prices["GC"]
    assert last == Decimal("2945.3")
    assert isinstance(last, Decimal)
    assert updated.tzinfo is dt.timezone.utc
    assert prices.connected is True
    assert prices.source == "websocket"
    assert feed.latest_price("gc").last == Decimal("2945.3")


def test_partial_updates_merge_into_cache(peer, make_app):
    app, client = start_feed(make_app, peer)
    wait_until(lambda: "NQ" in status(client)["cached_prices"])

    peer.prices["CME_MINI:NQ1!"] = Decimal("21600.25")

    wait_until(lambda: status(client)["cached_prices"]["NQ"]["last"] == 21600.25, message="partial lp update")
    assert status(client)["cached_prices"]["ES"]["last"] == 6120.5


def test_metrics_mirror_status(peer, make_app):
    app, client = start_feed(make_app, peer)
    wait_until(lambda: len(status(client)["cached_prices"]) == 8)

    body = status(client)
    assert metric(app, "justtrades_tradingview_websocket_connected") == 1.0
    assert metric(app, "justtrades_price", symbol="NQ") == body["cached_prices"]["NQ"]["last"] or \
        metric(app, "justtrades_price", symbol="NQ") == 21534.75
    assert metric(app, "justtrades_price_last_update_timestamp_seconds", symbol="ES") > 0
    assert metric(app, "justtrades_tradingview_last_message_timestamp_seconds") > 0
    assert metric(app, "justtrades_tradingview_reconnects_total") == 0.0
    assert metric(app, "justtrades_tradingview_jwt_valid") == 0.0
    assert metric(app, "justtrades_price", symbol="ZB") is None


def test_unauthorized_token_gives_delayed_quotes(peer, make_app):
    app, client = start_feed(make_app, peer)

    body = wait_until(lambda: (b := status(client))["delayed"] and b, message="delayed report")

    assert peer.auth_tokens[0] == "unauthorized_user_token"
    assert body["update_mode"] == "delayed_streaming_600"
    assert body["jwt_token_valid"] is False
    assert metric(app, "justtrades_tradingview_delayed") == 1.0


def test_delayed_mode_reported_despite_valid_jwt(peer, make_app):
    jwt = make_jwt(3600)
    peer.accepted_jwts.add(jwt)
    peer.set_mode("delayed")
    app, client = start_feed(make_app, peer, jwt=jwt)

    body = wait_until(lambda: (b := status(client))["delayed"] and b, message="delayed report")

    assert body["jwt_token_valid"] is True
    assert body["update_mode"].startswith("delayed_streaming")
    assert app.extensions["justtrades"].price_feed.price_snapshot().delayed is True


def test_silent_server_closed_after_deadline(peer, make_app):
    peer.set_mode("silent")
    app, client = start_feed(make_app, peer, liveness_deadline_seconds=0.6)

    wait_until(lambda: peer.connections >= 1)
    body = wait_until(lambda: (b := status(client))["reconnects"] >= 1 and b, timeout=5, message="reconnect after silence")
    assert body["last_error"].startswith("FeedStalled: no message")
    assert body["cached_prices"] == {}

    # Recovers by itself once the server talks again.
    peer.set_mode("normal")
    wait_until(lambda: (b := status(client))["websocket_connected"] and "NQ" in b["cached_prices"], timeout=5,
               message="recovery after silence")
    assert metric(app, "justtrades_tradingview_websocket_connected") == 1.0


def test_silent_server_reported_disconnected(peer, make_app):
    peer.set_mode("silent")
    app, client = start_feed(make_app, peer, liveness_deadline_seconds=0.5, backoff_base_seconds=2.0,
                             backoff_max_seconds=2.0)

    # During the backoff after the deadline the socket is down, and the endpoint and the metric report it.
    wait_until(lambda: status(client)["reconnects"] >= 1 or peer.connections >= 1)
    wait_until(lambda: not status(client)["websocket_connected"] and status(client)["last_error"], timeout=3)
    assert metric(app, "justtrades_tradingview_websocket_connected") == 0.0


def test_stopped_server_falls_back_to_polling(peer, make_app):
    peer.poll_prices["CME_MINI:NQ1!"] = Decimal("19999.5")
    app, client = start_feed(make_app, peer, poll_url=peer.http_url + "/scan")
    wait_until(lambda: (b := status(client))["websocket_connected"] and "NQ" in b["cached_prices"])
    assert status(client)["polling_fallback_active"] is False
    polls_while_connected = peer.scan_requests

    peer.stop_websocket()

    body = wait_until(lambda: (b := status(client))["polling_fallback_active"] and b, timeout=5, message="polling")
    assert body["websocket_connected"] is False
    assert body["price_source"] == "polling"
    assert body["cached_prices"]["NQ"]["last"] == 19999.5
    assert peer.scan_requests > polls_while_connected
    assert metric(app, "justtrades_tradingview_polling_fallback_active") == 1.0
    assert metric(app, "justtrades_tradingview_websocket_connected") == 0.0

    # The websocket comes back on the same port and takes over again.
    peer.start_websocket()
    body = wait_until(lambda: (b := status(client))["websocket_connected"] and b["cached_prices"]["NQ"]["last"] == 21534.75
                      and b, timeout=5, message="websocket recovery")
    assert body["polling_fallback_active"] is False
    assert body["reconnects"] >= 1
    assert metric(app, "justtrades_tradingview_polling_fallback_active") == 0.0


def test_stopped_server_without_polling(peer, make_app):
    app, client = start_feed(make_app, peer)
    wait_until(lambda: status(client)["websocket_connected"])

    peer.stop_websocket()

    body = wait_until(lambda: (b := status(client))["reconnects"] >= 2 and b, timeout=5)
    assert body["websocket_connected"] is False
    assert body["polling_fallback_active"] is False
    assert body["last_error"]


def test_dropping_server_counts_reconnects(peer, make_app):
    peer.set_mode("drop")
    app, client = start_feed(make_app, peer)

    wait_until(lambda: status(client)["reconnects"] >= 3, timeout=5, message="three reconnects")
    assert metric(app, "justtrades_tradingview_reconnects_total") >= 3

    peer.set_mode("normal")
    wait_until(lambda: (b := status(client))["websocket_connected"] and b["cached_prices"], timeout=5)


def test_session_refresh_fetches_jwt(peer, make_app, tmp_path):
    session_file = tmp_path / "tradingview-session.json"
    app, client = start_feed(make_app, peer, session_id=peer.session_id, session_file=session_file,
                             jwt_refresh_url=peer.http_url + "/chart/")

    body = wait_until(lambda: (b := status(client))["jwt_token_valid"] and b["update_mode"] == "streaming" and b,
                      timeout=5, message="refreshed JWT in use")
    auth = client.get("/api/tradingview/auth-status").get_json()

    assert peer.jwt_requests >= 1
    assert peer.auth_tokens[-1] == peer.issued_jwts[-1]
    assert body["auto_refresh_enabled"] is True
    assert body["session_updated_at"] is not None
    assert auth == {
        "has_credentials": True,
        "session_file_exists": True,
        "cookies_valid": True,
        "auto_refresh_enabled": True,
        "jwt_token_valid": True,
        "jwt_expires_at": auth["jwt_expires_at"],
        "last_refresh_at": auth["last_refresh_at"],
        "message": "TradingView session active with valid JWT",
    }
    assert json.loads(session_file.read_text())["auth_token"] == peer.issued_jwts[-1]
    for secret in (peer.session_id, peer.issued_jwts[-1]):
        assert secret not in json.dumps(auth)
        assert secret not in json.dumps(body)


def test_expired_jwt_renewed_automatically(peer, make_app):
    expired = make_jwt(-60)
    app, client = start_feed(make_app, peer, jwt=expired, session_id=peer.session_id,
                             jwt_refresh_url=peer.http_url + "/chart/")

    wait_until(lambda: status(client)["jwt_token_valid"], timeout=5, message="renewed JWT")
    assert metric(app, "justtrades_tradingview_jwt_valid") == 1.0
    wait_until(lambda: peer.auth_tokens and peer.auth_tokens[-1] == peer.issued_jwts[-1], timeout=5)


def test_rejected_cookies_reported(peer, make_app):
    app, client = start_feed(make_app, peer, session_id="stale-cookie", jwt_refresh_url=peer.http_url + "/chart/")

    auth = wait_until(lambda: (a := client.get("/api/tradingview/auth-status").get_json())["message"].startswith(
        "TradingView rejected") and a, timeout=5)

    assert auth["cookies_valid"] is False
    assert auth["has_credentials"] is True
    assert auth["jwt_token_valid"] is False
    assert "stale-cookie" not in json.dumps(auth)


def test_auth_status_without_credentials(peer, make_app):
    app, client = start_feed(make_app, peer)

    auth = client.get("/api/tradingview/auth-status").get_json()

    assert auth["has_credentials"] is False
    assert auth["session_file_exists"] is False
    assert auth["cookies_valid"] is False
    assert auth["auto_refresh_enabled"] is False
    assert "unauthorized token" in auth["message"]


def test_manual_refresh_reconnects_and_is_rate_limited(peer, make_app):
    app, client = start_feed(make_app, peer, session_id=peer.session_id, jwt_refresh_url=peer.http_url + "/chart/",
                             manual_refresh_min_interval_seconds=30.0)
    wait_until(lambda: status(client)["websocket_connected"] and status(client)["jwt_token_valid"], timeout=5)
    connections_before = peer.connections
    jwt_requests_before = peer.jwt_requests

    response = client.post("/api/tradingview/refresh")

    assert response.status_code == 200
    assert response.get_json() == {"success": True, "message": "TradingView session refreshed, WebSocket reconnecting"}
    assert peer.jwt_requests == jwt_requests_before + 1
    wait_until(lambda: peer.connections > connections_before, timeout=5, message="new connection")

    again = client.post("/api/tradingview/refresh")
    assert again.status_code == 429
    assert again.get_json()["success"] is False
    assert 1 <= int(again.headers["Retry-After"]) <= 30


def test_manual_refresh_without_cookies(peer, make_app):
    app, client = start_feed(make_app, peer)
    wait_until(lambda: status(client)["websocket_connected"])
    connections_before = peer.connections

    response = client.post("/api/tradingview/refresh")

    assert response.status_code == 200
    assert response.get_json()["success"] is True
    wait_until(lambda: peer.connections > connections_before, timeout=5)


def test_market_data_status(peer, make_app):
    app, client = start_feed(make_app, peer)
    wait_until(lambda: len(status(client)["cached_prices"]) == 8)

    body = client.get("/api/market-data/status").get_json()

    assert body["symbol_count"] == 8
    assert body["cached_prices"]["ES"] == 6120.5
    assert body["last_update"].endswith("Z")
    assert body["available_tokens"] == 0
    assert metric(app, "justtrades_market_data_tokens_available") == 0.0


def test_disabled_feed_reports_disconnected(make_app):
    app = make_app(feed_settings())
    client = app.test_client()

    body = status(client)
    assert body["enabled"] is False
    assert body["websocket_connected"] is False
    assert body["cached_prices"] == {}
    assert "tradingview-feed" not in client.get("/api/thread-health", headers={"X-API-Key": "test-admin-key-0123456789"}).get_json()["threads"]
    assert client.post("/api/tradingview/refresh").status_code == 503


def test_feed_threads_in_thread_health(peer, make_app):
    app, client = start_feed(make_app, peer)

    threads = client.get("/api/thread-health", headers={"X-API-Key": "test-admin-key-0123456789"}).get_json()["threads"]

    for name in ("tradingview-feed", "tradingview-poller", "tradingview-session"):
        assert threads[name]["status"] == "running"


def test_crashed_feed_thread_comes_back(peer, make_app, monkeypatch):
    app, client = start_feed(make_app, peer)
    feed = app.extensions["justtrades"].price_feed
    wait_until(lambda: status(client)["websocket_connected"])
    handle_message = feed._handle_message
    crashed = []

    def crash_once(ws, message):
        if not crashed:
            crashed.append(message)
            raise RuntimeError("simulated bug while handling a message")
        return handle_message(ws, message)

    monkeypatch.setattr(feed, "_handle_message", crash_once)

    def feed_thread():
        return client.get("/api/thread-health", headers={"X-API-Key": "test-admin-key-0123456789"}).get_json()["threads"][
            "tradingview-feed"
        ]

    state = wait_until(lambda: (t := feed_thread())["status"] == "running" and t["restarts"] == 1 and t, timeout=5)
    assert state["last_error"] == "RuntimeError: simulated bug while handling a message"
    wait_until(lambda: status(client)["websocket_connected"], timeout=5, message="reconnect after the restart")
    assert metric(app, "justtrades_thread_restarts_total", thread="tradingview-feed") == 1.0
