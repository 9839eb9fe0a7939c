"""Running daily PnL per trader, kept in the transaction that writes each fill.

`trader_positions` stores each trader's net position and average price per contract, and `trader_session_pnl`
each trader's realized PnL per CME session date. The daily PnL readers (accounts.pnl) read these rows instead
of replaying every fill of the session on each request.

The rows equal a replay of the trader's fills in (filled_at, id) order: a fill newer than every fill applied to
its position is applied on top; a fill that arrived out of order, and any deleted or changed fill, makes the
trader's rows be rebuilt from all its fills. Fills written with Core statements, other than through
`db.counters.insert_fill`, are not seen here; `rebuild_traders` brings their traders up to date (bench/bulk.py
does so).

Positions are tracked at average cost. A fill's realized PnL counts in the session of its `filled_at`, measured
against the average entry price of the position it closes, even when that position was opened in an earlier
session, because no settlement prices are stored.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import json
import re
from collections.abc import Iterable
from decimal import Decimal

from sqlalchemy import bindparam, delete, insert, inspect, select, tuple_
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from ..markets import calendar
from ..markets.products import MONTH_CODES, PRODUCTS, point_value
from .models import Fill, Trader, TraderPosition, TraderSessionPnl

ZERO = Decimal(0)

# Fills inserted, deleted or changed through a Session flush. The daily PnL readers cache what they loaded and
# load again only when this counter moved; unlike fills_total it never returns to an earlier value.
FILL_CHANGES_COUNTER = "fill_changes"

_CONTRACT = re.compile(rf"(?P<root>[A-Z0-9]+?)[{MONTH_CODES}]\d{{1,4}}")

# The columns a replay needs, oldest first per trader.
FILL_COLUMNS = (Fill.trader_id, Fill.symbol, Fill.side, Fill.quantity, Fill.price, Fill.filled_at, Fill.id)


def contract_root(symbol: str) -> str | None:
    """Return the product root of a contract such as NQZ6 (NQ), or None when the product is unknown."""
    text = symbol.strip().upper()
    match = _CONTRACT.fullmatch(text)
    root = match["root"] if match else text
    return root if root in PRODUCTS else None


@functools.lru_cache(maxsize=4096)
def contract_point_value(symbol: str) -> Decimal | None:
    """Return the USD value of one point for a contract such as NQZ6, or None for an unknown product."""
    root = contract_root(symbol)
    return point_value(PRODUCTS[root]) if root is not None else None


def signed_quantity(side: str, quantity: int) -> int:
    if side.strip().lower() == "buy":
        return quantity
    if side.strip().lower() == "sell":
        return -quantity
    raise ValueError(f"fill side {side!r} is unknown; expected Buy or Sell")


@dataclasses.dataclass
class PositionState:
    """A net position at average cost; `net` is positive for long and negative for short."""

    net: int = 0
    avg_price: Decimal | None = None

    def apply(self, quantity: int, price: Decimal) -> Decimal:
        """Apply a signed fill and return the realized PnL in points times contracts."""
        if self.net == 0 or (self.net > 0) == (quantity > 0):
            total = abs(self.net) + abs(quantity)
            self.avg_price = ((self.avg_price or ZERO) * abs(self.net) + price * abs(quantity)) / total
            self.net += quantity
            return ZERO

        closed = min(abs(quantity), abs(self.net))
        direction = 1 if self.net > 0 else -1
        realized = (price - self.avg_price) * closed * direction

        self.net += quantity
        if self.net == 0:
            self.avg_price = None
        elif (self.net > 0) != (direction > 0):
            # The fill closed the position and opened one the other way at the fill price.
            self.avg_price = price
        return realized


@dataclasses.dataclass
class SessionTotals:
    """One trader's fills of one CME session: realized USD and the contracts of unknown products."""

    realized: Decimal = ZERO
    fills: int = 0
    unpriced_symbols: set[str] = dataclasses.field(default_factory=set)

    def add(self, symbol: str, points: Decimal) -> None:
        self.fills += 1
        value = contract_point_value(symbol)
        if value is None:
            self.unpriced_symbols.add(symbol)
            return
        self.realized += points * value


class SessionClock:
    """`calendar.session_date` with the bounds of the last session remembered, for replays of many fills."""

    def __init__(self):
        self._start = self._end = None
        self._date = None

    def date_of(self, moment: dt.datetime) -> dt.date:
        if self._start is None or not self._start <= moment < self._end:
            self._date = calendar.session_date(moment)
            self._start = calendar.session_close_of(calendar.add_business_days(self._date, -1))
            self._end = calendar.session_close_of(self._date)
        return self._date


class Replay:
    """Positions and session totals of a sequence of fills, applied in (filled_at, id) order per trader."""

    def __init__(self):
        self.positions: dict[tuple[int, str], PositionState] = {}
        self.last_fill: dict[tuple[int, str], tuple[dt.datetime, int]] = {}
        self.sessions: dict[tuple[dt.date, int], SessionTotals] = {}
        self._clock = SessionClock()

    def apply(self, trader_id: int, symbol: str, side: str, quantity: int, price: Decimal,
              filled_at: dt.datetime, fill_id: int) -> None:
        key = (trader_id, symbol)
        state = self.positions.setdefault(key, PositionState())
        points = state.apply(signed_quantity(side, quantity), price)
        self.last_fill[key] = (filled_at, fill_id)

        session_key = (self._clock.date_of(filled_at), trader_id)
        self.sessions.setdefault(session_key, SessionTotals()).add(symbol, points)

    def position_rows(self) -> list[dict]:
        return [
            _position_row(trader_id, symbol, state, *self.last_fill[(trader_id, symbol)])
            for (trader_id, symbol), state in self.positions.items()
        ]

    def session_rows(self) -> list[dict]:
        return [
            _session_row(session_date, trader_id, totals)
            for (session_date, trader_id), totals in self.sessions.items()
        ]


def _position_row(trader_id, symbol, state: PositionState, filled_at, fill_id) -> dict:
    return dict(trader_id=trader_id, symbol=symbol, net=state.net, avg_price=state.avg_price,
                last_filled_at=filled_at, last_fill_id=fill_id)


def _session_row(session_date, trader_id, totals: SessionTotals) -> dict:
    return dict(session_date=session_date, trader_id=trader_id, realized=totals.realized, fills=totals.fills,
                unpriced_symbols=encode_symbols(totals.unpriced_symbols))


def encode_symbols(symbols: Iterable[str]) -> str:
    return json.dumps(sorted(symbols))


def decode_symbols(text: str) -> list[str]:
    return json.loads(text) if text else []


# Rebuilding from the fills table


def rebuild_traders(connection: Connection, trader_ids: Iterable[int]) -> None:
    """Replace the rows of these traders with a replay of all their fills."""
    trader_ids = sorted(set(trader_ids))
    if not trader_ids:
        return
    connection.execute(delete(TraderPosition.__table__).where(TraderPosition.trader_id.in_(trader_ids)))
    connection.execute(delete(TraderSessionPnl.__table__).where(TraderSessionPnl.trader_id.in_(trader_ids)))

    query = select(*FILL_COLUMNS).where(Fill.trader_id.in_(trader_ids))
    _write_replay(connection, query)


def rebuild_all(connection: Connection) -> None:
    """Replace every row with a replay of the whole fills table (migration 0004 builds the tables with it)."""
    connection.execute(delete(TraderPosition.__table__))
    connection.execute(delete(TraderSessionPnl.__table__))
    _write_replay(connection, select(*FILL_COLUMNS).where(Fill.trader_id.is_not(None)))


def _write_replay(connection: Connection, query) -> None:
    replay = Replay()
    ordered = query.order_by(Fill.trader_id, Fill.filled_at, Fill.id).execution_options(yield_per=5000)
    for row in connection.execute(ordered):
        replay.apply(*row)

    positions = replay.position_rows()
    sessions = replay.session_rows()
    if positions:
        connection.execute(insert(TraderPosition.__table__), positions)
    if sessions:
        connection.execute(insert(TraderSessionPnl.__table__), sessions)


# Keeping the rows with each flush


@dataclasses.dataclass(frozen=True)
class NewFill:
    """The columns of a fill row that a Core statement inserted, with the id the database gave it."""

    id: int
    order_id: int | None
    account_id: int
    trader_id: int | None
    symbol: str
    side: str
    quantity: int
    price: Decimal
    filled_at: dt.datetime
    broker_fill_id: str | None = None


@dataclasses.dataclass(frozen=True)
class FlushedFills:
    new: list[Fill | NewFill]
    removed: list[Fill]
    changed: list[Fill]

    @property
    def count(self) -> int:
        return len(self.new) + len(self.removed) + len(self.changed)

    @property
    def empty(self) -> bool:
        return self.count == 0


def flushed_fills(session: Session) -> FlushedFills:
    """Return the fills a flush inserted, deleted and changed; call it from an after_flush listener."""
    return FlushedFills(
        new=[row for row in session.new if isinstance(row, Fill)],
        removed=[row for row in session.deleted if isinstance(row, Fill)],
        changed=[row for row in session.dirty if isinstance(row, Fill) and session.is_modified(row)],
    )


def apply_flushed_fills(connection: Connection, fills: FlushedFills) -> None:
    """Bring the rows up to date with the fills of one flush, in the flush's transaction.

    The traders' rows are locked first (PostgreSQL holds the locks until commit), so two transactions never run
    the read-modify-write below for the same trader at once, while fills of different traders go on in parallel.
    """
    before_change = _traders_before_change(fills.changed)
    _lock_traders(connection, {row.trader_id for row in fills.new + fills.removed + fills.changed} | before_change)

    rebuild = {row.trader_id for row in fills.removed + fills.changed} | before_change
    on_top = [fill for fill in fills.new if fill.trader_id is not None and fill.trader_id not in rebuild]
    rebuild |= _apply_on_top(connection, on_top)

    rebuild_traders(connection, {trader_id for trader_id in rebuild if trader_id is not None})


def _lock_traders(connection: Connection, trader_ids: set[int | None]) -> None:
    # In id order, so two flushes with fills of several traders take the locks in one order. FOR NO KEY UPDATE
    # leaves alone the key-share locks that inserting an order or job for the trader takes. SQLite writes one
    # transaction at a time and needs no lock.
    # NOTE: a transaction that flushes fills twice locks in flush order, and two such can deadlock (PostgreSQL
    # then aborts one). The position monitor writes one fill per transaction, and a batch of paper orders totals
    # all its fills at once (counters.fills_totalled_at_end).
    ids = sorted(trader_id for trader_id in trader_ids if trader_id is not None)
    if ids and connection.dialect.name == "postgresql":
        connection.execute(_LOCK_TRADERS, {"trader_ids": ids}).all()


def _traders_before_change(changed: list[Fill]) -> set[int]:
    traders = set()
    for row in changed:
        traders.update(value for value in inspect(row).attrs.trader_id.history.deleted if value is not None)
    return traders


_POSITION = TraderPosition.__table__
_SESSION = TraderSessionPnl.__table__
_TRADERS = Trader.__table__

_LOCK_TRADERS = (
    select(_TRADERS.c.id)
    .where(_TRADERS.c.id.in_(bindparam("trader_ids", expanding=True)))
    .order_by(_TRADERS.c.id)
    .with_for_update(key_share=True)
)

# Each trader's rows are read after its lock (above), so they are current; FOR UPDATE keeps them so should a
# writer ever skip that lock.
_READ_POSITIONS = (
    select(_POSITION.c.trader_id, _POSITION.c.symbol, _POSITION.c.net, _POSITION.c.avg_price,
           _POSITION.c.last_filled_at, _POSITION.c.last_fill_id)
    .where(tuple_(_POSITION.c.trader_id, _POSITION.c.symbol).in_(bindparam("position_keys", expanding=True)))
    .with_for_update()
)
_READ_SESSIONS = (
    select(_SESSION.c.session_date, _SESSION.c.trader_id, _SESSION.c.realized, _SESSION.c.fills,
           _SESSION.c.unpriced_symbols)
    .where(tuple_(_SESSION.c.session_date, _SESSION.c.trader_id).in_(bindparam("session_keys", expanding=True)))
    .with_for_update()
)


def _apply_on_top(connection: Connection, fills: list[Fill | NewFill]) -> set[int]:
    """Apply new fills on top of their traders' rows; return the traders whose rows must be rebuilt instead.

    A trader is rebuilt when one of its fills is older than its position's newest fill. The rows of all the fills
    are read with one statement per table and written with one executemany per table, so here a batch of paper
    orders costs the round trips of one order.
    """
    if not fills:
        return set()

    replay = Replay()
    position_keys = sorted({(fill.trader_id, fill.symbol) for fill in fills})
    for row in connection.execute(_READ_POSITIONS, {"position_keys": position_keys}):
        key = (row.trader_id, row.symbol)
        replay.positions[key] = PositionState(row.net, row.avg_price)
        replay.last_fill[key] = (row.last_filled_at, row.last_fill_id)
    session_keys = sorted({(calendar.session_date(fill.filled_at), fill.trader_id) for fill in fills})
    for row in connection.execute(_READ_SESSIONS, {"session_keys": session_keys}):
        replay.sessions[(row.session_date, row.trader_id)] = SessionTotals(
            row.realized, row.fills, set(decode_symbols(row.unpriced_symbols))
        )

    rebuild = set()
    for fill in sorted(fills, key=lambda row: (row.filled_at, row.id)):
        if fill.trader_id in rebuild:
            continue
        newest = replay.last_fill.get((fill.trader_id, fill.symbol))
        if newest is not None and newest > (fill.filled_at, fill.id):
            rebuild.add(fill.trader_id)
            continue
        replay.apply(fill.trader_id, fill.symbol, fill.side, fill.quantity, fill.price, fill.filled_at, fill.id)

    # The rows of a trader that is rebuilt are replaced by its replay, so only the others are written here.
    positions = [row for row in replay.position_rows() if row["trader_id"] not in rebuild]
    sessions = [row for row in replay.session_rows() if row["trader_id"] not in rebuild]
    if positions:
        _upsert(connection, _POSITION, ("trader_id", "symbol"), positions)
    if sessions:
        _upsert(connection, _SESSION, ("session_date", "trader_id"), sessions)
    return rebuild


def _upsert(connection: Connection, table, key: tuple[str, ...], values: list[dict]) -> None:
    connection.execute(_upsert_statement(connection.dialect.name, table, key), values)


@functools.cache
def _upsert_statement(dialect: str, table, key: tuple[str, ...]):
    # Built once per table: building the statement and its excluded columns on every fill cost about 2 ms of
    # CPU, more than running it. The rows written here name every column, so the update sets all but the key.
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as dialect_insert
    elif dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as dialect_insert
    else:
        raise RuntimeError(f"database dialect {dialect!r} is not supported; use PostgreSQL or SQLite")

    statement = dialect_insert(table)
    updates = {column.name: statement.excluded[column.name] for column in table.columns if column.name not in key}
    return statement.on_conflict_do_update(index_elements=list(key), set_=updates)
