"""The admin dashboard overview: user, recorder and strategy counts and today's PnL."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import distinct, func, select
from sqlalchemy.orm import Session, sessionmaker

from ..db.models import Recorder, User
from .max_loss import MaxLossMonitor


def _counts_query():
    # One statement of scalar subqueries: the stats are read on every /metrics scrape, and each separate query
    # costs a round trip plus the ORM's per-statement work.
    def count(column, *conditions):
        query = select(func.count(column))
        return (query.where(*conditions) if conditions else query).scalar_subquery()

    return select(
        count(User.id).label("total_users"),
        count(User.id, User.approved.is_(True)).label("approved_users"),
        count(User.id, User.is_affiliate.is_(True)).label("affiliated"),
        count(Recorder.id).label("recorders"),
        count(distinct(Recorder.strategy), Recorder.strategy.is_not(None), Recorder.strategy != "").label("strategies"),
    )


_COUNTS = _counts_query()


def dashboard_stats(session_factory: sessionmaker[Session], monitor: MaxLossMonitor, now: dt.datetime) -> dict:
    """Return /api/admin/dashboard-stats.

    `user_count` counts the users with access (approved), as the reference endpoint does, so it equals
    `approved_users`; `total_users` counts every row. `daily_pnl` is the sum over all traders of the
    current CME session's PnL in US dollars, computed as the max daily loss monitor computes it.
    """
    with session_factory() as session:
        counts = session.execute(_COUNTS).one()

    pnl = monitor.daily_pnl(now)
    return {
        "user_count": counts.approved_users,
        "total_users": counts.total_users,
        "approved_users": counts.approved_users,
        "recorders": counts.recorders,
        "strategies": counts.strategies,
        "affiliated": counts.affiliated,
        "daily_pnl": float(round(pnl.total, 2)),
        "session_date": pnl.session_date.isoformat(),
    }
