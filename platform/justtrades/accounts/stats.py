"""The admin dashboard overview: user, recorder and strategy counts and today's PnL."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import distinct, func, select
from sqlalchemy.orm import Session, sessionmaker

from ..db.models import Recorder, User
from .max_loss import MaxLossMonitor


def _count(session: Session, *conditions, column=User.id) -> int:
    query = select(func.count(column))
    if conditions:
        query = query.where(*conditions)
    return session.scalar(query)


def dashboard_stats(session_factory: sessionmaker[Session], monitor: MaxLossMonitor, now: dt.datetime) -> dict:
    """Return /api/admin/dashboard-stats.

    `user_count` counts the users with access (approved), as the reference endpoint does, so it equals
    `approved_users`; `total_users` counts every row. `daily_pnl` is the sum over all traders of the
    current CME session's PnL in US dollars, computed as the max daily loss monitor computes it.
    """
    with session_factory() as session:
        total_users = _count(session)
        approved_users = _count(session, User.approved.is_(True))
        affiliated = _count(session, User.is_affiliate.is_(True))
        recorders = session.scalar(select(func.count(Recorder.id)))
        strategies = session.scalar(
            select(func.count(distinct(Recorder.strategy))).where(Recorder.strategy.is_not(None), Recorder.strategy != "")
        )

    pnl = monitor.daily_pnl(now)
    return {
        "user_count": approved_users,
        "total_users": total_users,
        "approved_users": approved_users,
        "recorders": recorders,
        "strategies": strategies,
        "affiliated": affiliated,
        "daily_pnl": float(round(pnl.total, 2)),
        "session_date": pnl.session_date.isoformat(),
    }
