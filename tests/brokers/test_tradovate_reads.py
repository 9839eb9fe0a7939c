"""Reads through the Tradovate adapter: find_order by clOrdId, positions, working orders, contract cache."""

from __future__ import annotations

import dataclasses
from decimal import Decimal

from justtrades.brokers.base import BrokerPosition, OrderRequest
from justtrades.brokers.tradovate import TradovateBroker
from justtrades.brokers.tradovate_auth import TokenManager
from tests.peers.tradovate_rest import DEFAULT_ACCOUNTS, TradovatePeer

OTHER_ACCOUNT = {"id": 26029300, "name": "DEMO26029300", "user": "jt-demo"}
TWO_ACCOUNTS = [*DEFAULT_ACCOUNTS, OTHER_ACCOUNT]


def order(account, client_order_id, symbol="NQZ6", side="Buy", quantity=1, **brackets) -> OrderRequest:
    return OrderRequest(
        account=account, symbol=symbol, side=side, quantity=quantity, client_order_id=client_order_id, **brackets
    )


def test_find_order_returns_filled_order(broker, peer, account):
    placed = broker.place_order(order(account, "job-1:trader-1", quantity=3))

    found = broker.find_order(account, "job-1:trader-1")

    assert found.broker_order_id == placed.broker_order_id
    assert found.status == "filled"
    assert found.fill_price == Decimal("21500.25")


def test_find_order_unknown_client_id_is_none(broker, account):
    broker.place_order(order(account, "job-1:trader-1"))

    assert broker.find_order(account, "job-2:trader-1") is None


def test_find_order_working_entry_is_placed(broker, peer, account):
    peer.contracts["NQZ6"]["price"] = Decimal("21501.00")
    placed = broker.place_order(order(account, "job-3:trader-1"))
    peer.orders[int(placed.broker_order_id)]["ordStatus"] = "Working"

    found = broker.find_order(account, "job-3:trader-1")

    assert found.status == "placed"
    assert found.fill_price is None


def test_find_order_reports_rejected_order(broker, peer, account):
    placed = broker.place_order(order(account, "job-4:trader-1"))
    peer.orders[int(placed.broker_order_id)]["ordStatus"] = "Rejected"

    assert broker.find_order(account, "job-4:trader-1").status == "rejected"


def test_find_order_ignores_other_account(credentials, clock, account):
    with TradovatePeer(accounts=TWO_ACCOUNTS) as peer:
        manager = TokenManager(credentials, {"demo": peer.url}, clock=clock)
        broker = TradovateBroker(manager, base_urls={"demo": peer.url}, clock=clock)
        other = dataclasses.replace(account, id=8, broker_account_id=OTHER_ACCOUNT["id"])
        broker.place_order(order(other, "job-5:trader-2"))

        assert broker.find_order(other, "job-5:trader-2") is not None
        assert broker.find_order(account, "job-5:trader-2") is None
        broker.close()


def test_positions_net_per_contract(broker, peer, account):
    broker.place_order(order(account, "a", quantity=2))
    peer.set_price("NQZ6", "21510.25")
    broker.place_order(order(account, "b", quantity=2))
    broker.place_order(order(account, "c", symbol="CLZ6", side="Sell", quantity=1))

    positions = sorted(broker.positions(account), key=lambda p: p.symbol)

    assert positions == [
        BrokerPosition(symbol="CLZ6", net_pos=-1, net_price=Decimal("72.13")),
        BrokerPosition(symbol="NQZ6", net_pos=4, net_price=Decimal("21505.25")),
    ]


def test_flat_position_is_left_out(broker, account):
    broker.place_order(order(account, "open", quantity=1))
    broker.place_order(order(account, "close", side="Sell", quantity=1))

    assert broker.positions(account) == []


def test_positions_of_other_account_left_out(credentials, clock, account):
    with TradovatePeer(accounts=TWO_ACCOUNTS) as peer:
        manager = TokenManager(credentials, {"demo": peer.url}, clock=clock)
        broker = TradovateBroker(manager, base_urls={"demo": peer.url}, clock=clock)
        other = dataclasses.replace(account, id=8, broker_account_id=OTHER_ACCOUNT["id"])
        broker.place_order(order(other, "other-account", quantity=5))

        assert broker.positions(account) == []
        assert broker.positions(other)[0].net_pos == 5
        broker.close()


def test_contract_names_are_cached(broker, peer, account):
    broker.place_order(order(account, "a"))

    broker.positions(account)
    broker.positions(account)
    assert peer.request_counts["/contract/item"] == 1

    broker.clear_caches()
    broker.positions(account)
    assert peer.request_counts["/contract/item"] == 2


def test_clear_caches_rereads_account_list(broker, peer, account):
    broker.place_order(order(account, "a"))
    broker.clear_caches()
    broker.place_order(order(account, "b"))

    assert peer.request_counts["/account/list"] == 2


def test_unknown_contract_gets_plain_label(broker, peer, account):
    broker.place_order(order(account, "a"))
    peer.contracts["NQZ6"]["id"] = 9999  # /contract/item no longer finds the position's contract id

    [position] = broker.positions(account)

    assert position.symbol == "contract 3001"


def test_working_orders_list_bracket_legs(broker, peer, account):
    broker.place_order(order(account, "entry", quantity=2, take_profit=Decimal("21520"), stop_loss=Decimal("21480.5")))

    working = sorted(broker.working_orders(account), key=lambda row: row["order_type"])

    assert [row["order_type"] for row in working] == ["Limit", "Stop"]
    take_profit, stop_loss = working
    assert take_profit["symbol"] == "NQZ6"
    assert take_profit["action"] == "Sell"
    assert take_profit["status"] == "Working"
    assert take_profit["quantity"] == 2
    assert take_profit["price"] == 21520.0
    assert take_profit["stop_price"] is None
    assert stop_loss["stop_price"] == 21480.5
    assert stop_loss["order_id"] in {str(i) for i in peer.snapshot_orders()[0]["bracketOrderIds"]}
    assert take_profit["created_at"].endswith("Z")


def test_working_orders_skip_filled_orders(broker, account):
    broker.place_order(order(account, "market-only"))

    assert broker.working_orders(account) == []
