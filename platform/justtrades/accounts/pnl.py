"""Daily PnL per trader: realized PnL of the CME session plus open-position PnL.

The readers take each trader's realized PnL per session and its open positions from the running totals that
`db.pnl_totals` keeps with every fill, so a call reads one row per trader and open position instead of the
session's fills. `recompute_daily_pnl` replays the fills instead; the tests check that both agree.

Positions are tracked at average cost per trader and contract. A session's realized PnL counts the fills
made during that session, measured against the average entry price of the position they close, even when
the position was opened in an earlier session (no settlement prices are stored). Open positions are valued
at the last known price; without one their open PnL is left out and the contract is listed as unpriced.

The session of a fill is `markets.calendar.session_date(filled_at)`. So the day resets at 17:00
America/New_York, when the daily break starts, and trading resumes at 18:00 in the next session.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import threading
from collections.abc import Callable, Iterable
from decimal import Decimal

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from ..db import counters
from ..db.models import Fill, TraderPosition, TraderSessionPnl
from ..db.pnl_totals import (
    FILL_CHANGES_COUNTER,
    PositionState,
    contract_point_value,
    contract_root,
    decode_symbols,
    signed_quantity,
)
from ..markets import calendar

__all__ = [
    "DailyPnl", "DailyPnlReader", "LastPrice", "PositionState", "TraderPnl", "compute_daily_pnl",
    "contract_point_value", "contract_root", "no_last_price", "recompute_daily_pnl", "session_bounds",
    "signed_quantity",
]

logger = logging.getLogger(__name__)

ZERO = Decimal(0)

LastPrice = Callable[[str], "Decimal | None"]


@dataclasses.dataclass
class TraderPnl:
    """Daily PnL of one trader in US dollars."""

    trader_id: int
    realized: Decimal = ZERO
    open_pnl: Decimal = ZERO
    open_positions: dict[str, int] = dataclasses.field(default_factory=dict)
    unpriced_symbols: set[str] = dataclasses.field(default_factory=set)

    @property
    def total(self) -> Decimal:
        return self.realized + self.open_pnl


@dataclasses.dataclass(frozen=True)
class DailyPnl:
    session_date: dt.date
    session_start: dt.datetime
    traders: dict[int, TraderPnl]

    def of(self, trader_id: int) -> TraderPnl:
        return self.traders.get(trader_id) or TraderPnl(trader_id)

    @property
    def total(self) -> Decimal:
        return sum((pnl.total for pnl in self.traders.values()), ZERO)


def session_bounds(now: dt.datetime) -> tuple[dt.date, dt.datetime]:
    """Return the trading day of `now` and the first instant that belongs to it (the previous 17:00 ET)."""
    trading_day = calendar.session_date(now)
    previous_day = calendar.add_business_days(trading_day, -1)
    return trading_day, calendar.session_close_of(previous_day)


@dataclasses.dataclass(frozen=True)
class OpenPosition:
    trader_id: int
    symbol: str
    net: int
    avg_price: Decimal


@dataclasses.dataclass(frozen=True)
class PnlBook:
    """The running totals of one session as loaded at one value of the fill_changes counter."""

    session_date: dt.date
    session_start: dt.datetime
    fill_changes: int
    realized: dict[int, Decimal]
    unpriced: dict[int, set[str]]
    positions: tuple[OpenPosition, ...]
    open_symbols: tuple[str, ...]

    def daily_pnl(self, prices: dict[str, Decimal | None]) -> DailyPnl:
        """Build the daily PnL with the open positions valued at `prices` (symbol to last price or None)."""
        results = {
            trader_id: TraderPnl(trader_id, realized, unpriced_symbols=set(self.unpriced[trader_id]))
            for trader_id, realized in self.realized.items()
        }
        for position in self.positions:
            pnl = results.setdefault(position.trader_id, TraderPnl(position.trader_id))
            pnl.open_positions[position.symbol] = position.net
            _add_open_pnl(pnl, position.symbol, PositionState(position.net, position.avg_price),
                          prices.get(position.symbol))
        return DailyPnl(self.session_date, self.session_start, results)


def load_book(session: Session, now: dt.datetime) -> PnlBook:
    """Read the running totals of the session that contains `now`: one row per trader and open position.

    The counter is read first, so the rows are at least as new as the counter value the book carries.
    """
    trading_day, start = session_bounds(now)
    changes = counters.read(session, [FILL_CHANGES_COUNTER])[FILL_CHANGES_COUNTER]

    # Later sessions count too, because the replay counts every fill from the session start on. They have rows
    # only when `now` lies in the past.
    realized: dict[int, Decimal] = {}
    unpriced: dict[int, set[str]] = {}
    session_rows = select(TraderSessionPnl.trader_id, TraderSessionPnl.realized, TraderSessionPnl.unpriced_symbols)
    for row in session.execute(session_rows.where(TraderSessionPnl.session_date >= trading_day)
                               .order_by(TraderSessionPnl.session_date, TraderSessionPnl.trader_id)):
        realized[row.trader_id] = realized.get(row.trader_id, ZERO) + row.realized
        unpriced.setdefault(row.trader_id, set()).update(decode_symbols(row.unpriced_symbols))

    position_rows = (
        select(TraderPosition.trader_id, TraderPosition.symbol, TraderPosition.net, TraderPosition.avg_price)
        .where(TraderPosition.net != 0)
        .order_by(TraderPosition.trader_id, TraderPosition.symbol)
    )
    positions = tuple(OpenPosition(*row) for row in session.execute(position_rows))
    open_symbols = tuple(sorted({position.symbol for position in positions}))
    return PnlBook(trading_day, start, changes, realized, unpriced, positions, open_symbols)


def compute_daily_pnl(session: Session, now: dt.datetime, last_price: LastPrice) -> DailyPnl:
    """Compute the daily PnL of every trader with fills, for the session that contains `now`."""
    book = load_book(session, now)
    return book.daily_pnl(_prices(book.open_symbols, last_price))


class DailyPnlReader:
    """`compute_daily_pnl` that reuses its last result while nothing it depends on has changed.

    The result depends on the fills (the fill_changes counter, a sum over a few rows), the session date and the
    last prices of the open contracts. Each call reads the counter and loads the totals again only when it moved
    or a new session began. It builds the result again only when one of those or a price changed. Threads may
    share a reader, because a race at most builds the same result twice. Callers must not change the result.
    """

    def __init__(self, last_price: LastPrice):
        self._last_price = last_price
        self._lock = threading.Lock()
        self._book: PnlBook | None = None
        self._result: tuple[PnlBook, dict, DailyPnl] | None = None

    def read(self, session: Session, now: dt.datetime) -> DailyPnl:
        book = self._current_book(session, now)
        prices = _prices(book.open_symbols, self._last_price)

        cached = self._result
        if cached is not None and cached[0] is book and cached[1] == prices:
            return cached[2]
        result = book.daily_pnl(prices)
        self._result = (book, prices, result)
        return result

    def _current_book(self, session: Session, now: dt.datetime) -> PnlBook:
        trading_day = calendar.session_date(now)
        changes = counters.read(session, [FILL_CHANGES_COUNTER])[FILL_CHANGES_COUNTER]
        book = self._book
        if book is not None and book.session_date == trading_day and book.fill_changes == changes:
            return book

        with self._lock:
            # Another thread may have loaded the same book while this one waited.
            book = self._book
            if book is None or book.session_date != trading_day or book.fill_changes != changes:
                book = load_book(session, now)
                self._book = book
        return book


def recompute_daily_pnl(session: Session, now: dt.datetime, last_price: LastPrice) -> DailyPnl:
    """Compute the daily PnL by replaying every fill, as the readers did before the running totals.

    Its cost grows with the number of fills. The tests use it to check the running totals.
    """
    trading_day, start = session_bounds(now)
    positions: dict[tuple[int, str], PositionState] = {}
    results: dict[int, TraderPnl] = {}

    # 1. Positions carried into the session, rebuilt from the fills of each contract still open at its start.
    for trader_id, symbol in _carried_contracts(session, start):
        state = positions.setdefault((trader_id, symbol), PositionState())
        for fill in _fills(session, Fill.trader_id == trader_id, Fill.symbol == symbol, Fill.filled_at < start):
            state.apply(signed_quantity(fill.side, fill.quantity), fill.price)

    # 2. The session's fills: each closing fill realizes PnL.
    for fill in _fills(session, Fill.trader_id.is_not(None), Fill.filled_at >= start):
        pnl = results.setdefault(fill.trader_id, TraderPnl(fill.trader_id))
        state = positions.setdefault((fill.trader_id, fill.symbol), PositionState())
        points = state.apply(signed_quantity(fill.side, fill.quantity), fill.price)

        value = contract_point_value(fill.symbol)
        if value is None:
            pnl.unpriced_symbols.add(fill.symbol)
            continue
        pnl.realized += points * value

    # 3. Open positions at the last price.
    for (trader_id, symbol), state in sorted(positions.items()):
        if state.net == 0:
            continue
        pnl = results.setdefault(trader_id, TraderPnl(trader_id))
        pnl.open_positions[symbol] = state.net
        _add_open_pnl(pnl, symbol, state, _safe_last_price(last_price, symbol))

    return DailyPnl(trading_day, start, results)


def _prices(symbols: Iterable[str], last_price: LastPrice) -> dict[str, Decimal | None]:
    return {symbol: _safe_last_price(last_price, symbol) for symbol in symbols}


def _add_open_pnl(pnl: TraderPnl, symbol: str, state: PositionState, price: Decimal | None) -> None:
    value = contract_point_value(symbol)
    if value is None or price is None:
        pnl.unpriced_symbols.add(symbol)
        return
    pnl.open_pnl += (price - state.avg_price) * state.net * value


def _safe_last_price(last_price: LastPrice, symbol: str) -> Decimal | None:
    try:
        price = last_price(symbol)
    except Exception:
        # A broken price source must not stop the loss monitor; the position shows as unpriced instead.
        logger.exception("last price lookup for %s failed; its open PnL is left out", symbol)
        return None
    return Decimal(str(price)) if price is not None else None


def _carried_contracts(session: Session, start: dt.datetime) -> list[tuple[int, str]]:
    signed = case((func.lower(Fill.side) == "buy", Fill.quantity), else_=-Fill.quantity)
    query = (
        select(Fill.trader_id, Fill.symbol)
        .where(Fill.trader_id.is_not(None), Fill.filled_at < start)
        .group_by(Fill.trader_id, Fill.symbol)
        .having(func.sum(signed) != 0)
    )
    return [(row.trader_id, row.symbol) for row in session.execute(query)]


def _fills(session: Session, *conditions) -> Iterable:
    """Yield the matching fills as rows of the columns the PnL needs, oldest first."""
    columns = (Fill.trader_id, Fill.symbol, Fill.side, Fill.quantity, Fill.price)
    query = select(*columns).where(*conditions).order_by(Fill.filled_at, Fill.id)
    return session.execute(query.execution_options(yield_per=500))


def no_last_price(_symbol: str) -> None:
    return None
