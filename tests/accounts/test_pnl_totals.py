"""The running PnL totals kept with each fill equal a replay of the fills, on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from sqlalchemy import select

from justtrades.accounts.pnl import DailyPnlReader, compute_daily_pnl, recompute_daily_pnl
from justtrades.db import counters, pnl_totals
from justtrades.db.engine import create_database_engine, transaction
from justtrades.db.migrate import downgrade, upgrade
from justtrades.db.models import Fill, TraderPosition, TraderSessionPnl

from .conftest import add_fill, add_trading_setup

UTC = dt.timezone.utc
# Wednesday 11 March 2026, 11:00 in New York: that session opened at Tuesday 17:00 ET (21:00 UTC).
NOW = dt.datetime(2026, 3, 11, 15, 0, tzinfo=UTC)
SESSION_START = dt.datetime(2026, 3, 10, 21, 0, tzinfo=UTC)
PRICES = {"NQZ6": Decimal("21510.25"), "ESZ6": Decimal("6105.5"), "XXZ6": Decimal("12")}


def _both(runtime, now: dt.datetime, prices=PRICES.get):
    with runtime.session_factory() as session:
        return compute_daily_pnl(session, now, prices), recompute_daily_pnl(session, now, prices)


def _assert_same(kept, replayed, trader_ids):
    assert kept.session_date == replayed.session_date
    assert kept.session_start == replayed.session_start
    assert kept.total == replayed.total
    for trader_id in trader_ids:
        assert kept.of(trader_id).realized == replayed.of(trader_id).realized
        assert kept.of(trader_id).open_pnl == replayed.of(trader_id).open_pnl
        assert kept.of(trader_id).open_positions == replayed.of(trader_id).open_positions
        assert kept.of(trader_id).unpriced_symbols == replayed.of(trader_id).unpriced_symbols


def _stored_rows(runtime) -> tuple[list, list]:
    with runtime.session_factory() as session:
        positions = session.execute(
            select(TraderPosition.trader_id, TraderPosition.symbol, TraderPosition.net, TraderPosition.avg_price)
            .order_by(TraderPosition.trader_id, TraderPosition.symbol)
        ).all()
        sessions = session.execute(
            select(TraderSessionPnl.session_date, TraderSessionPnl.trader_id, TraderSessionPnl.realized,
                   TraderSessionPnl.fills, TraderSessionPnl.unpriced_symbols)
            .order_by(TraderSessionPnl.session_date, TraderSessionPnl.trader_id)
        ).all()
    return [tuple(row) for row in positions], [tuple(row) for row in sessions]


def _rebuilt_rows(runtime) -> tuple[list, list]:
    with transaction(runtime.session_factory) as session:
        pnl_totals.rebuild_all(session.connection())
    return _stored_rows(runtime)


def test_partial_closes_and_reversal_match_replay(runtime):
    ids = add_trading_setup(runtime)
    trader, account = ids["trader"], ids["account"]
    base = NOW - dt.timedelta(hours=5)
    # Average 21500.333... after the second buy: a price no NUMERIC(24, 10) column could keep exactly.
    for minutes, side, quantity, price in [(0, "Buy", 1, "21500"), (1, "Buy", 2, "21500.5"), (2, "Sell", 1, "21510"),
                                           (3, "Sell", 1, "21490.25"), (4, "Sell", 4, "21480"),  # reversal to -3
                                           (5, "Buy", 1, "21470.75"), (6, "Buy", 5, "21475")]:  # reversal to +3
        add_fill(runtime, trader, account, side, quantity, price, base + dt.timedelta(minutes=minutes))

    kept, replayed = _both(runtime, NOW)

    _assert_same(kept, replayed, [trader])
    assert kept.of(trader).open_positions == {"NQZ6": 3}
    assert kept.of(trader).realized != 0


def test_session_boundary_crossing_matches_replay(runtime):
    ids = add_trading_setup(runtime)
    trader, account = ids["trader"], ids["account"]
    # Opened and partly closed yesterday, closed and reopened today, a fill at the first instant of the session.
    add_fill(runtime, trader, account, "Buy", 3, "21500", SESSION_START - dt.timedelta(hours=2))
    add_fill(runtime, trader, account, "Sell", 1, "21520", SESSION_START - dt.timedelta(seconds=1))
    add_fill(runtime, trader, account, "Sell", 1, "21460", SESSION_START)
    add_fill(runtime, trader, account, "Sell", 3, "21450", NOW - dt.timedelta(hours=1))

    kept, replayed = _both(runtime, NOW)
    yesterday_kept, yesterday_replayed = _both(runtime, SESSION_START - dt.timedelta(minutes=5))

    _assert_same(kept, replayed, [trader])
    _assert_same(yesterday_kept, yesterday_replayed, [trader])
    # Today: 1 contract closed 40 points under 21500, then the last 1 closed 50 under it and 2 sold short.
    assert kept.of(trader).realized == Decimal("-1800")
    assert kept.of(trader).open_positions == {"NQZ6": -2}
    assert kept.session_date == dt.date(2026, 3, 11)


def test_products_with_different_point_values_match_replay(runtime):
    first = add_trading_setup(runtime)
    second = add_trading_setup(runtime, recorder_name="ES", account_name="Paper 2")
    for ids, symbol, prices in [(first, "NQZ6", ("21500", "21512.25")), (second, "ESZ6", ("6100", "6097.75")),
                                (first, "ESZ6", ("6101.25", "6104")), (second, "XXZ6", ("10", "11"))]:
        add_fill(runtime, ids["trader"], ids["account"], "Buy", 2, prices[0], NOW - dt.timedelta(hours=2), symbol)
        add_fill(runtime, ids["trader"], ids["account"], "Sell", 1, prices[1], NOW - dt.timedelta(hours=1), symbol)

    kept, replayed = _both(runtime, NOW)
    unpriced_kept, unpriced_replayed = _both(runtime, NOW, lambda symbol: None)

    _assert_same(kept, replayed, [first["trader"], second["trader"]])
    _assert_same(unpriced_kept, unpriced_replayed, [first["trader"], second["trader"]])
    # NQ: 12.25 points at 20 USD plus ES: 2.75 points at 50 USD; then ES: 2.25 points lost at 50 USD.
    assert kept.of(first["trader"]).realized == Decimal("382.5")
    assert kept.of(second["trader"]).realized == Decimal("-112.5")  # XXZ6 is unknown: left out, listed
    assert kept.of(second["trader"]).unpriced_symbols == {"XXZ6"}


def test_out_of_order_fill_rebuilds_trader(runtime):
    ids = add_trading_setup(runtime)
    trader, account = ids["trader"], ids["account"]
    add_fill(runtime, trader, account, "Buy", 1, "21500", NOW - dt.timedelta(hours=3))
    add_fill(runtime, trader, account, "Sell", 1, "21520", NOW - dt.timedelta(hours=1))
    # Filled before the sell but written after it: the sell now closes 1 of 2 contracts at average 21505.
    add_fill(runtime, trader, account, "Buy", 1, "21510", NOW - dt.timedelta(hours=2))

    kept, replayed = _both(runtime, NOW)

    _assert_same(kept, replayed, [trader])
    assert kept.of(trader).realized == Decimal("300")
    assert _stored_rows(runtime) == _rebuilt_rows(runtime)


def test_deleted_and_changed_fills_rebuild_trader(runtime):
    ids = add_trading_setup(runtime)
    trader, account = ids["trader"], ids["account"]
    add_fill(runtime, trader, account, "Buy", 2, "21500", NOW - dt.timedelta(hours=3))
    add_fill(runtime, trader, account, "Sell", 1, "21520", NOW - dt.timedelta(hours=2))
    add_fill(runtime, trader, account, "Sell", 1, "21530", NOW - dt.timedelta(hours=1))

    with transaction(runtime.session_factory) as session:
        fills = session.scalars(select(Fill).order_by(Fill.filled_at)).all()
        session.delete(fills[1])
        fills[2].price = Decimal("21490")

    kept, replayed = _both(runtime, NOW)

    _assert_same(kept, replayed, [trader])
    assert kept.of(trader).realized == Decimal("-200")
    assert kept.of(trader).open_positions == {"NQZ6": 1}
    assert _stored_rows(runtime) == _rebuilt_rows(runtime)


def test_rolled_back_fill_leaves_totals(runtime):
    ids = add_trading_setup(runtime)
    add_fill(runtime, ids["trader"], ids["account"], "Buy", 1, "21500", NOW - dt.timedelta(hours=1))
    before = _stored_rows(runtime)

    try:
        with transaction(runtime.session_factory) as session:
            session.add(Fill(account_id=ids["account"], trader_id=ids["trader"], symbol="NQZ6", side="Sell",
                             quantity=1, price=Decimal("21400"), filled_at=NOW))
            session.flush()
            raise RuntimeError("roll the fill back")
    except RuntimeError:
        pass

    assert _stored_rows(runtime) == before


def _insert_fill(session, trader: int, account: int, side: str, quantity: int, price: str, filled_at,
                 symbol: str = "NQZ6") -> int:
    return counters.insert_fill(session, order_id=None, account_id=account, trader_id=trader, symbol=symbol,
                                side=side, quantity=quantity, price=Decimal(price), filled_at=filled_at)


def test_fills_totalled_at_block_end_match_replay(runtime):
    first = add_trading_setup(runtime)
    second = add_trading_setup(runtime, recorder_name="ESSCALP", account_name="Paper 2")
    add_fill(runtime, first["trader"], first["account"], "Buy", 2, "21500", NOW - dt.timedelta(hours=4))
    add_fill(runtime, second["trader"], second["account"], "Sell", 1, "6100", NOW - dt.timedelta(hours=4), "ESZ6")

    with transaction(runtime.session_factory) as session, counters.fills_totalled_at_end(session):
        _insert_fill(session, first["trader"], first["account"], "Sell", 1, "21520", NOW - dt.timedelta(hours=2))
        _insert_fill(session, first["trader"], first["account"], "Buy", 3, "21490", NOW - dt.timedelta(hours=1))
        _insert_fill(session, second["trader"], second["account"], "Buy", 2, "6090", NOW - dt.timedelta(hours=1),
                     "ESZ6")
        # Older than the second trader's newest stored fill: that trader is rebuilt instead.
        _insert_fill(session, second["trader"], second["account"], "Sell", 1, "6110", NOW - dt.timedelta(hours=5),
                     "ESZ6")
        # Nothing is totalled until the block ends.
        assert counters.pending_fill_count(session) == 4

    kept, replayed = _both(runtime, NOW)

    _assert_same(kept, replayed, [first["trader"], second["trader"]])
    assert kept.of(first["trader"]).open_positions == {"NQZ6": 4}
    assert _stored_rows(runtime) == _rebuilt_rows(runtime)
    with runtime.session_factory() as session:
        assert counters.read(session, [counters.FILLS_COUNTER])[counters.FILLS_COUNTER] == 6


def test_fill_of_rolled_back_savepoint_is_forgotten(runtime):
    ids = add_trading_setup(runtime)
    add_fill(runtime, ids["trader"], ids["account"], "Buy", 1, "21500", NOW - dt.timedelta(hours=3))
    before = _stored_rows(runtime)

    with transaction(runtime.session_factory) as session, counters.fills_totalled_at_end(session):
        mark = counters.pending_fill_count(session)
        try:
            with session.begin_nested():
                _insert_fill(session, ids["trader"], ids["account"], "Sell", 1, "21400", NOW - dt.timedelta(hours=1))
                raise RuntimeError("the placement failed after its fill")
        except RuntimeError:
            counters.forget_fills_after(session, mark)

    assert _stored_rows(runtime) == before
    with runtime.session_factory() as session:
        assert counters.read(session, [counters.FILLS_COUNTER])[counters.FILLS_COUNTER] == 1


def test_unknown_side_rejected_on_write(runtime):
    ids = add_trading_setup(runtime)

    try:
        add_fill(runtime, ids["trader"], ids["account"], "Hold", 1, "21500", NOW)
    except ValueError as error:
        message = str(error)
    else:
        message = ""

    assert "'Hold'" in message
    assert _stored_rows(runtime) == ([], [])


def test_reader_reloads_after_fill(runtime):
    ids = add_trading_setup(runtime)
    reader = DailyPnlReader(PRICES.get)
    add_fill(runtime, ids["trader"], ids["account"], "Buy", 1, "21500", NOW - dt.timedelta(hours=1))
    with runtime.session_factory() as session:
        first = reader.read(session, NOW)
        again = reader.read(session, NOW)

    add_fill(runtime, ids["trader"], ids["account"], "Sell", 1, "21490", NOW - dt.timedelta(minutes=30))
    with runtime.session_factory() as session:
        after_fill = reader.read(session, NOW)
        next_session = reader.read(session, NOW + dt.timedelta(days=1))

    assert again is first
    assert first.of(ids["trader"]).open_pnl == Decimal("205")
    assert after_fill.of(ids["trader"]).realized == Decimal("-200")
    assert after_fill.of(ids["trader"]).open_positions == {}
    assert next_session.session_date == dt.date(2026, 3, 12)
    assert next_session.total == 0


def test_reader_follows_price_change(runtime):
    ids = add_trading_setup(runtime)
    prices = {"NQZ6": Decimal("21510")}
    reader = DailyPnlReader(prices.get)
    add_fill(runtime, ids["trader"], ids["account"], "Sell", 2, "21500", NOW - dt.timedelta(hours=1))

    with runtime.session_factory() as session:
        before = reader.read(session, NOW).of(ids["trader"]).open_pnl
        prices["NQZ6"] = Decimal("21490")
        after = reader.read(session, NOW).of(ids["trader"]).open_pnl

    assert before == Decimal("-400")
    assert after == Decimal("400")


def test_fill_changes_counter_moves(runtime):
    ids = add_trading_setup(runtime)

    add_fill(runtime, ids["trader"], ids["account"], "Buy", 1, "21500", NOW)
    add_fill(runtime, ids["trader"], ids["account"], "Sell", 1, "21500", NOW)
    with runtime.session_factory() as session:
        changes = counters.read(session, [pnl_totals.FILL_CHANGES_COUNTER])[pnl_totals.FILL_CHANGES_COUNTER]

    assert changes == 2


def test_migration_builds_totals_from_fills(db_url, app_factory):
    runtime = app_factory(db_url).extensions["justtrades"]
    first = add_trading_setup(runtime)
    second = add_trading_setup(runtime, recorder_name="ES", account_name="Paper 2")
    add_fill(runtime, first["trader"], first["account"], "Buy", 3, "21500", SESSION_START - dt.timedelta(hours=1))
    add_fill(runtime, first["trader"], first["account"], "Sell", 1, "21501.5", NOW - dt.timedelta(hours=2))
    add_fill(runtime, second["trader"], second["account"], "Sell", 2, "6100", NOW - dt.timedelta(hours=1),
             symbol="ESZ6")
    kept = _stored_rows(runtime)

    engine = create_database_engine(db_url)
    downgrade(engine, "0003")
    upgrade(engine)
    engine.dispose()

    assert kept[0]
    assert _stored_rows(runtime) == kept
