"""Daily PnL from fills, the CME session reset, and loss breaches recorded by the max daily loss monitor."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select

from justtrades.accounts.max_loss import breached_trader_ids, has_breach, is_breached
from justtrades.accounts.pnl import PositionState, compute_daily_pnl, contract_point_value, session_bounds
from justtrades.db.engine import transaction
from justtrades.db.models import LossBreach, Trader

from .conftest import API_KEY, add_fill, add_trading_setup

UTC = dt.timezone.utc
# Wednesday 11 March 2026, 11:00 in New York (EDT): the session of that day opened Tuesday 18:00 ET.
NOW = dt.datetime(2026, 3, 11, 15, 0, tzinfo=UTC)
SESSION_START = dt.datetime(2026, 3, 10, 21, 0, tzinfo=UTC)  # Tuesday 17:00 ET, the start of the daily break


def _metric_value(app, name: str) -> float | None:
    exposition = generate_latest(app.extensions["justtrades"].registry).decode()
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            if sample.name == name:
                return sample.value
    return None


# Pure computation


def test_position_state_average_cost():
    state = PositionState()

    assert state.apply(2, Decimal("100")) == 0
    assert state.apply(2, Decimal("110")) == 0
    assert state.avg_price == Decimal("105")
    assert state.apply(-3, Decimal("120")) == Decimal("45")  # 3 contracts closed 15 points above the average
    assert state.net == 1
    assert state.avg_price == Decimal("105")


def test_position_state_flip_resets_average():
    state = PositionState()
    state.apply(-1, Decimal("50"))

    realized = state.apply(3, Decimal("40"))

    assert realized == Decimal("10")  # a short closed 10 points lower
    assert state.net == 2
    assert state.avg_price == Decimal("40")


def test_position_state_flat_clears_average():
    state = PositionState()
    state.apply(1, Decimal("10"))

    state.apply(-1, Decimal("9"))

    assert state.net == 0
    assert state.avg_price is None


@pytest.mark.parametrize(
    "symbol, value",
    [("NQZ6", Decimal(20)), ("MNQH6", Decimal(2)), ("ESU26", Decimal(50)), ("M2KZ6", Decimal(5)), ("GCZ6", Decimal(100)),
     ("CLF7", Decimal(1000)), ("XXZ6", None)],
)
def test_contract_point_value(symbol, value):
    assert contract_point_value(symbol) == value


def test_session_bounds_reset_at_daily_break():
    # 16:59 ET belongs to Wednesday's session, 17:00 ET already to Thursday's.
    before = dt.datetime(2026, 3, 11, 20, 59, tzinfo=UTC)
    after = dt.datetime(2026, 3, 11, 21, 0, tzinfo=UTC)

    assert session_bounds(before) == (dt.date(2026, 3, 11), SESSION_START)
    assert session_bounds(after) == (dt.date(2026, 3, 12), after)


def test_session_bounds_weekend_belongs_to_monday():
    saturday = dt.datetime(2026, 3, 14, 15, 0, tzinfo=UTC)

    trading_day, start = session_bounds(saturday)

    assert trading_day == dt.date(2026, 3, 16)
    assert start == dt.datetime(2026, 3, 13, 21, 0, tzinfo=UTC)  # Friday 17:00 ET


@pytest.mark.parametrize(
    "pnl, limit, breached",
    [("-1000", "1000", True), ("-999.99", "1000", False), ("-1500", "1000", True), ("500", "1000", False),
     ("-5000", None, False), ("-5000", "0", False)],
)
def test_breach_threshold(pnl, limit, breached):
    assert is_breached(Decimal(pnl), Decimal(limit) if limit else None) is breached


# Against the database


def test_realized_pnl_from_session_fills(runtime):
    ids = add_trading_setup(runtime)
    add_fill(runtime, ids["trader"], ids["account"], "Buy", 2, "21500", NOW - dt.timedelta(hours=2))
    add_fill(runtime, ids["trader"], ids["account"], "Sell", 2, "21475.25", NOW - dt.timedelta(hours=1))

    with runtime.session_factory() as session:
        pnl = compute_daily_pnl(session, NOW, lambda symbol: None)

    # 24.75 points lost on 2 NQ contracts at 20 USD a point.
    assert pnl.of(ids["trader"]).realized == Decimal("-990")
    assert pnl.of(ids["trader"]).open_positions == {}
    assert pnl.total == Decimal("-990")


def test_fills_before_session_start_do_not_count(runtime):
    ids = add_trading_setup(runtime)
    yesterday = SESSION_START - dt.timedelta(minutes=1)
    add_fill(runtime, ids["trader"], ids["account"], "Buy", 1, "21500", yesterday - dt.timedelta(hours=1))
    add_fill(runtime, ids["trader"], ids["account"], "Sell", 1, "21000", yesterday)

    with runtime.session_factory() as session:
        pnl = compute_daily_pnl(session, NOW, lambda symbol: None)

    assert pnl.of(ids["trader"]).total == 0


def test_carried_position_closed_today(runtime):
    ids = add_trading_setup(runtime)
    add_fill(runtime, ids["trader"], ids["account"], "Buy", 1, "21500", SESSION_START - dt.timedelta(hours=3))
    add_fill(runtime, ids["trader"], ids["account"], "Sell", 1, "21450", NOW - dt.timedelta(hours=1))

    with runtime.session_factory() as session:
        pnl = compute_daily_pnl(session, NOW, lambda symbol: None)

    # Measured from the entry price, as no settlement price is stored.
    assert pnl.of(ids["trader"]).realized == Decimal("-1000")


def test_open_position_valued_at_last_price(runtime):
    ids = add_trading_setup(runtime)
    add_fill(runtime, ids["trader"], ids["account"], "Sell", 3, "6100", NOW - dt.timedelta(hours=1), symbol="ESZ6")
    prices = {"ESZ6": Decimal("6110.50")}

    with runtime.session_factory() as session:
        priced = compute_daily_pnl(session, NOW, prices.get)
        unpriced = compute_daily_pnl(session, NOW, lambda symbol: None)

    # Short 3 ES, 10.5 points against it, 50 USD a point.
    assert priced.of(ids["trader"]).open_pnl == Decimal("-1575")
    assert priced.of(ids["trader"]).open_positions == {"ESZ6": -3}
    assert unpriced.of(ids["trader"]).open_pnl == 0
    assert unpriced.of(ids["trader"]).unpriced_symbols == {"ESZ6"}


def test_fills_driving_past_limit_breach(app, runtime):
    ids = add_trading_setup(runtime, max_daily_loss=Decimal("1000"))
    monitor = runtime.accounts.max_loss
    add_fill(runtime, ids["trader"], ids["account"], "Buy", 2, "21500", NOW - dt.timedelta(hours=2))
    add_fill(runtime, ids["trader"], ids["account"], "Sell", 1, "21480", NOW - dt.timedelta(hours=1, minutes=30))

    assert monitor.check(NOW) == []  # 400 USD lost: within the limit

    add_fill(runtime, ids["trader"], ids["account"], "Sell", 1, "21470", NOW - dt.timedelta(hours=1))
    assert monitor.check(NOW) == [ids["trader"]]  # 400 + 600 = 1000 USD: the limit is reached
    assert monitor.check(NOW) == []  # recorded once per session

    with runtime.session_factory() as session:
        breaches = session.scalars(select(LossBreach)).all()
        assert has_breach(session, ids["trader"], NOW)
        assert breached_trader_ids(session, NOW) == {ids["trader"]}
        assert not has_breach(session, ids["trader"], NOW + dt.timedelta(days=1))
    assert len(breaches) == 1
    assert breaches[0].session_date == dt.date(2026, 3, 11)
    assert breaches[0].daily_pnl == Decimal("-1000")
    assert breaches[0].max_daily_loss == Decimal("1000")


def test_breached_trader_in_status_endpoint(app, runtime):
    ids = add_trading_setup(runtime, max_daily_loss=Decimal("500"))
    add_trading_setup(runtime, max_daily_loss=Decimal("500"), recorder_name="OTHER", account_name="Paper 2")
    now = dt.datetime.now(UTC)
    add_fill(runtime, ids["trader"], ids["account"], "Buy", 1, "2945.3", now - dt.timedelta(seconds=2), symbol="GCZ6")
    add_fill(runtime, ids["trader"], ids["account"], "Sell", 1, "2939.1", now - dt.timedelta(seconds=1), symbol="GCZ6")
    runtime.accounts.max_loss.check(now)

    body = app.test_client().get("/api/admin/max-loss-monitor/status", headers={"X-API-Key": API_KEY}).get_json()

    assert body["monitored_traders"] == 2
    assert body["daily_loss_breach_count"] == 1
    detail = body["breach_details"][0]
    assert detail["trader_id"] == ids["trader"]
    assert detail["recorder_name"] == "JADNQ"
    assert detail["max_daily_loss"] == 500.0
    assert detail["current_daily_loss"] == -620.0  # 6.2 points of gold at 100 USD a point
    assert detail["status"] == "breached"
    assert detail["entries_blocked"] is True
    assert _metric_value(app, "justtrades_max_loss_monitored_traders") == 2
    assert _metric_value(app, "justtrades_max_loss_breached_traders") == 1
    assert _metric_value(app, "justtrades_daily_pnl_usd") == -620.0


def test_unrecorded_breach_shows_entries_open(app, runtime):
    ids = add_trading_setup(runtime, max_daily_loss=Decimal("100"))
    now = dt.datetime.now(UTC)
    add_fill(runtime, ids["trader"], ids["account"], "Buy", 1, "21500", now - dt.timedelta(seconds=2))
    add_fill(runtime, ids["trader"], ids["account"], "Sell", 1, "21490", now - dt.timedelta(seconds=1))

    body = runtime.accounts.max_loss.snapshot(now)

    assert body["daily_loss_breach_count"] == 1
    assert body["breach_details"][0]["entries_blocked"] is False


def test_traders_without_limit_not_monitored(runtime):
    add_trading_setup(runtime, max_daily_loss=None)
    add_trading_setup(runtime, max_daily_loss=Decimal("0"), recorder_name="ZERO", account_name="Paper 2")

    body = runtime.accounts.max_loss.snapshot(NOW)

    assert body["monitored_traders"] == 0
    assert body["breach_details"] == []


def test_breach_ends_with_session(runtime):
    ids = add_trading_setup(runtime, max_daily_loss=Decimal("100"))
    add_fill(runtime, ids["trader"], ids["account"], "Buy", 1, "21500", NOW - dt.timedelta(hours=1))
    add_fill(runtime, ids["trader"], ids["account"], "Sell", 1, "21400", NOW - dt.timedelta(minutes=30))
    runtime.accounts.max_loss.check(NOW)

    next_session = dt.datetime(2026, 3, 12, 15, 0, tzinfo=UTC)
    body = runtime.accounts.max_loss.snapshot(next_session)

    assert body["daily_loss_breach_count"] == 0
    assert body["session_date"] == "2026-03-12"


def test_breach_kept_after_limit_removed(runtime):
    ids = add_trading_setup(runtime, max_daily_loss=Decimal("100"))
    add_fill(runtime, ids["trader"], ids["account"], "Buy", 1, "21500", NOW - dt.timedelta(hours=1))
    add_fill(runtime, ids["trader"], ids["account"], "Sell", 1, "21400", NOW - dt.timedelta(minutes=30))
    runtime.accounts.max_loss.check(NOW)
    with transaction(runtime.session_factory) as session:
        session.get(Trader, ids["trader"]).max_daily_loss = None

    body = runtime.accounts.max_loss.snapshot(NOW)

    assert body["monitored_traders"] == 0
    assert body["daily_loss_breach_count"] == 1
    assert body["breach_details"][0]["max_daily_loss"] == 100.0


def test_concurrent_checks_record_one_breach(db_url, app_factory):
    """Two replicas checking the same trader race on the unique key; one row results."""
    first = app_factory(db_url).extensions["justtrades"]
    second = app_factory(db_url).extensions["justtrades"]
    ids = add_trading_setup(first, max_daily_loss=Decimal("100"))
    add_fill(first, ids["trader"], ids["account"], "Buy", 1, "21500", NOW - dt.timedelta(hours=1))
    add_fill(first, ids["trader"], ids["account"], "Sell", 1, "21400", NOW - dt.timedelta(minutes=30))

    recorded = first.accounts.max_loss.check(NOW) + second.accounts.max_loss.check(NOW)

    assert recorded == [ids["trader"]]
    with first.session_factory() as session:
        assert session.scalar(select(func.count(LossBreach.id))) == 1


def test_monitor_daemon_records_breach(db_url, app_factory):
    from justtrades.accounts.settings import AccountsSettings

    app = app_factory(db_url, AccountsSettings(max_loss_check_interval_seconds=0.1), start_background=True)
    runtime = app.extensions["justtrades"]
    ids = add_trading_setup(runtime, max_daily_loss=Decimal("100"))
    now = dt.datetime.now(UTC)
    add_fill(runtime, ids["trader"], ids["account"], "Buy", 1, "21500", now - dt.timedelta(seconds=2))
    add_fill(runtime, ids["trader"], ids["account"], "Sell", 1, "21400", now - dt.timedelta(seconds=1))

    deadline = dt.datetime.now(UTC) + dt.timedelta(seconds=10)
    breached = False
    while not breached and dt.datetime.now(UTC) < deadline:
        with runtime.session_factory() as session:
            breached = has_breach(session, ids["trader"], now)
        runtime.shutdown_event.wait(0.1)

    assert breached
    assert "max-loss-monitor" in runtime.threads.snapshot()["threads"]
