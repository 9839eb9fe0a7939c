"""Running totals in the `counters` table, incremented in the caller's transaction.

A counter is the sum of its stripes, one row each. A transaction writes the stripe of the pooled connection it
runs on, and a connection runs one transaction at a time, so two transactions raising the same counter touch
different rows. With one row per counter every webhook transaction on PostgreSQL held that row's lock from its
upsert to its commit, and under load they queued on it (bench and tests/reliability/test_load.py).
"""

from __future__ import annotations

import collections
import contextlib
import itertools
from collections.abc import Iterable, Iterator, Mapping

from sqlalchemy import Connection, bindparam, event, func, insert, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from . import pnl_totals
from .models import Counter, Fill, utcnow

# Rows of the fills table, kept by the flush listener below and set from COUNT(*) by migration 0003, so
# /status and /metrics need not count a table that grows with every order.
FILLS_COUNTER = "fills_total"

# More stripes than the pool has connections (30), so live connections rarely share one. Sharing one only
# makes two transactions wait for each other, as before striping; the sums stay right.
STRIPES = 64
# The stripe a connection writes, kept in its pool record, so it lasts as long as the connection.
_STRIPE_KEY = "justtrades_counter_stripe"
# Fills of a `fills_totalled_at_end` block, kept in the Session's info.
_PENDING_FILLS_KEY = "justtrades_pending_fills"
_next_stripe = itertools.count()


def _upsert(insert):
    # Built once on the Table, not the mapped class: the ORM's handling of a DML statement on an entity
    # costs several times the statement itself, and increments run three times per webhook.
    table = Counter.__table__
    statement = insert(table).values(
        name=bindparam("counter_name"), stripe=bindparam("counter_stripe"), value=bindparam("counter_by")
    )
    return statement.on_conflict_do_update(
        index_elements=[table.c.name, table.c.stripe], set_={"value": table.c.value + statement.excluded.value}
    )


_UPSERTS = {"postgresql": _upsert(postgresql.insert), "sqlite": _upsert(sqlite.insert)}


def _connection_stripe(connection: Connection) -> int:
    """Return the stripe this pooled connection writes, choosing the next one at its first increment."""
    stripe = connection.info.get(_STRIPE_KEY)
    if stripe is None:
        # next() on itertools.count is atomic under the GIL, so concurrent first increments draw different numbers.
        stripe = connection.info[_STRIPE_KEY] = next(_next_stripe) % STRIPES
    return stripe


def increment(session: Session, name: str, by: int = 1) -> None:
    """Add `by` to the counter, creating it at first use; an upsert, so concurrent first uses cannot collide."""
    _add(session, {name: by})


def increment_many(session: Session, names: Iterable[str]) -> None:
    """Add 1 per occurrence of each name with one statement; the webhook path raises three at once."""
    _add(session, collections.Counter(names))


def _add(session: Session, amounts: Mapping[str, int]) -> None:
    if not amounts:
        return

    connection = session.connection()
    stripe = _connection_stripe(connection)
    # An executemany of the one prebuilt upsert, not a multi-row VALUES statement: SQLAlchemy has no cache key for
    # a multi-row upsert and would compile it on every call. Name order means two transactions that share a
    # stripe take its row locks in the same order, so on these rows they wait for each other without deadlock.
    connection.execute(_UPSERTS[connection.dialect.name], [
        {"counter_name": name, "counter_stripe": stripe, "counter_by": by} for name, by in sorted(amounts.items())
    ])


def read(session: Session, names: list[str]) -> dict[str, int]:
    """Return the counters by name; a counter never incremented reads 0."""
    total = func.sum(Counter.value)
    rows = session.execute(select(Counter.name, total).where(Counter.name.in_(names)).group_by(Counter.name)).all()
    values = dict.fromkeys(names, 0)
    values.update({name: int(value) for name, value in rows})
    return values


def read_prefix(session: Session, prefix: str) -> dict[str, int]:
    """Return every counter whose name starts with prefix, keyed by the rest of the name."""
    total = func.sum(Counter.value)
    rows = session.execute(
        select(Counter.name, total).where(Counter.name.startswith(prefix)).group_by(Counter.name)
    ).all()
    return {name[len(prefix):]: int(value) for name, value in rows}


def insert_fill(session: Session, **values) -> int:
    """Insert one fill with a Core statement, with the fill counts and running PnL the flush listener keeps.

    Returns the fill's id. The unit of work of a Session flush cost more CPU than the insert and the running
    totals together, so the paper broker writes its fills this way, with `insert_fills`. Inside
    `fills_totalled_at_end` the counts and the PnL wait for the end of that block.
    """
    values.setdefault("filled_at", utcnow())
    return insert_fills(session, [values])[0]


def insert_fills(session: Session, rows: list[dict]) -> list[int]:
    """Insert several fills with one statement, as `insert_fill` does one; return their ids in the order of rows.

    Each row needs every column of `insert_fill`, `filled_at` included.
    """
    if not rows:
        return []
    ids = session.connection().execute(_INSERT_FILLS, rows).scalars().all()
    fills = [pnl_totals.NewFill(id=fill_id, **row) for fill_id, row in zip(ids, rows)]

    pending = session.info.get(_PENDING_FILLS_KEY)
    if pending is not None:
        pending.extend(fills)
        return ids
    _add_totals(session, fills)
    return ids


@contextlib.contextmanager
def fills_totalled_at_end(session: Session) -> Iterator[None]:
    """Apply the counts and running PnL of the fills that insert_fill writes in this block once, at its end.

    A batch of paper orders then locks its traders, reads their PnL rows and writes them once instead of once per
    fill. A fill whose savepoint rolls back has to leave the block's list with `forget_fills_after`.
    """
    session.info[_PENDING_FILLS_KEY] = []
    try:
        yield
        fills = session.info[_PENDING_FILLS_KEY]
    finally:
        del session.info[_PENDING_FILLS_KEY]
    _add_totals(session, fills)


def pending_fill_count(session: Session) -> int:
    """Return how many fills wait for the end of `fills_totalled_at_end`: a mark for forget_fills_after."""
    return len(session.info.get(_PENDING_FILLS_KEY, ()))


def forget_fills_after(session: Session, mark: int) -> None:
    """Drop the waiting fills written after `mark`, whose rows a rolled-back savepoint removed."""
    pending = session.info.get(_PENDING_FILLS_KEY)
    if pending is not None:
        del pending[mark:]


def _add_totals(session: Session, fills: list[pnl_totals.NewFill]) -> None:
    if not fills:
        return
    pnl_totals.apply_flushed_fills(session.connection(), pnl_totals.FlushedFills(new=fills, removed=[], changed=[]))
    _add(session, {pnl_totals.FILL_CHANGES_COUNTER: len(fills), FILLS_COUNTER: len(fills)})


# The ids come back in the order of the rows, which is also the order the database gave them in: the running PnL
# orders fills of the same time by id.
_INSERT_FILLS = insert(Fill.__table__).returning(Fill.__table__.c.id, sort_by_parameter_order=True)


@event.listens_for(Session, "after_flush")
def _count_flushed_fills(session: Session, _flush_context) -> None:
    # session.new, session.dirty and session.deleted still show the flushed changes here. The statements join
    # the flush's transaction, so the counts and the PnL rows commit or roll back with the fills themselves.
    # NOTE: fills inserted or deleted with other Core statements than insert_fill above are not counted.
    fills = pnl_totals.flushed_fills(session)
    if fills.empty:
        return

    pnl_totals.apply_flushed_fills(session.connection(), fills)
    amounts = {pnl_totals.FILL_CHANGES_COUNTER: fills.count}
    if len(fills.new) != len(fills.removed):
        amounts[FILLS_COUNTER] = len(fills.new) - len(fills.removed)
    _add(session, amounts)
