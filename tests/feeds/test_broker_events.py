"""Parsing of Tradovate fill and position entities into the events the position monitor writes."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from justtrades.feeds.broker_events import InvalidEntity, Scope, parse_fill, parse_position, parse_timestamp

SCOPE = Scope(((26029294, 1),), "[...abcdef]")
FILL = {"id": 77, "orderId": 9001, "contractId": 3003, "timestamp": "2026-12-04T14:45:00.125Z", "action": "Sell",
        "qty": 2, "price": 24893.25, "active": True}


def test_fill_fields_parsed():
    event = parse_fill(FILL, SCOPE, 26029294, "MNQZ6", "Created")

    assert event.fill_id == "77"
    assert event.broker_order_id == "9001"
    assert event.side == "Sell"
    assert event.quantity == 2
    assert event.price == Decimal("24893.25")
    assert event.filled_at == dt.datetime(2026, 12, 4, 14, 45, 0, 125000, tzinfo=dt.timezone.utc)
    assert event.active is True
    assert SCOPE.account_id(event.broker_account_id) == 1


@pytest.mark.parametrize("changes, active", [({"active": False}, False), ({}, True)])
def test_fill_active_flag(changes, active):
    assert parse_fill(dict(FILL, **changes), SCOPE, None, "MNQZ6", "Updated").active is active


def test_deleted_fill_inactive():
    assert parse_fill(FILL, SCOPE, None, "MNQZ6", "Deleted").active is False


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"id": None}, "fill entity without an id"),
        ({"action": "Hold"}, "has action 'Hold'; expected Buy or Sell"),
        ({"qty": 0}, "qty is 0; expected a positive integer"),
        ({"qty": True}, "qty is True; expected a positive integer"),
        ({"price": "abc"}, "price is 'abc'; expected a number"),
        ({"price": float("nan")}, "expected a finite number"),
        ({"timestamp": "yesterday"}, "timestamp 'yesterday' is not ISO 8601"),
    ],
)
def test_invalid_fill_rejected(changes, message):
    with pytest.raises(InvalidEntity, match=message):
        parse_fill(dict(FILL, **changes), SCOPE, None, "MNQZ6", "Created")


def test_flat_position_has_no_price():
    event = parse_position({"accountId": 26029294, "contractId": 3003, "netPos": 0, "netPrice": 24890.0}, SCOPE, "MNQZ6")

    assert event.net_pos == 0
    assert event.net_price is None


def test_position_without_account_rejected():
    with pytest.raises(InvalidEntity, match="without an integer accountId"):
        parse_position({"contractId": 3003, "netPos": 1}, SCOPE, "MNQZ6")


def test_naive_timestamp_is_utc():
    assert parse_timestamp("2026-12-04T14:45:00") == dt.datetime(2026, 12, 4, 14, 45, tzinfo=dt.timezone.utc)
