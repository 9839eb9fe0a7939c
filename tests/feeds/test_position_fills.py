"""Tradovate fills and positions from the position monitor's socket, recorded in the database.

A real Tradovate adapter places orders on the local REST peer; the fills it reports are then sent on the local
user socket, as Tradovate does, and the monitor writes them. Runs on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

import pytest
from sqlalchemy import select, text

from justtrades.brokers.tradovate import TradovateBroker
from justtrades.brokers.tradovate_auth import TokenManager, TradovateCredentials
from justtrades.db.engine import create_database_engine, create_session_factory, transaction
from justtrades.db.models import Account, Fill, Order, Position, Recorder, Trader
from justtrades.feeds import event_writer
from tests.conftest import TEST_API_KEY
from tests.feeds.conftest import api_get, feed_settings, metric, position_settings, wait_until
from tests.peers.tradovate_rest import DEFAULT_ACCOUNTS, DEFAULT_USERS, TradovatePeer
from tests.peers.tradovate_ws import TradovateSocketPeer

TOKEN = "tok-fills-cccccccccccccccc-abcdef"
BROKER_ACCOUNT = DEFAULT_ACCOUNTS[0]["id"]
USER, PASSWORD = next(iter(DEFAULT_USERS.items()))
WEBHOOK = "token-fills-JADNQ"
GCZ6 = 3005


@pytest.fixture(autouse=True)
def short_match_grace(monkeypatch):
    # An unmatched fill is recorded as manual after this delay; the default waits for slow executors.
    monkeypatch.setattr(event_writer, "MATCH_GRACE_SECONDS", 0.3)


@pytest.fixture
def ids(database_url):
    """A Tradovate demo account on the REST peer's account, a recorder and a trader with a 500 USD loss limit."""
    engine = create_database_engine(database_url)
    with transaction(create_session_factory(engine)) as session:
        account = Account(name="Tradovate demo", broker="tradovate", environment="demo",
                          broker_account_id=BROKER_ACCOUNT, token_group="main", access_token=TOKEN,
                          auth_status="valid", enabled=True)
        recorder = Recorder(name="JADNQ", webhook_token=WEBHOOK, trading_windows="", cooldown_seconds=0)
        session.add_all([account, recorder])
        session.flush()
        trader = Trader(recorder_id=recorder.id, account_id=account.id, enabled=True, quantity=1,
                        max_daily_loss=Decimal("500"))
        session.add(trader)
        session.flush()
        result = {"account": account.id, "trader": trader.id, "url": database_url}
    engine.dispose()
    return result


@pytest.fixture
def socket_peer():
    with TradovateSocketPeer(valid_tokens={TOKEN}) as peer:
        yield peer


@pytest.fixture
def rest_peer():
    with TradovatePeer() as peer:
        yield peer


@pytest.fixture
def platform(ids, socket_peer, rest_peer, make_app):
    """The app with the position monitor on the socket peer and a Tradovate adapter on the REST peer."""
    settings = position_settings(ws_url_demo=socket_peer.url, ws_url_live=socket_peer.url)
    app = make_app(feed_settings(position_monitor=settings), database_url=ids["url"])
    runtime = app.extensions["justtrades"]

    credentials = {"main": TradovateCredentials(name=USER, password=PASSWORD, app_id="JustTradesTests",
                                                app_version="1.0", cid=4242, sec="peer-secret", device_id="tests")}
    manager = TokenManager(credentials, {"demo": rest_peer.url}, timeout_seconds=2.0)
    broker = TradovateBroker(manager, base_urls={"demo": rest_peer.url}, timeout_seconds=2.0)
    runtime.brokers["tradovate"] = broker

    client = app.test_client()
    wait_until(lambda: monitor_status(client)["connections_by_state"]["subscribed"] == 1, message="subscribed socket")
    yield app
    broker.close()
    manager.close()


def monitor_status(client) -> dict:
    return api_get(client, "/api/position-monitor/status").get_json()


def writes(app) -> dict:
    return monitor_status(app.test_client())["writes"]


def fills(app) -> list[Fill]:
    with app.extensions["justtrades"].session_factory() as session:
        return session.scalars(select(Fill).order_by(Fill.id)).all()


def post_signal(app, action: str) -> None:
    body = json.dumps({"action": action, "ticker": "NQZ6"})
    response = app.test_client().post(f"/webhook/{WEBHOOK}", data=body, content_type="application/json")
    assert response.status_code == 200, response.get_json()


def placed_order(app, after_id: int = 0) -> Order:
    """Wait for the executor to store the broker order id of the next order."""
    def find():
        with app.extensions["justtrades"].session_factory() as session:
            return session.scalars(
                select(Order).where(Order.id > after_id, Order.broker_order_id.is_not(None)).order_by(Order.id)
            ).first()
    return wait_until(find, timeout=20, message="order placed at the REST peer")


def send_fill_of(socket_peer, rest_peer, order: Order) -> dict:
    """Send the REST peer's order and fill for this order on the socket, as Tradovate's props events."""
    broker_order = rest_peer.orders[int(order.broker_order_id)]
    fill = next(f for f in rest_peer.fills.values() if f["orderId"] == broker_order["id"])
    entity = json.loads(json.dumps(fill, default=str))
    entity["price"] = float(fill["price"])
    socket_peer.push_event("order", json.loads(json.dumps(broker_order, default=str)), "Created")
    socket_peer.push_event("fill", entity, "Created")
    return entity


def test_placed_order_fill_recorded(platform, socket_peer, rest_peer, ids):
    post_signal(platform, "buy")
    order = placed_order(platform)

    entity = send_fill_of(socket_peer, rest_peer, order)
    rows = wait_until(lambda: fills(platform), message="fill row")

    assert len(rows) == 1
    assert rows[0].broker_fill_id == str(entity["id"])
    assert rows[0].trader_id == ids["trader"]
    assert rows[0].account_id == ids["account"]
    assert rows[0].order_id == order.id
    assert rows[0].symbol == order.symbol
    assert rows[0].side == "Buy"
    assert rows[0].quantity == 1
    assert rows[0].price == Decimal("21500.25")
    with platform.extensions["justtrades"].session_factory() as session:
        assert session.get(Order, order.id).status == "filled"
    assert metric(platform, "justtrades_position_monitor_fills_recorded_total") == 1.0


def test_live_loss_in_daily_pnl_and_blocks(platform, socket_peer, rest_peer, ids):
    runtime = platform.extensions["justtrades"]
    post_signal(platform, "buy")
    send_fill_of(socket_peer, rest_peer, placed_order(platform))
    wait_until(lambda: len(fills(platform)) == 1, message="entry fill")

    # 30 points lower on NQ (20 USD a point): a 600 USD loss against the 500 USD limit.
    rest_peer.set_price("NQZ6", "21470.25")
    first = fills(platform)[0].order_id
    post_signal(platform, "close")
    send_fill_of(socket_peer, rest_peer, placed_order(platform, after_id=first))
    wait_until(lambda: len(fills(platform)) == 2, message="exit fill")

    status = platform.test_client().get("/api/admin/max-loss-monitor/status", headers={"X-API-Key": TEST_API_KEY})
    assert status.get_json()["daily_pnl"] == -600.0
    assert runtime.accounts.max_loss.check(dt.datetime.now(dt.timezone.utc)) == [ids["trader"]]

    # A sell, not a second buy: an identical alert within the duplicate window would be rejected as a duplicate.
    orders_before = len(rest_peer.snapshot_orders())
    post_signal(platform, "sell")
    with runtime.session_factory() as session:
        statuses = session.scalars(text("SELECT status FROM webhook_activity ORDER BY id")).all()
    assert statuses[-1] == "blocked"
    assert len(rest_peer.snapshot_orders()) == orders_before


def test_duplicate_and_replay_one_row(platform, socket_peer, rest_peer):
    post_signal(platform, "buy")
    order = placed_order(platform)
    entity = send_fill_of(socket_peer, rest_peer, order)
    wait_until(lambda: fills(platform), message="fill row")

    socket_peer.push_event("fill", entity, "Updated")
    wait_until(lambda: writes(platform)["fills_duplicate"] >= 1, message="duplicate event handled")

    # The next connection's sync response lists the day's fills again.
    socket_peer.fills.append(entity)
    syncs_before = len(socket_peer.sync_requests)
    assert socket_peer.disconnect_all() == 1
    wait_until(lambda: len(socket_peer.sync_requests) > syncs_before, message="reconnect and sync")
    wait_until(lambda: writes(platform)["fills_duplicate"] >= 2, message="replayed fill handled")

    assert len(fills(platform)) == 1
    assert metric(platform, "justtrades_position_monitor_fills_recorded_total") == 1.0


def test_manual_fill_has_no_trader(platform, socket_peer, ids):
    socket_peer.push_event("order", {"id": 880001, "accountId": BROKER_ACCOUNT, "contractId": GCZ6, "action": "Sell"})
    socket_peer.push_event("fill", {"id": 880002, "orderId": 880001, "contractId": GCZ6, "action": "Sell", "qty": 2,
                                    "price": 2945.3, "timestamp": "2026-12-04T15:00:00.250Z", "active": True})

    rows = wait_until(lambda: fills(platform), message="manual fill row")

    assert len(rows) == 1
    assert rows[0].trader_id is None
    assert rows[0].order_id is None
    assert rows[0].account_id == ids["account"]
    assert rows[0].symbol == "GCZ6"
    assert rows[0].quantity == 2
    assert rows[0].price == Decimal("2945.3")
    assert rows[0].filled_at == dt.datetime(2026, 12, 4, 15, 0, 0, 250000, tzinfo=dt.timezone.utc)


def test_fill_of_unknown_account_skipped(platform, socket_peer):
    socket_peer.push_event("order", {"id": 880101, "accountId": 99999999, "contractId": GCZ6})
    socket_peer.push_event("fill", {"id": 880102, "orderId": 880101, "contractId": GCZ6, "action": "Buy", "qty": 1,
                                    "price": 2945.3})

    wait_until(lambda: writes(platform)["fills_unattributed"] == 1, message="unattributed fill")
    assert fills(platform) == []


def test_fill_of_unseen_order_skipped(platform, socket_peer, caplog):
    socket_peer.push_event("fill", {"id": 880111, "orderId": 880110, "contractId": GCZ6, "action": "Buy", "qty": 1,
                                    "price": 2945.3})

    wait_until(lambda: writes(platform)["fills_unattributed"] == 1, message="unattributed fill")
    assert fills(platform) == []
    assert "Fill 880111 of order 880110 has no known account (no order entity seen); not recorded" in caplog.text


def test_invalid_fill_counted_not_recorded(platform, socket_peer):
    socket_peer.push_event("fill", {"id": 880201, "orderId": 1, "contractId": GCZ6, "action": "Hold", "qty": 1,
                                    "price": 1})

    body = wait_until(lambda: (b := monitor_status(platform.test_client()))["invalid_entities"] == 1 and b)
    assert body["writes"]["fills_recorded"] == 0
    assert fills(platform) == []


def positions(app) -> dict[str, tuple]:
    with app.extensions["justtrades"].session_factory() as session:
        rows = session.scalars(select(Position)).all()
    return {row.symbol: (row.account_id, row.net_pos, row.avg_price) for row in rows}


def test_position_event_updates_positions(platform, socket_peer, ids):
    socket_peer.push_event("position", {"id": 1, "accountId": BROKER_ACCOUNT, "contractId": GCZ6, "netPos": -2,
                                        "netPrice": 2945.3, "timestamp": "2026-12-04T15:00:01Z"})
    wait_until(lambda: "GCZ6" in positions(platform), message="position row")
    assert positions(platform)["GCZ6"] == (ids["account"], -2, Decimal("2945.3"))

    # An older event arriving late does not undo the newer one; a newer one applies.
    socket_peer.push_event("position", {"id": 1, "accountId": BROKER_ACCOUNT, "contractId": GCZ6, "netPos": 5,
                                        "netPrice": 2900.0, "timestamp": "2026-12-04T14:00:00Z"})
    socket_peer.push_event("position", {"id": 1, "accountId": BROKER_ACCOUNT, "contractId": GCZ6, "netPos": 0,
                                        "netPrice": None, "timestamp": "2026-12-04T15:00:02Z"})
    wait_until(lambda: positions(platform)["GCZ6"][1] == 0, message="flat position")
    assert positions(platform)["GCZ6"] == (ids["account"], 0, None)
    assert writes(platform)["positions_updated"] == 2

    status = api_get(platform.test_client(), "/status").get_json()
    assert status["indexed_positions"] == 1


def test_sync_positions_recorded(ids, socket_peer, make_app):
    socket_peer.positions.append({"id": 7, "accountId": BROKER_ACCOUNT, "contractId": 3001, "netPos": 3,
                                  "netPrice": 21500.25, "timestamp": "2026-12-04T15:00:00Z"})
    settings = position_settings(ws_url_demo=socket_peer.url, ws_url_live=socket_peer.url)
    app = make_app(feed_settings(position_monitor=settings), database_url=ids["url"])

    wait_until(lambda: "NQZ6" in positions(app), message="position from the sync response")
    assert positions(app)["NQZ6"] == (ids["account"], 3, Decimal("21500.25"))


def rename_fills_table(app, old: str, new: str) -> None:
    with app.extensions["justtrades"].engine.begin() as connection:
        connection.execute(text(f"ALTER TABLE {old} RENAME TO {new}"))


def fill_entity(fill_id: int) -> dict:
    return {"id": fill_id, "orderId": 880300, "contractId": GCZ6, "action": "Buy", "qty": 1, "price": 2945.3,
            "timestamp": "2026-12-04T15:00:00Z", "active": True}


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_database_outage_keeps_socket(platform, socket_peer):
    # SQLite only: a missing table there raises OperationalError, as an unreachable database does, while
    # PostgreSQL reports it as a programming error, which the writer does not retry.
    socket_peer.push_event("order", {"id": 880300, "accountId": BROKER_ACCOUNT, "contractId": GCZ6})
    rename_fills_table(platform, "fills", "fills_moved")
    try:
        socket_peer.push_event("fill", fill_entity(880301))
        wait_until(lambda: writes(platform)["write_failures"] >= 2, message="failed writes counted")
        status = monitor_status(platform.test_client())
        assert status["connections_by_state"]["subscribed"] == 1
        assert status["writes"]["write_queue_events"] == 1
    finally:
        rename_fills_table(platform, "fills_moved", "fills")

    rows = wait_until(lambda: fills(platform), timeout=40, message="fill written after the outage")
    assert [row.broker_fill_id for row in rows] == ["880301"]
    assert metric(platform, "justtrades_position_monitor_write_failures_total") >= 2


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_dropped_events_resynced(monkeypatch, ids, socket_peer, make_app):
    monkeypatch.setattr(event_writer, "QUEUE_SIZE", 2)
    settings = position_settings(ws_url_demo=socket_peer.url, ws_url_live=socket_peer.url)
    app = make_app(feed_settings(position_monitor=settings), database_url=ids["url"])
    wait_until(lambda: monitor_status(app.test_client())["connections_by_state"]["subscribed"] == 1)
    socket_peer.push_event("order", {"id": 880300, "accountId": BROKER_ACCOUNT, "contractId": GCZ6})

    rename_fills_table(app, "fills", "fills_moved")
    try:
        for fill_id in range(880401, 880406):
            entity = fill_entity(fill_id)
            socket_peer.fills.append(entity)
            socket_peer.push_event("fill", entity)
        wait_until(lambda: writes(app)["events_dropped"] >= 1, message="events dropped on a full queue")
    finally:
        rename_fills_table(app, "fills_moved", "fills")

    # Once the backlog is written the socket reconnects, and the sync response lists every fill again.
    socket_peer.orders.append({"id": 880300, "accountId": BROKER_ACCOUNT, "contractId": GCZ6})
    wait_until(lambda: len(fills(app)) == 5, timeout=40, message="five fills")
    rows = fills(app)
    assert sorted(row.broker_fill_id for row in rows) == [str(i) for i in range(880401, 880406)]
    assert len(socket_peer.sync_requests) >= 2


def test_inactive_fill_kept_correction_applied(platform, socket_peer):
    socket_peer.push_event("order", {"id": 880300, "accountId": BROKER_ACCOUNT, "contractId": GCZ6})
    socket_peer.push_event("fill", fill_entity(880501))
    wait_until(lambda: fills(platform), message="fill row")

    corrected = dict(fill_entity(880501), price=2944.1)
    socket_peer.push_event("fill", corrected, "Updated")
    wait_until(lambda: fills(platform)[0].price == Decimal("2944.1"), message="corrected price")

    socket_peer.push_event("fill", dict(corrected, active=False), "Updated")
    socket_peer.push_event("fill", dict(fill_entity(880502), active=False))
    wait_until(lambda: writes(platform)["fills_inactive"] == 2, message="inactive fills handled")

    rows = fills(platform)
    assert [row.broker_fill_id for row in rows] == ["880501"]
    assert rows[0].price == Decimal("2944.1")
    assert writes(platform)["fills_recorded"] == 1
