"""Faults at the Tradovate peer and how the adapter classifies them; no fault may cause a second order."""

from __future__ import annotations

import threading
import time

import pytest

from justtrades.brokers.base import BrokerError, FailureReason, OrderRequest, OrderResult
from justtrades.brokers.tradovate import TradovateBroker
from tests.peers.tradovate_rest import Fault, PeerResponse


def market_order(account, client_order_id="job-9:trader-3") -> OrderRequest:
    return OrderRequest(account=account, symbol="ESZ6", side="Buy", quantity=1, client_order_id=client_order_id)


def place_like_executor(
    broker: TradovateBroker,
    request: OrderRequest,
    previous_error: BrokerError | None = None,
    max_attempts: int = 3,
) -> OrderResult:
    """Follow the executor's contract: after an error that may have placed the order, look it up first."""
    last_error = previous_error
    for _ in range(max_attempts):
        if last_error is not None and last_error.order_may_exist:
            found = broker.find_order(request.account, request.client_order_id)
            if found is not None:
                return found
        try:
            return broker.place_order(request)
        except BrokerError as error:
            if error.permanent:
                raise
            last_error = error
    raise last_error


# -- rate limits ----------------------------------------------------------------------------------------


def test_429_is_rate_limit_with_retry_after(broker, peer, account):
    peer.inject("/order/placeorder", Fault.rate_limit(retry_after=7))

    with pytest.raises(BrokerError) as caught:
        broker.place_order(market_order(account))

    assert caught.value.reason is FailureReason.RATE_LIMIT_EXCEEDED
    assert caught.value.permanent is False
    assert caught.value.retry_after == 7
    assert caught.value.order_may_exist is False
    assert peer.snapshot_orders() == []


def test_429_without_header_waits_default(broker, peer, account):
    peer.inject("/order/placeorder", Fault.rate_limit(retry_after=None))

    with pytest.raises(BrokerError) as caught:
        broker.place_order(market_order(account))

    assert caught.value.reason is FailureReason.RATE_LIMIT_EXCEEDED
    assert caught.value.retry_after >= 1


def test_429_blocks_group_until_retry_after(broker, peer, account, clock):
    peer.inject("/order/placeorder", Fault.rate_limit(retry_after=30))
    with pytest.raises(BrokerError):
        broker.place_order(market_order(account))
    requests_after_429 = sum(peer.request_counts.values())

    clock.advance(seconds=10)
    with pytest.raises(BrokerError) as caught:
        broker.place_order(market_order(account))

    assert caught.value.reason is FailureReason.RATE_LIMIT_EXCEEDED
    assert caught.value.retry_after == pytest.approx(20)
    assert sum(peer.request_counts.values()) == requests_after_429

    clock.advance(seconds=21)
    assert broker.place_order(market_order(account)).status == "placed"
    assert len(peer.snapshot_orders()) == 1


def test_423_is_rate_limit_too(broker, peer, account):
    original = peer.handle

    def lockout_once(method, path, headers, body):
        if path.endswith("/order/placeorder") and not getattr(lockout_once, "done", False):
            lockout_once.done = True
            return PeerResponse(423, "", {"Retry-After": "5"})
        return original(method, path, headers, body)

    peer.handle = lockout_once
    with pytest.raises(BrokerError) as caught:
        broker.place_order(market_order(account))

    assert caught.value.reason is FailureReason.RATE_LIMIT_EXCEEDED
    assert caught.value.retry_after == 5


def test_penalty_ticket_is_resent_with_order(broker, peer, account, clock):
    peer.inject("/order/placeorder", Fault.penalty(p_time=0.2))
    request = market_order(account)

    with pytest.raises(BrokerError) as caught:
        broker.place_order(request)
    assert caught.value.reason is FailureReason.RATE_LIMIT_EXCEEDED
    assert caught.value.permanent is False
    assert caught.value.retry_after == pytest.approx(1.0)  # p-time, raised to the one-second floor
    assert peer.snapshot_orders() == []

    clock.advance(seconds=0.3)
    result = broker.place_order(request)

    [logged] = peer.snapshot_orders()
    assert logged["pTicket"] is True
    assert result.broker_order_id == str(logged["orderId"])


def test_penalty_with_captcha_is_permanent(broker, peer, account):
    peer.inject("/order/placeorder", Fault.penalty(p_time=5, captcha=True))

    with pytest.raises(BrokerError) as caught:
        broker.place_order(market_order(account))

    assert caught.value.reason is FailureReason.RATE_LIMIT_EXCEEDED
    assert caught.value.permanent is True
    assert "CAPTCHA" in caught.value.detail
    assert peer.snapshot_orders() == []


# -- expired tokens -------------------------------------------------------------------------------------


def test_401_renews_token_and_retries_once(broker, peer, account):
    broker.positions(account)  # the first token
    peer.inject("/order/placeorder", Fault.unauthorized())

    result = broker.place_order(market_order(account))

    assert result.status == "placed"
    assert peer.request_counts["/auth/renewaccesstoken"] == 1
    assert peer.token_requests["jt-demo"] == 1
    assert peer.request_counts["/order/placeorder"] == 2
    assert len(peer.snapshot_orders()) == 1


def test_expired_token_gets_new_token(broker, peer, account):
    broker.positions(account)
    peer.expire_tokens()

    result = broker.place_order(market_order(account))

    assert result.status == "placed"
    assert peer.request_counts["/auth/renewaccesstoken"] == 1  # refused: the session is gone
    assert peer.token_requests["jt-demo"] == 2
    assert len(peer.snapshot_orders()) == 1


def test_401_after_renewal_is_token_expired(broker, peer, account):
    broker.positions(account)
    peer.inject("/order/placeorder", Fault.unauthorized(), times=2)

    with pytest.raises(BrokerError) as caught:
        broker.place_order(market_order(account))

    assert caught.value.reason is FailureReason.TOKEN_EXPIRED
    assert caught.value.permanent is True
    assert peer.request_counts["/order/placeorder"] == 2
    assert peer.snapshot_orders() == []


def test_expired_error_text_renews_token(broker, peer, account):
    broker.positions(account)
    peer.inject("/order/placeorder", Fault.error("Expired Access Token"))

    result = broker.place_order(market_order(account))

    assert result.status == "placed"
    assert peer.request_counts["/auth/renewaccesstoken"] == 1
    assert len(peer.snapshot_orders()) == 1


def test_concurrent_401s_renew_once(make_broker, peer, account):
    broker = make_broker()
    broker.positions(account)
    peer.expire_tokens()
    errors = []

    def read_positions():
        try:
            broker.positions(account)
        except Exception as error:  # collected so the main thread can report it
            errors.append(error)

    threads = [threading.Thread(target=read_positions) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)

    assert errors == []
    assert peer.token_requests["jt-demo"] == 2
    assert peer.request_counts["/auth/renewaccesstoken"] <= 1


# -- timeouts and connection errors ---------------------------------------------------------------------


def test_timeout_after_recording_may_exist(make_broker, peer, account):
    broker = make_broker(timeout_seconds=0.3)
    broker.positions(account)
    peer.inject("/order/placeorder", Fault.slow_response(2.0))

    with pytest.raises(BrokerError) as caught:
        broker.place_order(market_order(account))

    assert caught.value.reason is FailureReason.TIMEOUT
    assert caught.value.permanent is False
    assert caught.value.order_may_exist is True
    assert caught.value.retry_after >= 10  # time for a late order to become visible before the lookup
    assert len(peer.snapshot_orders()) == 1


def test_timeout_then_lookup_places_once(make_broker, peer, account):
    broker = make_broker(timeout_seconds=0.3)
    broker.positions(account)
    peer.inject("/order/placeorder", Fault.slow_response(2.0))
    request = market_order(account)

    result = place_like_executor(broker, request)

    assert len(peer.orders_with_client_id(request.client_order_id)) == 1
    assert peer.request_counts["/order/placeorder"] == 1
    assert result.broker_order_id == str(peer.orders_with_client_id(request.client_order_id)[0]["orderId"])
    assert result.status == "filled"


def test_timeout_before_recording_finds_late_order(make_broker, peer, account):
    broker = make_broker(timeout_seconds=0.3)
    broker.positions(account)
    peer.inject("/order/placeorder", Fault.delay(0.8))
    request = market_order(account)

    with pytest.raises(BrokerError) as caught:
        broker.place_order(request)
    assert caught.value.reason is FailureReason.TIMEOUT
    assert caught.value.order_may_exist is True

    # Waiting the settle time is what makes the lookup see the late order; this test waits less.
    deadline = time.monotonic() + 5
    while not peer.orders_with_client_id(request.client_order_id) and time.monotonic() < deadline:
        time.sleep(0.05)
    found = broker.find_order(account, request.client_order_id)

    assert found is not None
    assert len(peer.orders_with_client_id(request.client_order_id)) == 1


def test_refused_connection_is_not_sent(broker, peer, account):
    broker.positions(account)
    # Close the pooled keep-alive connections too, so the next request must open a new one.
    broker.close()
    peer.stop()

    with pytest.raises(BrokerError) as caught:
        broker.place_order(market_order(account))

    assert caught.value.reason is FailureReason.CONNECTION_ERROR
    assert caught.value.order_may_exist is False
    assert peer.snapshot_orders() == []


def test_dropped_connection_may_exist(broker, peer, account):
    broker.positions(account)
    peer.inject("/order/placeorder", Fault.drop_connection(after_record=True))
    request = market_order(account)

    with pytest.raises(BrokerError) as caught:
        broker.place_order(request)
    assert caught.value.reason is FailureReason.CONNECTION_ERROR
    assert caught.value.permanent is False
    assert caught.value.order_may_exist is True

    result = place_like_executor(broker, request, previous_error=caught.value)
    assert result.status == "filled"
    assert len(peer.orders_with_client_id(request.client_order_id)) == 1


def test_server_error_before_recording_retries_once(broker, peer, account):
    broker.positions(account)
    peer.inject("/order/placeorder", Fault.server_error(503))
    request = market_order(account)

    result = place_like_executor(broker, request)

    assert result.status == "placed"
    assert peer.request_counts["/order/placeorder"] == 2
    assert peer.request_counts["/command/list"] == 1
    assert len(peer.orders_with_client_id(request.client_order_id)) == 1


def test_server_error_after_recording_places_once(broker, peer, account):
    broker.positions(account)
    peer.inject("/order/placeorder", Fault.server_error(500, after_record=True))
    request = market_order(account)

    with pytest.raises(BrokerError) as caught:
        broker.place_order(request)
    assert caught.value.reason is FailureReason.CONNECTION_ERROR
    assert caught.value.order_may_exist is True

    result = place_like_executor(broker, request, previous_error=caught.value)
    assert result.status == "filled"
    assert len(peer.orders_with_client_id(request.client_order_id)) == 1


def test_peer_does_not_deduplicate_client_ids(broker, peer, account):
    request = market_order(account)

    broker.place_order(request)
    broker.place_order(request)

    assert len(peer.orders_with_client_id(request.client_order_id)) == 2


def test_non_json_response_may_exist(broker, peer, account):
    broker.positions(account)
    original = peer.handle

    def html_once(method, path, headers, body):
        response = original(method, path, headers, body)
        if path.endswith("/order/placeorder"):
            return PeerResponse(200, "<html>gateway</html>")
        return response

    peer.handle = html_once
    with pytest.raises(BrokerError) as caught:
        broker.place_order(market_order(account))

    assert caught.value.reason is FailureReason.INTERNAL_ERROR
    assert caught.value.order_may_exist is True
    assert caught.value.permanent is False
    assert "gateway" in caught.value.detail
