"""Order placement through the Tradovate adapter against the local peer: bodies, brackets, rejections."""

from __future__ import annotations

import dataclasses
import threading
from decimal import Decimal

import pytest

from justtrades.brokers.base import Broker, BrokerError, FailureReason, OrderRequest
from justtrades.brokers.tradovate import TradovateBroker, classify_order_failure
from justtrades.config import Settings
from tests.peers.tradovate_rest import Fault


def market_order(account, client_order_id="job-1:trader-1", **changes) -> OrderRequest:
    fields = {"account": account, "symbol": "NQZ6", "side": "Buy", "quantity": 2, "client_order_id": client_order_id}
    fields.update(changes)
    return OrderRequest(**fields)


def test_adapter_satisfies_broker_protocol(broker):
    def expects_broker(adapter: Broker) -> str:
        return adapter.name

    assert expects_broker(broker) == "tradovate"
    for method in ("place_order", "find_order", "positions", "working_orders", "clear_caches"):
        assert callable(getattr(broker, method))


def test_market_order_sends_tradovate_body(broker, peer, account):
    result = broker.place_order(market_order(account))

    assert result.status == "placed"
    [logged] = peer.snapshot_orders()
    assert result.broker_order_id == str(logged["orderId"])
    assert logged["clOrdId"] == "job-1:trader-1"
    assert logged["accountId"] == account.broker_account_id
    assert logged["accountSpec"] == "DEMO26029294"
    assert logged["action"] == "Buy"
    assert logged["orderQty"] == 2
    assert logged["orderType"] == "Market"
    assert logged["isAutomated"] is True
    assert logged["brackets"] == []
    assert peer.request_counts["/order/placeorder"] == 1
    assert peer.request_counts["/order/placeoso"] == 0


def test_bracket_order_uses_place_oso(broker, peer, account):
    request = market_order(account, side="Sell", take_profit=Decimal("21480.25"), stop_loss=Decimal("21520.5"))

    broker.place_order(request)

    assert peer.request_counts["/order/placeoso"] == 1
    [logged] = peer.snapshot_orders()
    take_profit, stop_loss = logged["brackets"]
    assert take_profit == {"action": "Buy", "orderType": "Limit", "price": 21480.25, "orderQty": 2}
    assert stop_loss == {"action": "Buy", "orderType": "Stop", "stopPrice": 21520.5, "orderQty": 2}
    assert len(logged["bracketOrderIds"]) == 2


def test_stop_loss_alone_is_bracket_one(broker, peer, account):
    broker.place_order(market_order(account, stop_loss=Decimal("21400")))

    [logged] = peer.snapshot_orders()
    assert logged["brackets"] == [{"action": "Sell", "orderType": "Stop", "stopPrice": 21400.0, "orderQty": 2}]


def test_lowercase_side_is_normalised(broker, peer, account):
    broker.place_order(market_order(account, side="sell"))

    assert peer.snapshot_orders()[0]["action"] == "Sell"


def test_off_tick_take_profit_is_invalid_increment(broker, peer, account):
    request = market_order(account, take_profit=Decimal("21510.10"))

    with pytest.raises(BrokerError) as caught:
        broker.place_order(request)

    assert caught.value.reason is FailureReason.INVALID_PRICE_INCREMENT
    assert caught.value.permanent is True
    assert "21510.1 " in caught.value.detail
    assert peer.snapshot_orders() == []


@pytest.mark.parametrize(
    ("failure_reason", "failure_text", "expected"),
    [
        ("InvalidPrice", "Price is not a multiple of the tick size 0.25", FailureReason.INVALID_PRICE_INCREMENT),
        ("UnknownReason", "Invalid price increment for NQZ6", FailureReason.INVALID_PRICE_INCREMENT),
        ("UnknownReason", "Account 123 not found", FailureReason.ACCOUNT_NOT_FOUND),
        ("OtherExecutionRelated", "Insufficient funds to place the order", FailureReason.INSUFFICIENT_FUNDS),
        ("MaxPosLimitReached", "Margin requirement exceeds available balance", FailureReason.INSUFFICIENT_FUNDS),
        ("SessionClosed", "The trading session is closed", FailureReason.ORDER_REJECTED),
        ("TradingLocked", "", FailureReason.ORDER_REJECTED),
    ],
)
def test_failure_reason_is_classified(broker, peer, account, failure_reason, failure_text, expected):
    peer.inject("/order/placeorder", Fault.order_failure(failure_reason, failure_text))

    with pytest.raises(BrokerError) as caught:
        broker.place_order(market_order(account))

    assert caught.value.reason is expected
    assert caught.value.permanent is True
    assert caught.value.order_may_exist is False
    assert failure_reason in caught.value.detail
    assert peer.snapshot_orders() == []


def test_error_text_on_order_is_rejection(broker, peer, account):
    peer.inject("/order/placeorder", Fault.error("Symbol is not tradable"))

    with pytest.raises(BrokerError) as caught:
        broker.place_order(market_order(account))

    assert caught.value.reason is FailureReason.ORDER_REJECTED
    assert caught.value.permanent is True
    assert "Symbol is not tradable" in caught.value.detail


def test_penalty_word_ticket_is_not_tick():
    assert classify_order_failure("UnknownReason", "ticket expired") is FailureReason.ORDER_REJECTED


def test_unknown_broker_account_is_not_found(broker, peer, account):
    stranger = dataclasses.replace(account, broker_account_id=999)

    with pytest.raises(BrokerError) as caught:
        broker.place_order(market_order(stranger))

    assert caught.value.reason is FailureReason.ACCOUNT_NOT_FOUND
    assert caught.value.permanent is True
    assert "999" in caught.value.detail
    assert peer.request_counts["/order/placeorder"] == 0


def test_missing_broker_account_id_is_not_found(broker, peer, account):
    unlinked = dataclasses.replace(account, broker_account_id=None)

    with pytest.raises(BrokerError) as caught:
        broker.place_order(market_order(unlinked))

    assert caught.value.reason is FailureReason.ACCOUNT_NOT_FOUND
    assert "broker_account_id" in caught.value.detail
    assert sum(peer.request_counts.values()) == 0


def test_unknown_environment_is_rejected(broker, account):
    paper = dataclasses.replace(account, environment="paper")

    with pytest.raises(BrokerError) as caught:
        broker.place_order(market_order(paper))

    assert caught.value.reason is FailureReason.ACCOUNT_NOT_FOUND
    assert "'paper'" in caught.value.detail
    assert "demo" in caught.value.detail


@pytest.mark.parametrize(
    ("changes", "named_value"),
    [({"side": "Hold"}, "'Hold'"), ({"quantity": 0}, "0"), ({"quantity": 1.5}, "1.5")],
)
def test_invalid_request_is_rejected_before_sending(broker, peer, account, changes, named_value):
    with pytest.raises(BrokerError) as caught:
        broker.place_order(market_order(account, **changes))

    assert caught.value.reason is FailureReason.ORDER_REJECTED
    assert caught.value.permanent is True
    assert named_value in caught.value.detail
    assert sum(peer.request_counts.values()) == 0


def test_account_list_is_read_once(broker, peer, account):
    broker.place_order(market_order(account, client_order_id="a"))
    broker.place_order(market_order(account, client_order_id="b"))

    assert peer.request_counts["/account/list"] == 1
    assert len(peer.snapshot_orders()) == 2


def test_from_settings_reads_timeout_and_url(tmp_path, peer, account):
    credentials_file = tmp_path / "tradovate.yaml"
    credentials_file.write_text(
        "main:\n  name: jt-demo\n  password: demo-password\n  app_id: Tests\n  cid: 1\n  sec: s3cret\n"
    )
    settings = Settings(tradovate_url=peer.url, tradovate_timeout_seconds=3.0)

    broker = TradovateBroker.from_settings(settings, {"JT_TRADOVATE_CREDENTIALS_FILE": str(credentials_file)})
    try:
        result = broker.place_order(market_order(account))
    finally:
        broker.close()

    assert result.status == "placed"
    assert peer.token_requests["jt-demo"] == 1


def test_concurrent_workers_share_one_adapter(broker, peer, account):
    results, errors = [], []

    def place(number: int):
        try:
            results.append(broker.place_order(market_order(account, client_order_id=f"job-{number}:trader-1")))
        except Exception as error:  # collected so the main thread can report it
            errors.append(error)

    threads = [threading.Thread(target=place, args=(number,)) for number in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)

    assert errors == []
    assert len(results) == 12
    assert len({result.broker_order_id for result in results}) == 12
    assert sorted(entry["clOrdId"] for entry in peer.snapshot_orders()) == sorted(
        f"job-{number}:trader-1" for number in range(12)
    )
    assert peer.token_requests["jt-demo"] == 1
