"""Running totals in the `counters` table, incremented in the caller's transaction."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from .models import Counter

_INSERTS = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}


def increment(session: Session, name: str, by: int = 1) -> None:
    """Add `by` to the counter, creating it at first use; an upsert, so concurrent first uses cannot collide."""
    insert = _INSERTS[session.get_bind().dialect.name]
    statement = insert(Counter).values(name=name, value=by)
    statement = statement.on_conflict_do_update(index_elements=[Counter.name], set_={"value": Counter.value + by})
    session.execute(statement)


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
