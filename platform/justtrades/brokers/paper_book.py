"""The paper broker's book: net positions and round-trip trades per account and contract.

A set of paper fills reads the positions and open trades of its contracts with one statement each, applies the
fills in order in memory, then writes each row it changed once. So a set costs the same statements whatever its
size. Filled one at a time, each order cost five to seven statements, each a round trip to PostgreSQL, and the
paper worker process cleared a backlog less than half as fast (docs/benchmarks.md, fix 25).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterable
from decimal import Decimal

from sqlalchemy import Connection, bindparam, insert, select, tuple_, update

from ..db.models import PaperTrade, Position
from ..db.types import round_to_column

# An account id and a contract symbol: the key of a position and of its open trade.
BookKey = tuple[int, str]


@dataclasses.dataclass
class PositionState:
    """A position row in the book's memory. Its `id` is None until the book inserts the row."""

    id: int | None
    net_pos: int
    avg_price: Decimal | None
    realized_pnl: Decimal


@dataclasses.dataclass
class TradeState:
    """A paper trade row in the book's memory. Its `id` is None until the book inserts the row."""

    id: int | None
    account_id: int
    symbol: str
    trader_id: int | None
    side: str
    quantity: int
    entry_price: Decimal
    opened_at: dt.datetime
    exit_price: Decimal | None = None
    pnl: Decimal | None = None
    closed_at: dt.datetime | None = None


class PaperBook:
    """The positions and open trades of some contracts, locked in the caller's transaction until it ends.

    A book is loaded, filled and written once: the rows it inserts do not get their ids back.
    """

    def __init__(self, positions: dict[BookKey, PositionState], open_trades: dict[BookKey, TradeState]):
        self._positions = positions
        self._open_trades = open_trades
        self._changed_positions: set[BookKey] = set()
        # Trades to write, by object id, in the order they were first touched: new ones get ids in the order
        # they opened.
        self._changed_trades: dict[int, TradeState] = {}

    @classmethod
    def load(cls, connection: Connection, keys: Iterable[BookKey]) -> PaperBook:
        """Lock and read the positions of these contracts, and read their open trades."""
        keys = sorted(set(keys))
        positions = {
            (row.account_id, row.symbol): PositionState(row.id, row.net_pos, row.avg_price, row.realized_pnl)
            for row in connection.execute(_POSITIONS_FOR_UPDATE, {"book_keys": keys})
        }

        open_trades: dict[BookKey, TradeState] = {}
        for row in connection.execute(_OPEN_TRADES, {"book_keys": keys}):
            # The oldest open trade of a contract is its trade, because the book never opens a second one.
            open_trades.setdefault((row.account_id, row.symbol), TradeState(**row._asdict()))
        return cls(positions, open_trades)

    def fill(self, key: BookKey, trader_id: int | None, signed_quantity: int, price: Decimal, point_value: Decimal,
             filled_at: dt.datetime) -> None:
        """Apply one fill (positive to buy, negative to sell) to the contract's position and open trade."""
        position = self._positions.setdefault(key, PositionState(None, 0, None, Decimal(0)))
        old = position.net_pos
        apply_fill(position, signed_quantity, price, point_value)
        self._changed_positions.add(key)

        self._track_trade(key, trader_id, old, position.net_pos, price, point_value, filled_at)

    def write(self, connection: Connection, updated_at: dt.datetime) -> None:
        """Write every position and trade that the fills changed, with one statement per kind of write."""
        positions = [(key, self._positions[key]) for key in sorted(self._changed_positions)]
        updates = [_position_values(key, position, updated_at) | {"position_id": position.id}
                   for key, position in positions if position.id is not None]
        inserts = [_position_values(key, position, updated_at) for key, position in positions if position.id is None]
        if updates:
            connection.execute(_UPDATE_POSITION, updates)
        if inserts:
            connection.execute(_INSERT_POSITION, inserts)

        trades = list(self._changed_trades.values())
        trade_updates = [_trade_values(trade) | {"trade_id": trade.id} for trade in trades if trade.id is not None]
        trade_inserts = [_trade_values(trade) for trade in trades if trade.id is None]
        if trade_updates:
            connection.execute(_UPDATE_TRADE, trade_updates)
        if trade_inserts:
            connection.execute(_INSERT_TRADE, trade_inserts)

    def _track_trade(self, key: BookKey, trader_id: int | None, old: int, new: int, price: Decimal,
                     point_value: Decimal, filled_at: dt.datetime) -> None:
        """Close the open trade when the position goes flat or flips, and open one for what remains."""
        trade = self._open_trades.get(key)

        if trade is not None and (new == 0 or (old > 0) != (new > 0)):
            direction = 1 if trade.side == "Buy" else -1
            trade.exit_price = price
            trade.closed_at = filled_at
            trade.pnl = round_to_column((price - trade.entry_price) * trade.quantity * direction * point_value)
            self._touch(trade)
            del self._open_trades[key]
            trade = None

        if new != 0 and trade is None:
            trade = TradeState(None, key[0], key[1], trader_id, "Buy" if new > 0 else "Sell", abs(new), price,
                               opened_at=filled_at)
            self._open_trades[key] = trade
            self._touch(trade)
        elif trade is not None:
            trade.quantity = abs(new)
            self._touch(trade)

    def _touch(self, trade: TradeState) -> None:
        self._changed_trades.setdefault(id(trade), trade)


def apply_fill(position: PositionState, signed_quantity: int, price: Decimal, point_value: Decimal) -> None:
    """Update net position, average price and realized PnL for one fill, rounded as their columns keep them."""
    old = position.net_pos
    new = old + signed_quantity

    # The part of the fill that reduces an open position realizes PnL against the average entry price.
    if old != 0 and (old > 0) != (signed_quantity > 0):
        closed = min(abs(old), abs(signed_quantity))
        direction = 1 if old > 0 else -1
        position.realized_pnl = round_to_column(
            position.realized_pnl + (price - position.avg_price) * closed * direction * point_value
        )

    if new == 0:
        position.avg_price = None
    elif old == 0 or (old > 0) != (new > 0):
        position.avg_price = price  # opened, or flipped through flat: the remainder entered at this price
    elif abs(new) > abs(old):
        position.avg_price = round_to_column(
            (position.avg_price * abs(old) + price * abs(signed_quantity)) / abs(new)
        )

    position.net_pos = new


def _position_values(key: BookKey, position: PositionState, updated_at: dt.datetime) -> dict:
    return {"position_account_id": key[0], "position_symbol": key[1], "position_net_pos": position.net_pos,
            "position_avg_price": position.avg_price, "position_realized_pnl": position.realized_pnl,
            "position_updated_at": updated_at}


def _trade_values(trade: TradeState) -> dict:
    return {"trade_account_id": trade.account_id, "trade_symbol": trade.symbol, "trade_trader_id": trade.trader_id,
            "trade_side": trade.side, "trade_quantity": trade.quantity, "trade_entry_price": trade.entry_price,
            "trade_opened_at": trade.opened_at, "trade_exit_price": trade.exit_price, "trade_pnl": trade.pnl,
            "trade_closed_at": trade.closed_at}


_POSITIONS = Position.__table__
_TRADES = PaperTrade.__table__

# Locked in id order, so two transactions that lock some of the same positions take them in the same order.
_POSITIONS_FOR_UPDATE = (
    select(_POSITIONS.c.id, _POSITIONS.c.account_id, _POSITIONS.c.symbol, _POSITIONS.c.net_pos,
           _POSITIONS.c.avg_price, _POSITIONS.c.realized_pnl)
    .where(tuple_(_POSITIONS.c.account_id, _POSITIONS.c.symbol).in_(bindparam("book_keys", expanding=True)))
    .order_by(_POSITIONS.c.id)
    .with_for_update()
)
_POSITION_COLUMNS = {
    "net_pos": bindparam("position_net_pos"),
    "avg_price": bindparam("position_avg_price"),
    "realized_pnl": bindparam("position_realized_pnl"),
    "updated_at": bindparam("position_updated_at"),
}
_UPDATE_POSITION = update(_POSITIONS).where(_POSITIONS.c.id == bindparam("position_id")).values(_POSITION_COLUMNS)
_INSERT_POSITION = insert(_POSITIONS).values(
    account_id=bindparam("position_account_id"), symbol=bindparam("position_symbol"), **_POSITION_COLUMNS
)

_OPEN_TRADES = (
    select(_TRADES.c.id, _TRADES.c.account_id, _TRADES.c.symbol, _TRADES.c.trader_id, _TRADES.c.side,
           _TRADES.c.quantity, _TRADES.c.entry_price, _TRADES.c.opened_at)
    .where(tuple_(_TRADES.c.account_id, _TRADES.c.symbol).in_(bindparam("book_keys", expanding=True)),
           _TRADES.c.closed_at.is_(None))
    .order_by(_TRADES.c.id)
)
_TRADE_CHANGES = {
    "quantity": bindparam("trade_quantity"),
    "exit_price": bindparam("trade_exit_price"),
    "pnl": bindparam("trade_pnl"),
    "closed_at": bindparam("trade_closed_at"),
}
_UPDATE_TRADE = update(_TRADES).where(_TRADES.c.id == bindparam("trade_id")).values(_TRADE_CHANGES)
_INSERT_TRADE = insert(_TRADES).values(
    account_id=bindparam("trade_account_id"), symbol=bindparam("trade_symbol"), trader_id=bindparam("trade_trader_id"),
    side=bindparam("trade_side"), entry_price=bindparam("trade_entry_price"), opened_at=bindparam("trade_opened_at"),
    **_TRADE_CHANGES,
)
