"""bench/bulk.py writes the per-trader PnL rows the platform would have kept for the same fills."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select

from bench import bulk, workloads
from justtrades.accounts.pnl import compute_daily_pnl, recompute_daily_pnl
from justtrades.db import pnl_totals
from justtrades.db.engine import create_database_engine, create_session_factory
from justtrades.db.models import Account, Recorder, Trader, TraderPosition, TraderSessionPnl

NOW = dt.datetime(2026, 3, 11, 15, 0, tzinfo=dt.timezone.utc)


def _rows(session) -> tuple[list, list]:
    positions = session.execute(select(TraderPosition.trader_id, TraderPosition.symbol, TraderPosition.net,
                                       TraderPosition.avg_price, TraderPosition.last_fill_id)
                                .order_by(TraderPosition.trader_id, TraderPosition.symbol)).all()
    sessions = session.execute(select(TraderSessionPnl.session_date, TraderSessionPnl.trader_id,
                                      TraderSessionPnl.realized, TraderSessionPnl.fills)
                               .order_by(TraderSessionPnl.session_date, TraderSessionPnl.trader_id)).all()
    return [tuple(row) for row in positions], [tuple(row) for row in sessions]


def test_bulk_fills_keep_pnl_rows(database_url):
    engine = create_database_engine(database_url)
    session_factory = create_session_factory(engine)
    with session_factory() as session, session.begin():
        recorder = Recorder(name="BULK", webhook_token="bulk-token")
        accounts = [Account(name=f"Bulk {index}") for index in range(3)]
        session.add_all([recorder, *accounts])
        session.flush()
        session.add_all([Trader(recorder_id=recorder.id, account_id=account.id) for account in accounts])

    writer = bulk.BulkWriter(database_url)
    # The second batch ends 20 hours earlier, in the previous session, but is written last: the rows must follow
    # the fill times, not the order of writing.
    bulk.add_fills(writer, 161, writer.traders(), workloads.contract_symbols(4), NOW)
    bulk.add_fills(writer, 160, writer.traders(), workloads.contract_symbols(3), NOW - dt.timedelta(hours=20))
    writer.close()

    with session_factory() as session:
        written = _rows(session)
        kept = compute_daily_pnl(session, NOW, lambda symbol: None)
        replayed = recompute_daily_pnl(session, NOW, lambda symbol: None)
    with session_factory() as session, session.begin():
        pnl_totals.rebuild_all(session.connection())
    with session_factory() as session:
        rebuilt = _rows(session)
    engine.dispose()

    assert len({row[0] for row in written[1]}) == 2
    assert written == rebuilt
    assert kept.total == replayed.total
    assert {trader: pnl.open_positions for trader, pnl in kept.traders.items() if pnl.open_positions} == \
        {trader: pnl.open_positions for trader, pnl in replayed.traders.items() if pnl.open_positions}
