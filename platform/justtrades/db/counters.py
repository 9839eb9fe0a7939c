"""Running totals in the `counters` table, incremented in the caller's transaction."""

from __future__ import annotations

from sqlalchemy import bindparam, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from .models import Counter


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
