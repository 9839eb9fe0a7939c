"""The fills counter that /status and /metrics read instead of COUNT(*) over the fills table."""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import func, select

from justtrades.db import counters
from justtrades.db.engine import create_database_engine, create_session_factory
from justtrades.db.migrate import downgrade, upgrade
from justtrades.db.models import Account, Fill


def _fill(account_id: int) -> Fill:
    return Fill(account_id=account_id, symbol="NQZ6", side="Buy", quantity=1, price=Decimal("21500.25"))


def _counted_and_actual(session_factory) -> tuple[int, int]:
    with session_factory() as session:
        counted = counters.read(session, [counters.FILLS_COUNTER])[counters.FILLS_COUNTER]
        actual = session.scalar(select(func.count()).select_from(Fill))
    return counted, actual


def test_fill_counter_follows_commits_and_rollbacks(database_url):
    engine = create_database_engine(database_url)
    session_factory = create_session_factory(engine)
    with session_factory() as session, session.begin():
        account = Account(name="Counter Account")
        session.add(account)
        session.flush()
        session.add_all([_fill(account.id) for _ in range(3)])

    try:
        with session_factory() as session, session.begin():
            session.add(_fill(account.id))
            session.flush()
            raise RuntimeError("roll the fill back")
    except RuntimeError:
        pass

    with session_factory() as session, session.begin():
        session.delete(session.scalars(select(Fill)).first())

    counted, actual = _counted_and_actual(session_factory)
    engine.dispose()
    assert actual == 2
    assert counted == actual


def test_migration_sets_fill_counter_from_rows(sqlite_url):
    engine = create_database_engine(sqlite_url)
    session_factory = create_session_factory(engine)
    with session_factory() as session, session.begin():
        account = Account(name="Migrated Account")
        session.add(account)
        session.flush()
        session.add_all([_fill(account.id) for _ in range(4)])

    downgrade(engine, "0002")
    upgrade(engine)

    counted, actual = _counted_and_actual(session_factory)
    engine.dispose()
    assert actual == 4
    assert counted == 4


def test_status_reports_counted_fills(client):
    runtime = client.application.extensions["justtrades"]
    with runtime.session_factory() as session, session.begin():
        account_id = session.scalar(select(Account.id).order_by(Account.id))
        session.add_all([_fill(account_id) for _ in range(5)])

    document = client.get("/status").get_json()

    with runtime.session_factory() as session:
        actual = session.scalar(select(func.count()).select_from(Fill))
    assert actual == 5
    assert document["indexed_trades"] == 5
