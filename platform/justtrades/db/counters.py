"""Running totals in the `counters` table, incremented in the caller's transaction."""

from __future__ import annotations

import collections
from collections.abc import Iterable

from sqlalchemy import bindparam, event, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from . import pnl_totals
from .models import Counter, Fill

# Rows of the fills table, kept by the flush listener below and set from COUNT(*) by migration 0003, so
# /status and /metrics need not count a table that grows with every order.
FILLS_COUNTER = "fills_total"


def _upsert(insert):
    # Built once on the Table, not the mapped class: the ORM's handling of a DML statement on an entity
    # costs several times the statement itself, and increments run three times per webhook.
    table = Counter.__table__
    statement = insert(table).values(name=bindparam("counter_name"), value=bindparam("counter_by"))
    return statement.on_conflict_do_update(
        index_elements=[table.c.name], set_={"value": table.c.value + statement.excluded.value}
    )


_UPSERTS = {"postgresql": _upsert(postgresql.insert), "sqlite": _upsert(sqlite.insert)}


def increment(session: Session, name: str, by: int = 1) -> None:
    """Add `by` to the counter, creating it at first use; an upsert, so concurrent first uses cannot collide."""
    statement = _UPSERTS[session.get_bind().dialect.name]
    session.execute(statement, {"counter_name": name, "counter_by": by})


def increment_many(session: Session, names: Iterable[str]) -> None:
    """Add 1 per occurrence of each name with one executemany of the upsert; the webhook path raises three at once.

    The rows are written in name order, so transactions that raise overlapping sets through this function take
    the row locks in the same order and cannot deadlock on each other (PostgreSQL).
    """
    # An executemany of the one prebuilt upsert, not a multi-row VALUES statement: SQLAlchemy has no cache key for
    # a multi-row upsert and would compile it on every call.
    amounts = sorted(collections.Counter(names).items())
    if not amounts:
        return
    statement = _UPSERTS[session.get_bind().dialect.name]
    session.connection().execute(statement, [{"counter_name": name, "counter_by": by} for name, by in amounts])


def read(session: Session, names: list[str]) -> dict[str, int]:
    """Return the counters by name; a counter never incremented reads 0."""
    rows = session.execute(select(Counter.name, Counter.value).where(Counter.name.in_(names))).all()
    values = dict.fromkeys(names, 0)
    values.update({name: value for name, value in rows})
    return values


def read_prefix(session: Session, prefix: str) -> dict[str, int]:
    """Return every counter whose name starts with prefix, keyed by the rest of the name."""
    rows = session.execute(select(Counter.name, Counter.value).where(Counter.name.startswith(prefix))).all()
    return {name[len(prefix):]: value for name, value in rows}


@event.listens_for(Session, "after_flush")
def _count_flushed_fills(session: Session, _flush_context) -> None:
    # session.new, session.dirty and session.deleted still show the flushed changes here. The statements join
    # the flush's transaction, so the counts and the PnL rows commit or roll back with the fills themselves.
    # NOTE: fills inserted or deleted with Core statements (not through a Session flush) are not counted.
    fills = pnl_totals.flushed_fills(session)
    if fills.empty:
        return

    # fill_changes first, in every flush that touches a fill. On PostgreSQL its row lock is held until commit,
    # so these transactions update fills_total and the PnL rows one at a time and cannot deadlock on them.
    statement = _UPSERTS[session.get_bind().dialect.name]
    connection = session.connection()
    connection.execute(statement, {"counter_name": pnl_totals.FILL_CHANGES_COUNTER, "counter_by": fills.count})
    if len(fills.new) != len(fills.removed):
        connection.execute(statement, {"counter_name": FILLS_COUNTER, "counter_by": len(fills.new) - len(fills.removed)})
    pnl_totals.apply_flushed_fills(connection, fills)
