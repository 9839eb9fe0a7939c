"""Max daily loss monitor: records a LossBreach when a trader's daily PnL reaches its loss limit.

A breach row is unique per trader and CME session date. The webhook fan-out rejects new entries (buy and sell)
for a trader with a breach in the current session, but closes still go through. `has_breach` and
`breached_trader_ids` are the lookups for that check. The next session starts without a breach.
"""

from __future__ import annotations

import datetime as dt
import logging
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session, sessionmaker

from ..db.engine import transaction
from ..db.models import LossBreach, Recorder, Trader
from ..markets import calendar
from .pnl import DailyPnl, DailyPnlReader, LastPrice, TraderPnl

logger = logging.getLogger(__name__)


def has_breach(session: Session, trader_id: int, now: dt.datetime) -> bool:
    """Return True when the trader reached its max daily loss in the session that contains `now`."""
    query = select(LossBreach.id).where(
        LossBreach.trader_id == trader_id, LossBreach.session_date == calendar.session_date(now)
    )
    return session.scalar(query.limit(1)) is not None


def breached_trader_ids(session: Session, now: dt.datetime) -> set[int]:
    """Return the ids of the traders with a loss breach in the session that contains `now`."""
    query = select(LossBreach.trader_id).where(LossBreach.session_date == calendar.session_date(now))
    return set(session.scalars(query))


def is_breached(daily_pnl: Decimal, max_daily_loss: Decimal | None) -> bool:
    """Return True when the loss (the negated PnL) is at least the positive limit; no limit never breaches."""
    if max_daily_loss is None or max_daily_loss <= 0:
        return False
    return -daily_pnl >= max_daily_loss


def _money(value: Decimal) -> float:
    return float(round(value, 2))


class MaxLossMonitor:
    def __init__(self, session_factory: sessionmaker[Session], last_price: LastPrice):
        self._session_factory = session_factory
        self._pnl = DailyPnlReader(last_price)

    def daily_pnl(self, now: dt.datetime) -> DailyPnl:
        with self._session_factory() as session:
            return self._pnl.read(session, now)

    def check(self, now: dt.datetime) -> list[int]:
        """Record a breach for every monitored trader past its limit; return the ids newly breached."""
        newly_breached = []
        with transaction(self._session_factory) as session:
            pnl = self._pnl.read(session, now)
            for trader in _monitored_traders(session):
                trader_pnl = pnl.of(trader.id).total
                if not is_breached(trader_pnl, trader.max_daily_loss):
                    continue
                if _insert_breach(session, trader, pnl.session_date, trader_pnl, now):
                    newly_breached.append(trader.id)

        for trader_id in newly_breached:
            logger.warning(
                "trader %s reached its max daily loss in session %s; new entries are blocked until the next session",
                trader_id,
                pnl.session_date,
            )
        return newly_breached

    def snapshot(self, now: dt.datetime) -> dict:
        """Return /api/admin/max-loss-monitor/status: monitored traders, breaches and each breach's details.

        A trader shows as breached when a breach row exists (which blocks entries) or when its live loss has
        reached the limit before the monitor recorded it. `entries_blocked` is true only in the first case.
        """
        with self._session_factory() as session:
            pnl = self._pnl.read(session, now)
            traders = _monitored_traders(session)
            recorded = {
                breach.trader_id: breach
                for breach in session.execute(
                    select(LossBreach.trader_id, LossBreach.max_daily_loss, LossBreach.created_at)
                    .where(LossBreach.session_date == pnl.session_date)
                    .order_by(LossBreach.id)
                )
            }
            monitored_ids = {trader.id for trader in traders}
            # A breach stays in force for the session even when its limit was removed afterwards.
            extra = _traders_by_id(session, [trader_id for trader_id in recorded if trader_id not in monitored_ids])

            breached = [
                trader for trader in [*traders, *extra]
                if trader.id in recorded or is_breached(pnl.of(trader.id).total, trader.max_daily_loss)
            ]
            recorder_names = _recorder_names(session, {trader.recorder_id for trader in breached})

        details = [
            _breach_detail(trader, recorder_names, pnl.of(trader.id), recorded.get(trader.id)) for trader in breached
        ]
        return {
            "monitored_traders": len(traders),
            "daily_loss_breach_count": len(details),
            "breach_details": details,
            "session_date": pnl.session_date.isoformat(),
            "session_start": pnl.session_start.isoformat().replace("+00:00", "Z"),
            "daily_pnl": _money(pnl.total),
        }


def _breach_detail(trader, recorder_names: dict, trader_pnl: TraderPnl, breach) -> dict:
    limit = trader.max_daily_loss if trader.max_daily_loss is not None else breach.max_daily_loss
    return {
        "trader_id": trader.id,
        "recorder_name": recorder_names.get(trader.recorder_id),
        "max_daily_loss": _money(limit),
        "current_daily_loss": _money(trader_pnl.total),
        "status": "breached",
        "entries_blocked": breach is not None,
        "breached_at": breach.created_at.isoformat().replace("+00:00", "Z") if breach is not None else None,
        "open_positions": trader_pnl.open_positions,
        "unpriced_symbols": sorted(trader_pnl.unpriced_symbols),
    }


# Column rows rather than Trader entities: the monitor and every status request read all monitored traders.
_TRADER_COLUMNS = (Trader.id, Trader.recorder_id, Trader.max_daily_loss)


def _monitored_traders(session: Session) -> list:
    query = (
        select(*_TRADER_COLUMNS)
        .where(Trader.enabled.is_(True), Trader.max_daily_loss.is_not(None))
        .order_by(Trader.id)
    )
    return [trader for trader in session.execute(query) if trader.max_daily_loss > 0]


def _traders_by_id(session: Session, trader_ids: list[int]) -> list:
    if not trader_ids:
        return []
    rows = {row.id: row for row in session.execute(select(*_TRADER_COLUMNS).where(Trader.id.in_(trader_ids)))}
    return [rows[trader_id] for trader_id in trader_ids if trader_id in rows]


def _recorder_names(session: Session, recorder_ids: set[int]) -> dict[int, str]:
    if not recorder_ids:
        return {}
    query = select(Recorder.id, Recorder.name).where(Recorder.id.in_(recorder_ids))
    return {row.id: row.name for row in session.execute(query)}


def _insert_breach(session: Session, trader, session_date: dt.date, pnl: Decimal, now: dt.datetime) -> bool:
    """Insert the breach unless one exists; concurrent monitors on several replicas may race here."""
    values = dict(
        trader_id=trader.id,
        session_date=session_date,
        daily_pnl=pnl,
        max_daily_loss=trader.max_daily_loss,
        created_at=now,
    )
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        statement = postgresql_insert(LossBreach).values(**values)
    elif dialect == "sqlite":
        statement = sqlite_insert(LossBreach).values(**values)
    else:
        raise RuntimeError(f"database dialect {dialect!r} is not supported; use PostgreSQL or SQLite")

    statement = statement.on_conflict_do_nothing(index_elements=["trader_id", "session_date"])
    # RETURNING yields the new id, or no row when the breach existed (rowcount is not reliable here on psycopg).
    return session.execute(statement.returning(LossBreach.id)).scalar() is not None
