"""The paper broker: fills market orders on the tick grid at the signal or cached price; keeps positions and PnL.

A fill is written with statements built once on the tables, in the transaction of its caller when the executor
places it (`place_order_in`). `db.counters.insert_fill` writes the fill row together with the fill count and the
traders' running PnL.
"""

from __future__ import annotations

import dataclasses
import logging
from decimal import Decimal
from typing import Callable

from sqlalchemy import Connection, String, bindparam, cast, insert, literal, select, update
from sqlalchemy.orm import Session, sessionmaker

from ..db import counters
from ..db.models import Order, PaperTrade, Position, utcnow
from ..markets.products import get_product, point_value as product_point_value
from ..markets.symbols import contract_root, snap_to_tick
from .base import AccountRef, BrokerError, BrokerPosition, FailureReason, OrderRequest, OrderResult

logger = logging.getLogger(__name__)

PriceSource = Callable[[str], Decimal | None]


class PaperBroker:
    name = "paper"

    def __init__(self, session_factory: sessionmaker[Session], last_price: PriceSource | None = None):
        self._session_factory = session_factory
        self._last_price = last_price or (lambda root: None)

    def place_order(self, request: OrderRequest) -> OrderResult:
        with self._session_factory() as session, session.begin():
            result = self._place(session, request)

        logger.info("paper fill account=%s order=%s %s %d %s @ %s", request.account.id, result.broker_order_id,
                    request.side, request.quantity, request.symbol, result.fill_price)
        return result

    def place_order_in(self, session: Session, request: OrderRequest) -> OrderResult:
        """Fill the order in the caller's transaction: the paper book is tables of the platform's own database.

        The executor calls this inside the transaction that claims the job, so the claim, the order row, the fill
        and the job's end commit together or not at all.
        """
        return self._place(session, request)

    def _place(self, session: Session, request: OrderRequest) -> OrderResult:
        price = request.price if request.price is not None else self._last_price(contract_root(request.symbol))
        if price is None:
            raise BrokerError(
                FailureReason.NO_PRICE,
                f"no signal price and no cached price for {request.symbol}; send a price in the alert "
                "or start the price feed",
                permanent=True,
            )

        # An exchange trades on the tick grid, so a signal price off it (21500.13 for NQ) fills at the nearest tick.
        price = snap_to_tick(price, get_product(contract_root(request.symbol)))

        connection = session.connection()
        # Marking the order filled first locks its row, so a second attempt at the same order waits here and
        # then finds it filled. The update touches only an order not yet filled and returns it.
        order = connection.execute(_MARK_FILLED, {"order_client_id": request.client_order_id}).first()
        if order is None:
            return self._filled_earlier(connection, request.client_order_id)

        _fill(connection, request, price)
        # The fill goes in last because it locks its trader's PnL rows until commit (db/pnl_totals.py). Written
        # last, it keeps that lock only for the end of the transaction; in a batch the lock waits for the batch's
        # end (counters.fills_totalled_at_end).
        counters.insert_fill(session, order_id=order.id, account_id=request.account.id, trader_id=request.trader_id,
                             symbol=request.symbol, side=request.side, quantity=request.quantity, price=price)
        return OrderResult(order.broker_order_id, "filled", fill_price=price)

    @staticmethod
    def _filled_earlier(connection: Connection, client_order_id: str) -> OrderResult:
        order = connection.execute(_ORDER_OF_CLIENT_ID, {"client_order_id": client_order_id}).first()
        if order is None:
            raise BrokerError(
                FailureReason.INTERNAL_ERROR,
                f"no order row for client id {client_order_id}; the executor writes it first",
                permanent=True,
            )
        return OrderResult(order.broker_order_id, "filled")

    def find_order(self, account: AccountRef, client_order_id: str) -> OrderResult | None:
        with self._session_factory() as session:
            order = session.scalars(select(Order).where(Order.client_order_id == client_order_id)).one_or_none()
        if order is None or order.status != "filled":
            return None
        return OrderResult(order.broker_order_id, "filled")

    def positions(self, account: AccountRef) -> list[BrokerPosition]:
        with self._session_factory() as session:
            rows = session.scalars(
                select(Position).where(Position.account_id == account.id, Position.net_pos != 0).order_by(Position.symbol)
            ).all()
        return [BrokerPosition(row.symbol, row.net_pos, row.avg_price) for row in rows]

    def working_orders(self, account: AccountRef) -> list[dict]:
        return []  # market orders fill at once; the paper broker keeps no resting orders

    def clear_caches(self) -> None:
        return None  # the paper broker reads the database every time


@dataclasses.dataclass
class _PositionState:
    net_pos: int
    avg_price: Decimal | None
    realized_pnl: Decimal


def _fill(connection: Connection, request: OrderRequest, price: Decimal) -> None:
    """Apply one fill to the account's position and paper trade of the contract."""
    key = {"account_id": request.account.id, "symbol": request.symbol}
    row = connection.execute(_POSITION_FOR_UPDATE, key).first()
    if row is None:
        position_id = connection.execute(_INSERT_POSITION, {**key, "net_pos": 0, "realized_pnl": Decimal(0)}).scalar_one()
        position = _PositionState(0, None, Decimal(0))
    else:
        position_id = row.id
        position = _PositionState(row.net_pos, row.avg_price, row.realized_pnl)

    old = position.net_pos
    signed_quantity = request.quantity if request.side == "Buy" else -request.quantity
    point_value = product_point_value(get_product(contract_root(request.symbol)))
    _apply_fill(position, signed_quantity, price, point_value)
    connection.execute(_UPDATE_POSITION, {
        "position_id": position_id, "position_net_pos": position.net_pos, "position_avg_price": position.avg_price,
        "position_realized_pnl": position.realized_pnl, "position_updated_at": utcnow(),
    })
    _track_paper_trade(connection, request, old, position.net_pos, price, point_value)


def _apply_fill(position: _PositionState, signed_quantity: int, price: Decimal, point_value: Decimal) -> None:
    """Update net position, average price and realized PnL for one fill."""
    old = position.net_pos
    new = old + signed_quantity

    # The part of the fill that reduces an open position realizes PnL against the average entry price.
    if old != 0 and (old > 0) != (signed_quantity > 0):
        closed = min(abs(old), abs(signed_quantity))
        direction = 1 if old > 0 else -1
        position.realized_pnl += (price - position.avg_price) * closed * direction * point_value

    if new == 0:
        position.avg_price = None
    elif old == 0 or (old > 0) != (new > 0):
        position.avg_price = price  # opened, or flipped through flat: the remainder entered at this price
    elif abs(new) > abs(old):
        position.avg_price = (position.avg_price * abs(old) + price * abs(signed_quantity)) / abs(new)

    position.net_pos = new


def _track_paper_trade(connection: Connection, request: OrderRequest, old: int, new: int, price: Decimal,
                       point_value: Decimal) -> None:
    key = {"account_id": request.account.id, "symbol": request.symbol}
    open_trade = connection.execute(_OPEN_TRADE, key).first()

    if open_trade is not None and (new == 0 or (old > 0) != (new > 0)):
        direction = 1 if open_trade.side == "Buy" else -1
        connection.execute(_CLOSE_TRADE, {
            "trade_id": open_trade.id, "trade_exit_price": price, "trade_closed_at": utcnow(),
            "trade_pnl": (price - open_trade.entry_price) * open_trade.quantity * direction * point_value,
        })
        open_trade = None

    if new != 0 and open_trade is None:
        connection.execute(_INSERT_TRADE, {
            **key, "trader_id": request.trader_id, "side": "Buy" if new > 0 else "Sell", "quantity": abs(new),
            "entry_price": price,
        })
    elif open_trade is not None:
        connection.execute(_RESIZE_TRADE, {"trade_id": open_trade.id, "trade_quantity": abs(new)})


_ORDERS = Order.__table__
_POSITIONS = Position.__table__
_TRADES = PaperTrade.__table__

# A paper order's broker id is "paper-" followed by the id of its order row.
_MARK_FILLED = (
    update(_ORDERS)
    .where(_ORDERS.c.client_order_id == bindparam("order_client_id"), _ORDERS.c.status != "filled")
    .values(status="filled", broker_order_id=literal("paper-") + cast(_ORDERS.c.id, String))
    .returning(_ORDERS.c.id, _ORDERS.c.broker_order_id)
)
_ORDER_OF_CLIENT_ID = select(_ORDERS.c.broker_order_id).where(_ORDERS.c.client_order_id == bindparam("client_order_id"))
_POSITION_FOR_UPDATE = (
    select(_POSITIONS.c.id, _POSITIONS.c.net_pos, _POSITIONS.c.avg_price, _POSITIONS.c.realized_pnl)
    .where(_POSITIONS.c.account_id == bindparam("account_id"), _POSITIONS.c.symbol == bindparam("symbol"))
    .with_for_update()
)
_INSERT_POSITION = insert(_POSITIONS).returning(_POSITIONS.c.id)
_UPDATE_POSITION = (
    update(_POSITIONS)
    .where(_POSITIONS.c.id == bindparam("position_id"))
    .values(net_pos=bindparam("position_net_pos"), avg_price=bindparam("position_avg_price"),
            realized_pnl=bindparam("position_realized_pnl"), updated_at=bindparam("position_updated_at"))
)
_OPEN_TRADE = (
    select(_TRADES.c.id, _TRADES.c.side, _TRADES.c.quantity, _TRADES.c.entry_price)
    .where(_TRADES.c.account_id == bindparam("account_id"), _TRADES.c.symbol == bindparam("symbol"),
           _TRADES.c.closed_at.is_(None))
    .order_by(_TRADES.c.id)
    .limit(1)
)
_CLOSE_TRADE = (
    update(_TRADES)
    .where(_TRADES.c.id == bindparam("trade_id"))
    .values(exit_price=bindparam("trade_exit_price"), closed_at=bindparam("trade_closed_at"), pnl=bindparam("trade_pnl"))
)
_RESIZE_TRADE = update(_TRADES).where(_TRADES.c.id == bindparam("trade_id")).values(quantity=bindparam("trade_quantity"))
_INSERT_TRADE = insert(_TRADES)
