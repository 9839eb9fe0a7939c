"""The paper broker: fills on the tick grid, and a second placement of a filled order fills nothing more."""

from __future__ import annotations

import dataclasses
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from justtrades.brokers.base import AccountRef, BrokerError, FailureReason, OrderRequest
from justtrades.db.models import Account, Fill, Order, Position

from ..execution.test_execution import ES_TOKEN, NQ_TOKEN, REFERENCE_TIME, positions, send, wait_for_jobs


@pytest.fixture
def frozen(running_app):
    running_app.extensions["justtrades"].clock = lambda: REFERENCE_TIME
    return running_app


def _filled_order_request(app) -> OrderRequest:
    runtime = app.extensions["justtrades"]
    with runtime.session_factory() as session:
        order = session.scalars(select(Order)).one()
        account = session.get(Account, order.account_id)
    ref = AccountRef(id=account.id, name=account.name, broker="paper")
    return OrderRequest(account=ref, symbol=order.symbol, side=order.side, quantity=order.quantity,
                        client_order_id=order.client_order_id, price=Decimal("6130.25"), trader_id=order.trader_id)


def test_filled_order_placed_again_fills_nothing(frozen):
    send(frozen, ES_TOKEN, '{"action":"buy","ticker":"ES1!","price":6120.5}')
    wait_for_jobs(frozen)
    request = _filled_order_request(frozen)
    paper = frozen.extensions["justtrades"].brokers["paper"]

    result = paper.place_order(request)

    with frozen.extensions["justtrades"].session_factory() as session:
        order = session.scalars(select(Order)).one()
        fills = session.scalar(select(func.count()).select_from(Fill))
    assert result.status == "filled"
    assert result.broker_order_id == order.broker_order_id == f"paper-{order.id}"
    assert fills == 1
    assert positions(frozen) == {(1, "ESZ6"): 1}


def test_unknown_client_order_id_is_internal_error(frozen):
    send(frozen, ES_TOKEN, '{"action":"buy","ticker":"ES1!","price":6120.5}')
    wait_for_jobs(frozen)
    request = dataclasses.replace(_filled_order_request(frozen), client_order_id="jt-no-such-order")

    with pytest.raises(BrokerError) as raised:
        frozen.extensions["justtrades"].brokers["paper"].place_order(request)

    assert raised.value.reason is FailureReason.INTERNAL_ERROR
    assert "jt-no-such-order" in str(raised.value)


def test_off_tick_signal_price_fills_at_nearest_tick(frozen):
    send(frozen, NQ_TOKEN, '{"action":"buy","ticker":"NQ1!","price":21500.13}')
    wait_for_jobs(frozen)

    with frozen.extensions["justtrades"].session_factory() as session:
        prices = session.scalars(select(Fill.price)).all()
        averages = session.scalars(select(Position.avg_price)).all()
    assert prices == [Decimal("21500.25"), Decimal("21500.25")]
    assert averages == [Decimal("21500.25"), Decimal("21500.25")]


def test_same_order_twice_in_one_call_fills_once(frozen):
    runtime = frozen.extensions["justtrades"]
    send(frozen, ES_TOKEN, '{"action":"buy","ticker":"ES1!","price":6120.5}')
    wait_for_jobs(frozen)
    request = _filled_order_request(frozen)
    with runtime.session_factory() as session, session.begin():
        order = session.scalars(select(Order)).one()
        order.status = "pending"  # as if the first attempt's fill had rolled back with its transaction

    with runtime.session_factory() as session, session.begin():
        outcomes = runtime.brokers["paper"].place_orders_in(session, [request, request])

    with runtime.session_factory() as session:
        fills = session.scalar(select(func.count()).select_from(Fill))
    assert [outcome.status for outcome in outcomes] == ["filled", "filled"]
    assert outcomes[0].broker_order_id == outcomes[1].broker_order_id
    assert fills == 2  # the job's own fill, and one more for the order placed again
    assert positions(frozen) == {(1, "ESZ6"): 2}
