"""Per-entity debugging: live broker state from the paper broker and from a local Tradovate-style server."""

from __future__ import annotations

from decimal import Decimal

import pytest

from justtrades.brokers.base import BrokerError, FailureReason, OrderRequest
from justtrades.brokers.tradovate import TradovateBroker
from justtrades.brokers.tradovate_auth import TokenManager, TradovateCredentials
from justtrades.db.engine import transaction
from justtrades.db.models import Account, Position
from tests.peers.tradovate_rest import DEFAULT_ACCOUNTS, DEFAULT_USERS, Fault, TradovatePeer

from .conftest import API_KEY, add_trading_setup

HEADERS = {"X-API-Key": API_KEY}
TRADOVATE_USER, TRADOVATE_PASSWORD = next(iter(DEFAULT_USERS.items()))
SECRET_TOKEN = "account-access-token-that-must-not-leak"


def _paper_position(runtime, account_id: int, symbol: str, net_pos: int, avg_price: str) -> None:
    with transaction(runtime.session_factory) as session:
        session.add(Position(account_id=account_id, symbol=symbol, net_pos=net_pos, avg_price=Decimal(avg_price),
                             realized_pnl=Decimal(0)))


def test_account_state_from_paper_broker(app, runtime):
    ids = add_trading_setup(runtime)
    _paper_position(runtime, ids["account"], "NQZ6", 2, "21500.25")
    _paper_position(runtime, ids["account"], "ESZ6", 0, "6100")

    response = app.test_client().get(f"/api/account/{ids['account']}/broker-state", headers=HEADERS)

    assert response.status_code == 200
    body = response.get_json()
    assert body["account_id"] == ids["account"]
    assert body["broker"] == "paper"
    assert body["source"] == "broker"
    assert body["positions"] == [{"symbol": "NQZ6", "net_pos": 2, "net_price": 21500.25}]
    assert body["working_orders"] == []


def test_trader_state_names_recorder(app, runtime):
    ids = add_trading_setup(runtime)
    _paper_position(runtime, ids["account"], "CLZ6", -1, "72.13")

    body = app.test_client().get(f"/api/traders/{ids['trader']}/broker-state", headers=HEADERS).get_json()

    assert body["trader_id"] == ids["trader"]
    assert body["recorder_name"] == "JADNQ"
    assert body["account_id"] == ids["account"]
    assert body["positions"] == [{"symbol": "CLZ6", "net_pos": -1, "net_price": 72.13}]


@pytest.mark.parametrize("path", ["/api/traders/999/broker-state", "/api/account/999/broker-state"])
def test_unknown_id_is_404_json(app, path):
    response = app.test_client().get(path, headers=HEADERS)

    assert response.status_code == 404
    assert "999 not found" in response.get_json()["error"]


def test_non_numeric_id_is_404_json(app):
    response = app.test_client().get("/api/traders/abc/broker-state", headers=HEADERS)

    assert response.status_code == 404
    assert response.is_json


def test_unconfigured_broker_is_502(app, runtime):
    ids = add_trading_setup(runtime, broker="ibkr")

    response = app.test_client().get(f"/api/account/{ids['account']}/broker-state", headers=HEADERS)

    assert response.status_code == 502
    body = response.get_json()
    assert body["reason"] == "no_broker_adapter"
    assert "'ibkr'" in body["error"]


class _FailingBroker:
    """An adapter whose reads fail the way a real one can: a BrokerError, or a bug."""

    name = "failing"

    def __init__(self, error: Exception):
        self.error = error

    def positions(self, account):
        raise self.error

    def working_orders(self, account):
        raise self.error


@pytest.mark.parametrize(
    "error, reason",
    [
        (BrokerError(FailureReason.RATE_LIMIT_EXCEEDED, "retry in 2s", permanent=False), "rate_limit_exceeded"),
        (KeyError("netPos"), "internal_error"),
    ],
)
def test_adapter_failure_is_502(app, runtime, error, reason):
    runtime.brokers["failing"] = _FailingBroker(error)
    ids = add_trading_setup(runtime, broker="failing")

    response = app.test_client().get(f"/api/traders/{ids['trader']}/broker-state", headers=HEADERS)

    assert response.status_code == 502
    assert response.get_json()["reason"] == reason


# Tradovate over loopback


@pytest.fixture
def tradovate(runtime):
    """A real Tradovate adapter on a local Tradovate-style server, installed as the app's 'tradovate' broker."""
    with TradovatePeer() as peer:
        credentials = {
            "main": TradovateCredentials(name=TRADOVATE_USER, password=TRADOVATE_PASSWORD, app_id="JustTradesTests",
                                         app_version="1.0", cid=4242, sec="peer-api-secret", device_id="tests")
        }
        manager = TokenManager(credentials, {"demo": peer.url}, timeout_seconds=2.0)
        broker = TradovateBroker(manager, base_urls={"demo": peer.url}, timeout_seconds=2.0)
        runtime.brokers["tradovate"] = broker
        yield peer, broker
        broker.close()
        manager.close()


def _tradovate_account(runtime) -> dict:
    ids = add_trading_setup(runtime, broker="tradovate", account_name="Tradovate demo")
    with transaction(runtime.session_factory) as session:
        account = session.get(Account, ids["account"])
        account.broker_account_id = DEFAULT_ACCOUNTS[0]["id"]
        account.token_group = "main"
        account.access_token = SECRET_TOKEN
    return ids


def test_tradovate_state_read_live(app, runtime, tradovate):
    peer, broker = tradovate
    ids = _tradovate_account(runtime)
    with runtime.session_factory() as session:
        from justtrades.accounts.broker_state import account_ref_for

        ref = account_ref_for(runtime, session.get(Account, ids["account"]))
    broker.place_order(OrderRequest(account=ref, symbol="NQZ6", side="Buy", quantity=2, client_order_id="debug-1",
                                    take_profit=Decimal("21520"), stop_loss=Decimal("21480.5")))

    response = app.test_client().get(f"/api/traders/{ids['trader']}/broker-state", headers=HEADERS)

    assert response.status_code == 200
    body = response.get_json()
    assert body["positions"] == [{"symbol": "NQZ6", "net_pos": 2, "net_price": 21500.25}]
    assert sorted(order["order_type"] for order in body["working_orders"]) == ["Limit", "Stop"]
    assert peer.request_counts["/position/list"] == 1
    assert SECRET_TOKEN not in response.get_data(as_text=True)


def test_tradovate_rejection_is_502(app, runtime, tradovate):
    peer, _broker = tradovate
    ids = _tradovate_account(runtime)
    peer.inject("/position/list", Fault.server_error(503))

    response = app.test_client().get(f"/api/account/{ids['account']}/broker-state", headers=HEADERS)

    assert response.status_code == 502
    body = response.get_json()
    assert body["reason"] in {reason.value for reason in FailureReason}
    assert body["account_id"] == ids["account"]
    assert SECRET_TOKEN not in response.get_data(as_text=True)


def test_tradovate_down_is_502(app, runtime, tradovate):
    peer, _broker = tradovate
    ids = _tradovate_account(runtime)
    peer.stop()

    response = app.test_client().get(f"/api/account/{ids['account']}/broker-state", headers=HEADERS)

    assert response.status_code == 502
    assert response.get_json()["reason"] in {"connection_error", "timeout"}
