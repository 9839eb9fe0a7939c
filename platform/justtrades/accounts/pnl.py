"""Daily PnL per trader, computed from fills: realized PnL of the CME session plus open-position PnL.

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
import re
from collections.abc import Callable, Iterable
from decimal import Decimal

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from ..db.models import Fill
from ..markets import calendar
from ..markets.products import MONTH_CODES, PRODUCTS, point_value

logger = logging.getLogger(__name__)

ZERO = Decimal(0)

LastPrice = Callable[[str], "Decimal | None"]

_CONTRACT = re.compile(rf"(?P<root>[A-Z0-9]+?)[{MONTH_CODES}]\d{{1,4}}")


def contract_root(symbol: str) -> str | None:
    """Return the product root of a contract such as NQZ6 (NQ), or None when the product is unknown."""
    text = symbol.strip().upper()
    match = _CONTRACT.fullmatch(text)
    root = match["root"] if match else text
    return root if root in PRODUCTS else None


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


def compute_daily_pnl(session: Session, now: dt.datetime, last_price: LastPrice) -> DailyPnl:
    """Compute the daily PnL of every trader with fills, for the session that contains `now`."""
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
    for (trader_id, symbol), state in positions.items():
        if state.net == 0:
            continue
        pnl = results.setdefault(trader_id, TraderPnl(trader_id))
        pnl.open_positions[symbol] = state.net
        _add_open_pnl(pnl, symbol, state, last_price)

    return DailyPnl(trading_day, start, results)


def _add_open_pnl(pnl: TraderPnl, symbol: str, state: PositionState, last_price: LastPrice) -> None:
    value = contract_point_value(symbol)
    price = _safe_last_price(last_price, symbol)
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
    # NOTE: this sums every fill before the session, so its cost grows with the fill history.
    signed = case((func.lower(Fill.side) == "buy", Fill.quantity), else_=-Fill.quantity)
    query = (
        select(Fill.trader_id, Fill.symbol)
        .where(Fill.trader_id.is_not(None), Fill.filled_at < start)
        .group_by(Fill.trader_id, Fill.symbol)
        .having(func.sum(signed) != 0)
    )
    return [(row.trader_id, row.symbol) for row in session.execute(query)]


def _fills(session: Session, *conditions) -> Iterable:
    """Yield the matching fills as rows of the columns the PnL needs, oldest first.

    Plain column rows rather than Fill entities: a session can hold tens of thousands of fills, and building
    ORM objects for each is most of the cost of a /metrics scrape.
    """
    columns = (Fill.trader_id, Fill.symbol, Fill.side, Fill.quantity, Fill.price)
    query = select(*columns).where(*conditions).order_by(Fill.filled_at, Fill.id)
    return session.execute(query.execution_options(yield_per=500))


def no_last_price(_symbol: str) -> None:
    return None
