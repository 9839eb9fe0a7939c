"""Fill and position entities of the Tradovate user socket, parsed into events the event writer records.

Field names follow Tradovate's Fill entity (id, orderId, contractId, timestamp, tradeDate, action Buy/Sell, qty,
price, active) and Position entity (accountId, contractId, timestamp, netPos, netPrice), as listed in
Tradovate's public API reference (partner.tradovate.com, "Fill List" and "Position List"). A Fill carries no
account id: the socket connection takes it from the order entity it saw for the fill's orderId.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from decimal import Decimal, InvalidOperation


class InvalidEntity(ValueError):
    """A fill or position entity that lacks a field the writer needs, or has a value of the wrong type."""


@dataclasses.dataclass(frozen=True)
class Scope:
    """The accounts of one token group: Tradovate account id to platform account id, and the token's label."""

    accounts: tuple[tuple[int, int], ...]
    token_label: str

    def account_id(self, broker_account_id: int | None) -> int | None:
        return dict(self.accounts).get(broker_account_id)

    @property
    def account_ids(self) -> list[int]:
        return [account_id for _, account_id in self.accounts]


@dataclasses.dataclass(frozen=True)
class FillEvent:
    scope: Scope
    fill_id: str
    broker_order_id: str | None
    broker_account_id: int | None  # None when no order entity named the fill's account
    contract_symbol: str
    side: str  # Buy or Sell
    quantity: int
    price: Decimal
    filled_at: dt.datetime
    active: bool
    received_at: float = dataclasses.field(default_factory=time.monotonic)  # time.monotonic()


@dataclasses.dataclass(frozen=True)
class PositionEvent:
    scope: Scope
    broker_account_id: int
    symbol: str
    net_pos: int
    net_price: Decimal | None
    updated_at: dt.datetime


def parse_fill(entity: dict, scope: Scope, broker_account_id: int | None, symbol: str, event_type: str) -> FillEvent:
    """Build a FillEvent from a Fill entity; a Deleted event counts as an inactive fill."""
    if entity.get("id") is None:
        raise InvalidEntity(f"fill entity without an id: {_preview(entity)}")
    side = entity.get("action")
    if side not in ("Buy", "Sell"):
        raise InvalidEntity(f"fill {entity['id']} has action {side!r}; expected Buy or Sell")

    order_id = entity.get("orderId")
    return FillEvent(
        scope=scope,
        fill_id=str(entity["id"]),
        broker_order_id=str(order_id) if order_id is not None else None,
        broker_account_id=broker_account_id,
        contract_symbol=symbol,
        side=side,
        quantity=_positive_int(entity.get("qty"), f"fill {entity['id']} qty"),
        price=_decimal(entity.get("price"), f"fill {entity['id']} price"),
        filled_at=parse_timestamp(entity.get("timestamp")),
        active=entity.get("active", True) is not False and event_type != "Deleted",
    )


def parse_position(entity: dict, scope: Scope, symbol: str) -> PositionEvent:
    account = entity.get("accountId")
    if not isinstance(account, int):
        raise InvalidEntity(f"position entity without an integer accountId: {_preview(entity)}")
    net_pos = entity.get("netPos")
    if not isinstance(net_pos, int) or isinstance(net_pos, bool):
        raise InvalidEntity(f"position of account {account} has netPos {net_pos!r}; expected an integer")

    net_price = entity.get("netPrice")
    return PositionEvent(
        scope=scope,
        broker_account_id=account,
        symbol=symbol,
        net_pos=net_pos,
        net_price=None if net_price is None or net_pos == 0 else _decimal(net_price, f"position {symbol} netPrice"),
        updated_at=parse_timestamp(entity.get("timestamp")),
    )


def parse_timestamp(value) -> dt.datetime:
    """Read Tradovate's ISO 8601 timestamp ("2026-12-04T14:45:00.123Z"); a missing one means now."""
    if value is None:
        return dt.datetime.now(dt.timezone.utc)
    if not isinstance(value, str):
        raise InvalidEntity(f"timestamp {value!r} is not an ISO 8601 string")
    try:
        moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as error:
        raise InvalidEntity(f"timestamp {value!r} is not ISO 8601") from error
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.timezone.utc)


def _positive_int(value, field: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise InvalidEntity(f"{field} is {value!r}; expected a positive integer")
    return value


def _decimal(value, field: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise InvalidEntity(f"{field} is {value!r}; expected a number")
    try:
        # Through str, so a JSON double such as 24893.25 keeps its short decimal form.
        number = Decimal(str(value))
    except InvalidOperation as error:
        raise InvalidEntity(f"{field} is {value!r}; expected a number") from error
    if not number.is_finite():
        raise InvalidEntity(f"{field} is {value!r}; expected a finite number")
    return number


def _preview(entity: dict) -> str:
    return str(entity)[:200]
