"""Concurrent writers of counters and PnL rows wait only where they must (PostgreSQL), and stripes fold back."""

from __future__ import annotations

import datetime as dt
import threading
import time
from decimal import Decimal

from sqlalchemy import select, text

from justtrades.accounts.pnl import compute_daily_pnl
from justtrades.db import counters
from justtrades.db.engine import create_database_engine
from justtrades.db.migrate import downgrade, upgrade
from justtrades.db.models import Fill, TraderSessionPnl

from .conftest import add_trading_setup

NOW = dt.datetime(2026, 3, 11, 15, 0, tzinfo=dt.timezone.utc)


def _fill(trader: dict, side: str, price: str, symbol: str = "NQZ6") -> Fill:
    return Fill(account_id=trader["account"], trader_id=trader["trader"], symbol=symbol, side=side, quantity=1,
                price=Decimal(price), filled_at=NOW)


def _impatient(session) -> None:
    # A statement that would wait for another transaction's row lock fails after 300 ms instead.
    session.execute(text("SET LOCAL lock_timeout = '300ms'"))


def test_counter_increments_do_not_wait(postgres_db_url, app_factory):
    runtime = app_factory(postgres_db_url).extensions["justtrades"]

    with runtime.session_factory() as first, runtime.session_factory() as second:
        first.begin()
        counters.increment_many(first, ["raw_total", "activity_success"])
        second.begin()
        _impatient(second)
        counters.increment_many(second, ["raw_total", "activity_success"])
        second.commit()
        first.commit()

    with runtime.session_factory() as session:
        assert counters.read(session, ["raw_total", "activity_success"]) == {"raw_total": 2, "activity_success": 2}


def test_fills_of_other_traders_do_not_wait(postgres_db_url, app_factory):
    runtime = app_factory(postgres_db_url).extensions["justtrades"]
    first = add_trading_setup(runtime)
    second = add_trading_setup(runtime, recorder_name="ES", account_name="Paper 2")

    with runtime.session_factory() as holder, runtime.session_factory() as other:
        holder.begin()
        holder.add(_fill(first, "Buy", "21500"))
        holder.flush()

        other.begin()
        _impatient(other)
        other.add(_fill(second, "Sell", "21510"))
        other.flush()
        other.commit()
        holder.commit()

    with runtime.session_factory() as session:
        assert compute_daily_pnl(session, NOW, lambda symbol: None).of(second["trader"]).open_positions == {"NQZ6": -1}


def test_concurrent_fills_of_one_trader_count(postgres_db_url, app_factory):
    # Both transactions start from no PnL rows. Without the trader lock the second computed its session row from
    # nothing, waited on the first one's insert, then overwrote it: one fill of two counted.
    runtime = app_factory(postgres_db_url).extensions["justtrades"]
    trader = add_trading_setup(runtime)
    other_failed: list[BaseException] = []

    def other_fill() -> None:
        try:
            with runtime.session_factory() as other, other.begin():
                other.add(_fill(trader, "Sell", "6100", symbol="ESZ6"))
        except BaseException as error:  # reported by the assertion below
            other_failed.append(error)

    with runtime.session_factory() as holder:
        holder.begin()
        holder.add(_fill(trader, "Buy", "21500"))
        holder.flush()
        other = threading.Thread(target=other_fill)
        other.start()
        _wait_for_a_lock_wait(holder)
        holder.commit()
    other.join(timeout=30)

    assert not other.is_alive()
    assert other_failed == []
    with runtime.session_factory() as session:
        counted = session.execute(select(TraderSessionPnl.fills).where(TraderSessionPnl.trader_id == trader["trader"]))
        assert counted.scalar_one() == 2
        assert compute_daily_pnl(session, NOW, lambda symbol: None).of(trader["trader"]).open_positions == {
            "NQZ6": 1, "ESZ6": -1}


def _wait_for_a_lock_wait(session, timeout: float = 10.0) -> None:
    """Return once another backend of the database waits for a lock, such as one this session's transaction took."""
    deadline = time.monotonic() + timeout
    waiting = text("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()")
    with session.get_bind().connect() as observer:
        while observer.execute(waiting).scalar_one() == 0:
            assert time.monotonic() < deadline, "the second transaction never waited for a lock"
            observer.rollback()
            time.sleep(0.02)


def test_downgrade_folds_counter_stripes(db_url, app_factory):
    runtime = app_factory(db_url).extensions["justtrades"]
    with runtime.session_factory() as session, session.begin():
        # Two stripes of one counter, as two pooled connections write them.
        session.execute(text("INSERT INTO counters (name, stripe, value) VALUES ('raw_total', 0, 3), ('raw_total', 5, 4)"))

    engine = create_database_engine(db_url)
    downgrade(engine, "0006")
    with engine.connect() as connection:
        folded = connection.execute(text("SELECT name, value FROM counters WHERE name = 'raw_total'")).all()
    upgrade(engine)
    engine.dispose()

    assert [tuple(row) for row in folded] == [("raw_total", 7)]
    with runtime.session_factory() as session:
        assert counters.read(session, ["raw_total"]) == {"raw_total": 7}
