"""The position monitor against a local Tradovate-style socket: startup, events, auth failures, silence, drops."""

from __future__ import annotations

import json
import logging

import pytest
from sqlalchemy import text

from justtrades.db.engine import create_database_engine, create_session_factory, transaction
from justtrades.db.models import Account, Recorder, Trader
from justtrades.feeds import tradovate_protocol as protocol
from tests.feeds.conftest import api_get, feed_settings, metric, position_settings, wait_until
from tests.peers.tradovate_ws import TradovateSocketPeer

TOKEN_A = "tok-aaaaaaaaaaaaaaaa-123456"
TOKEN_B = "tok-bbbbbbbbbbbbbbbb-654321"


def tradovate_account(account_id, name, broker_account_id, group, token, **fields) -> Account:
    return Account(id=account_id, name=name, broker="tradovate", environment="demo", broker_account_id=broker_account_id,
                   token_group=group, access_token=token, auth_status="valid", enabled=True, **fields)


@pytest.fixture
def accounts(sqlite_url):
    """Two token groups: grp-a with two accounts sharing TOKEN_A, grp-b with one account on TOKEN_B."""
    engine = create_database_engine(sqlite_url)
    with transaction(create_session_factory(engine)) as session:
        session.add_all([
            tradovate_account(1, "Demo A1", 26029294, "grp-a", TOKEN_A),
            tradovate_account(2, "Demo A2", 26029295, "grp-a", TOKEN_A),
            tradovate_account(3, "Demo B1", 26029300, "grp-b", TOKEN_B),
            Account(id=4, name="Paper", broker="paper"),
            Recorder(id=1, name="JADNQ", webhook_token="wh-1"),
        ])
        session.flush()
        session.add_all([Trader(id=1, recorder_id=1, account_id=1), Trader(id=2, recorder_id=1, account_id=3)])
    engine.dispose()
    return sqlite_url


@pytest.fixture
def peer():
    with TradovateSocketPeer(valid_tokens={TOKEN_A, TOKEN_B}) as peer:
        yield peer


@pytest.fixture
def monitor_logs(caplog):
    caplog.set_level(logging.INFO, logger="position_monitor")
    return caplog


def start_monitor(make_app, peer, **overrides):
    settings = position_settings(ws_url_demo=peer.url, ws_url_live=peer.url, **overrides)
    app = make_app(feed_settings(position_monitor=settings))
    return app, app.test_client()


def status(client) -> dict:
    return api_get(client, "/api/position-monitor/status").get_json()


def subscribed(client, count: int = 2):
    return (body := status(client))["connections_by_state"]["subscribed"] == count and body


def monitor_lines(caplog) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.name == "position_monitor"]


def test_startup_sequence_logged(peer, accounts, monitor_logs, make_app):
    app, client = start_monitor(make_app, peer)

    wait_until(lambda: subscribed(client), message="two subscribed sockets")
    lines = monitor_lines(monitor_logs)

    expected = [
        "Position WebSocket monitor daemon thread started",
        "Starting Position WebSocket Monitor...",
        "Built subaccount->recorder map: 2 subaccounts, 2 recorder mappings",
        "Account groups query returned 3 rows",
        "Position monitor: 2 token group(s), 3 total accounts",
    ]
    assert lines[: len(expected)] == expected
    assert "[...123456] Connecting to Tradovate (2 accounts, demo)" in lines
    assert "[...123456] Authenticated" in lines
    assert "[...123456] Subscribed to sync for accounts [26029294, 26029295]" in lines
    assert "[...654321] Subscribed to sync for accounts [26029300]" in lines
    assert TOKEN_A not in monitor_logs.text
    assert TOKEN_B not in monitor_logs.text


def test_status_lists_connections(peer, accounts, make_app):
    app, client = start_monitor(make_app, peer)

    body = wait_until(lambda: subscribed(client))

    assert body["accounts"] == 3
    assert body["token_groups"] == 2
    assert body["leader"] is True
    groups = {connection["token_group"]: connection for connection in body["connections"]}
    assert groups["grp-a"]["token_key"] == "...123456"
    assert groups["grp-a"]["state"] == "subscribed"
    assert [account["broker_account_id"] for account in groups["grp-a"]["accounts"]] == [26029294, 26029295]
    assert groups["grp-a"]["authenticated_at"].endswith("Z")
    assert body["last_message_at"].endswith("Z")
    assert TOKEN_A not in json.dumps(body)
    assert TOKEN_B not in json.dumps(body)

    requests = sorted(peer.sync_requests, key=lambda request: request["accounts"])
    assert requests[0]["accounts"] == [26029294, 26029295]
    assert requests[0]["entityTypes"][:3] == ["position", "fill", "order"]
    assert sorted(peer.authorize_tokens) == sorted([TOKEN_A, TOKEN_B])


def test_status_requires_api_key(peer, accounts, make_app):
    app, client = start_monitor(make_app, peer)
    assert client.get("/api/position-monitor/status").status_code == 401


def test_client_heartbeats_sent(peer, accounts, make_app):
    app, client = start_monitor(make_app, peer)
    wait_until(lambda: subscribed(client))
    wait_until(lambda: peer.client_heartbeats >= 4, message="client heartbeats")


def test_stats_line_every_window(peer, accounts, monitor_logs, make_app):
    app, client = start_monitor(make_app, peer)

    line = wait_until(lambda: next((l for l in monitor_lines(monitor_logs) if "WS stats:" in l), None), timeout=5)

    assert line.startswith("[...")
    assert line.endswith(" in 0.5s")
    assert " msgs (" in line
    assert " data)" in line


def test_position_and_fill_events(peer, accounts, monitor_logs, make_app):
    app, client = start_monitor(make_app, peer)
    wait_until(lambda: subscribed(client))

    peer.push_event("order", {"id": 9001, "accountId": 26029294, "contractId": 3003})
    peer.push_event("position", {"accountId": 26029294, "contractId": 3003, "netPos": 1, "netPrice": 24893.0})
    peer.push_event("fill", {"id": 77, "orderId": 9001, "contractId": 3003, "action": "Buy", "qty": 1, "price": 24893.0})
    peer.push_event("cashBalance", {"accountId": 26029294, "amount": 50000})

    body = wait_until(lambda: (b := status(client))["events"]["fill"] >= 1 and b["events"]["other"] >= 2 and b)
    lines = monitor_lines(monitor_logs)
    assert "[...123456] Position event: account=26029294 symbol=MNQZ6 netPos=1 netPrice=24893.0" in lines
    assert "[...123456] Fill event: account=26029294 symbol=MNQZ6 action=Buy qty=1 price=24893.0 orderId=9001" in lines
    # Both sockets receive the pushed events, as both are subscribed.
    assert body["events"]["position"] == 2
    assert body["events"]["order"] == 2
    assert metric(app, "justtrades_position_monitor_events_total", type="position") == 2.0
    assert metric(app, "justtrades_position_monitor_events_total", type="fill") == 2.0


def test_metrics_mirror_status(peer, accounts, make_app):
    app, client = start_monitor(make_app, peer)
    wait_until(lambda: subscribed(client))

    assert metric(app, "justtrades_position_monitor_connections", state="subscribed") == 2.0
    assert metric(app, "justtrades_position_monitor_connections", state="disconnected") == 0.0
    assert metric(app, "justtrades_position_monitor_accounts") == 3.0
    assert metric(app, "justtrades_position_monitor_last_message_timestamp_seconds") > 0
    assert metric(app, "justtrades_position_monitor_auth_failures_total") == 0.0
    assert metric(app, "justtrades_position_monitor_account_group_errors_total") == 0.0
    assert metric(app, "justtrades_position_monitor_events_total", type="other") == 0.0


def test_invalid_token_auth_failed(peer, accounts, monitor_logs, make_app):
    peer.valid_tokens.discard(TOKEN_B)
    app, client = start_monitor(make_app, peer)

    body = wait_until(lambda: (b := status(client))["auth_failures"] >= 2 and b, timeout=5)

    assert "[...654321] Auth failed — no s:200 response" in monitor_lines(monitor_logs)
    groups = {connection["token_group"]: connection for connection in body["connections"]}
    assert groups["grp-b"]["state"] in ("connecting", "disconnected")
    assert groups["grp-b"]["last_error"] == "Auth failed — no s:200 response"
    assert groups["grp-a"]["auth_failures"] == 0
    assert metric(app, "justtrades_position_monitor_auth_failures_total") >= 2

    # A renewed token in the database is used on the next attempt.
    peer.valid_tokens.add(TOKEN_B)
    wait_until(lambda: subscribed(client), timeout=5, message="recovery after a valid token")


def test_silent_socket_detected_and_reconnected(peer, accounts, monitor_logs, make_app):
    peer.set_mode("silent")
    app, client = start_monitor(make_app, peer, stats_window_seconds=0.3)

    wait_until(lambda: "No data for 3 consecutive windows" in " ".join(monitor_lines(monitor_logs)), timeout=6)
    body = status(client)
    assert body["stale_detections"] >= 3
    assert metric(app, "justtrades_position_monitor_stale_windows_total") >= 3
    assert any(line.endswith("WS stats: 0 msgs (0 data) in 0.3s") for line in monitor_lines(monitor_logs))

    peer.set_mode("normal")
    connections_before = peer.connections
    wait_until(lambda: peer.connections > connections_before, timeout=5, message="reconnect")
    wait_until(lambda: subscribed(client), timeout=5)


def test_stale_state_shown(peer, accounts, make_app):
    peer.set_mode("silent")
    app, client = start_monitor(make_app, peer, stats_window_seconds=0.3, stale_windows=20)

    wait_until(lambda: status(client)["connections_by_state"]["stale"] == 2, timeout=5, message="stale state")
    assert metric(app, "justtrades_position_monitor_connections", state="stale") == 2.0


def test_dropped_connections_retried(peer, accounts, monitor_logs, make_app):
    peer.set_mode("drop")
    app, client = start_monitor(make_app, peer)

    wait_until(lambda: peer.connections >= 4, timeout=5)
    assert any("Connection error: " in line for line in monitor_lines(monitor_logs))
    assert status(client)["errors"] >= 2

    peer.set_mode("normal")
    wait_until(lambda: subscribed(client), timeout=5)


def test_no_accounts_logged(peer, sqlite_url, monitor_logs, make_app):
    app, client = start_monitor(make_app, peer)

    wait_until(lambda: "No active Tradovate accounts for position monitoring" in monitor_lines(monitor_logs))
    body = status(client)
    assert body["connections"] == []
    assert body["accounts"] == 0


def test_account_group_errors_counted(peer, accounts, monitor_logs, make_app):
    app, client = start_monitor(make_app, peer)
    wait_until(lambda: subscribed(client))
    engine = app.extensions["justtrades"].engine

    with engine.begin() as connection:
        connection.execute(text("ALTER TABLE traders RENAME TO traders_moved"))
    try:
        wait_until(lambda: status(client)["account_group_errors"] >= 1, timeout=5)
        assert any(line.startswith("Error loading account groups: ") for line in monitor_lines(monitor_logs))
        assert metric(app, "justtrades_position_monitor_account_group_errors_total") >= 1
        # Existing sockets stay up while the table is unreadable.
        assert status(client)["connections_by_state"]["subscribed"] == 2
    finally:
        with engine.begin() as connection:
            connection.execute(text("ALTER TABLE traders_moved RENAME TO traders"))


def test_removed_group_closed(peer, accounts, make_app):
    app, client = start_monitor(make_app, peer)
    wait_until(lambda: subscribed(client))

    with transaction(app.extensions["justtrades"].session_factory) as session:
        session.get(Account, 3).enabled = False

    body = wait_until(lambda: (b := status(client))["token_groups"] == 1 and b, timeout=5)
    assert body["connections"][0]["token_group"] == "grp-a"
    threads = api_get(client, "/api/thread-health").get_json()["threads"]
    assert "position-monitor:demo:grp-a" in threads
    assert "position-monitor:demo:grp-b" not in threads
    assert threads["position-monitor"]["status"] == "running"


def test_request_encoding():
    assert protocol.encode_request("authorize", 1, "tok") == "authorize\n1\n\ntok"
    assert protocol.encode_request("user/syncrequest", 2, {"accounts": [1]}) == 'user/syncrequest\n2\n\n{"accounts":[1]}'


@pytest.mark.parametrize(
    "frame, kind",
    [("o", "open"), ("h", "heartbeat"), ('a[{"s":200,"i":1}]', "data"), ('c[1000,"bye"]', "close")],
)
def test_frame_kinds(frame, kind):
    assert protocol.parse_frame(frame).kind == kind


def test_frame_rejects_unknown():
    with pytest.raises(protocol.ProtocolError, match="unknown frame type 'x'"):
        protocol.parse_frame("x[]")


def test_classify_response_and_event():
    assert protocol.classify({"s": 200, "i": 3, "d": {}}) == protocol.Response(3, 200, {})
    event = protocol.classify({"e": "props", "d": {"entityType": "position", "eventType": "Updated", "entity": {"netPos": 1}}})
    assert event == protocol.PropsEvent("position", "Updated", {"netPos": 1})
    assert protocol.classify({"e": "clock", "d": "x"}) is None
