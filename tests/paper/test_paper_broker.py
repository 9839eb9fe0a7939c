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
