"""Paper orders placed together: the same book as one at a time, in a fixed number of statements."""

from __future__ import annotations

import logging
from decimal import Decimal

import pytest
from sqlalchemy import event, func, select

from justtrades.db.engine import transaction
from justtrades.db.models import Account, ExecutionJob, Fill, PaperTrade, Position, Recorder, TraderPosition
from justtrades.execution.executor import Executor
from justtrades.seed import apply_seed

from ..conftest import build_app
from ..execution.test_execution import REFERENCE_TIME, send, wait_for_jobs

TOGETHER = "book-together-61c0e2a9d4f7b358"
ALONE = "book-alone-0a8e5d3c7b2f4961"

# Scale in, close, open short, flip long, then scale out: every branch of the position and trade arithmetic.
ALERTS = [
    '{"action":"buy","ticker":"NQ1!","price":21500.00,"quantity":1}',
    '{"action":"buy","ticker":"NQ1!","price":21510.00,"quantity":2}',
    '{"action":"sell","ticker":"NQ1!","price":21520.00,"quantity":3}',
    '{"action":"sell","ticker":"NQ1!","price":21530.00,"quantity":1}',
    '{"action":"buy","ticker":"NQ1!","price":21500.00,"quantity":3}',
    '{"action":"sell","ticker":"NQ1!","price":21490.25,"quantity":1}',
]


def _seed() -> dict:
    """Two recorders, each with one trader on a paper account of its own."""
    return {
        "accounts": [{"name": "Book Together", "broker": "paper"}, {"name": "Book Alone", "broker": "paper"}],
        "recorders": [{"name": "BOOKTOGETHER", "webhook_token": TOGETHER}, {"name": "BOOKALONE", "webhook_token": ALONE}],
        "traders": [{"recorder": "BOOKTOGETHER", "account": "Book Together"},
                    {"recorder": "BOOKALONE", "account": "Book Alone"}],
    }


@pytest.fixture
def app(database_url):
    # The workers stay stopped: each test runs the executor itself, so it decides which jobs share a claim.
    app = build_app(database_url, seed=None)
    runtime = app.extensions["justtrades"]
    runtime.clock = lambda: REFERENCE_TIME
    with transaction(runtime.session_factory) as session:
        apply_seed(session, _seed())
    return app


def _executor(runtime) -> Executor:
    return Executor(runtime.session_factory, runtime.jobs, runtime.brokers, runtime.execution_stats, max_attempts=3)


def _job_ids(runtime, recorder: str) -> list[int]:
    with runtime.session_factory() as session:
        return session.scalars(
            select(ExecutionJob.id).join(Recorder, Recorder.id == ExecutionJob.recorder_id)
            .where(Recorder.name == recorder).order_by(ExecutionJob.id)
        ).all()


def _book(runtime, account_name: str) -> dict:
    """The account's position, its paper trades and its trader's running position, without ids or times."""
    with runtime.session_factory() as session:
        account_id = session.scalar(select(Account.id).where(Account.name == account_name))
        position = session.scalars(select(Position).where(Position.account_id == account_id)).one()
        trades = session.scalars(select(PaperTrade).where(PaperTrade.account_id == account_id)
                                 .order_by(PaperTrade.id)).all()
        fills = session.scalars(select(Fill).where(Fill.account_id == account_id)).all()
        running = session.scalars(select(TraderPosition).where(TraderPosition.trader_id == fills[0].trader_id)).one()
        return {
            "position": (position.symbol, position.net_pos, position.avg_price, position.realized_pnl),
            "trades": [(trade.side, trade.quantity, trade.entry_price, trade.exit_price, trade.pnl,
                        trade.closed_at is None) for trade in trades],
            "fills": sorted((fill.side, fill.quantity, fill.price) for fill in fills),
            "running": (running.net, running.avg_price),
        }


@pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
def test_batch_fill_matches_single_fills(app):
    runtime = app.extensions["justtrades"]
    for alert in ALERTS:
        send(app, TOGETHER, alert)
        send(app, ALONE, alert)
    executor = _executor(runtime)

    executor.execute_batch(_job_ids(runtime, "BOOKTOGETHER"))
    for job_id in _job_ids(runtime, "BOOKALONE"):
        executor.execute(job_id)

    jobs = wait_for_jobs(app, timeout=5)
    assert [job.status for job in jobs] == ["done"] * 2 * len(ALERTS)
    together = _book(runtime, "Book Together")
    assert together == _book(runtime, "Book Alone")
    # Long 1 at 21500 at the end. Realized, in NQ points of $20: 13.33 x 3 on the close, 30 on the flip, -9.75.
    # The average of the scale-in, 21506.67, has no end, so the realized PnL is 1205 to the cent only.
    assert together["position"][:3] == ("NQZ6", 1, Decimal("21500.00"))
    assert round(together["position"][3], 2) == Decimal("1205.00")
    assert [trade[-1] for trade in together["trades"]] == [False, False, True]


def _statements_to_claim(app, token: str, recorder: str, alerts: list[str]) -> int:
    runtime = app.extensions["justtrades"]
    for alert in alerts:
        send(app, token, alert)
    statements = []

    def count(conn, cursor, statement, parameters, context, executemany):
        statements.append(statement)

    event.listen(runtime.engine, "before_cursor_execute", count)
    try:
        _executor(runtime).execute_batch(_job_ids(runtime, recorder))
    finally:
        event.remove(runtime.engine, "before_cursor_execute", count)
    return len(statements)


# PostgreSQL only: there each statement is a round trip to the server. The SQLite driver inserts rows that return
# their ids one statement each, in this process.
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_batch_claim_statement_count_fixed(app):
    runtime = app.extensions["justtrades"]
    # Each price differs, since the platform drops an alert that repeats the one before it.
    buys = [f'{{"action":"buy","ticker":"NQ1!","price":{21500 + index},"quantity":1}}' for index in range(5)]

    one_order = _statements_to_claim(app, TOGETHER, "BOOKTOGETHER", buys[:1])
    five_orders = _statements_to_claim(app, ALONE, "BOOKALONE", buys)

    with runtime.session_factory() as session:
        assert session.scalar(select(func.count()).select_from(Fill)) == 6
    # Each claim opens a position and a trade: the same statements, one per kind of row, for one order or five.
    assert five_orders == one_order


@pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
def test_order_without_price_fails_alone_in_its_claim(app):
    runtime = app.extensions["justtrades"]
    send(app, TOGETHER, ALERTS[0])
    send(app, TOGETHER, '{"action":"buy","ticker":"NQ1!","quantity":1}')
    send(app, TOGETHER, ALERTS[1])

    _executor(runtime).execute_batch(_job_ids(runtime, "BOOKTOGETHER"))

    jobs = wait_for_jobs(app, timeout=5)
    assert [job.status for job in jobs] == ["done", "failed", "done"]
    assert "no signal price" in jobs[1].last_error
    assert _book(runtime, "Book Together")["position"][:2] == ("NQZ6", 3)


@pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
def test_failed_placement_together_places_each_order_alone(app, caplog):
    runtime = app.extensions["justtrades"]
    for alert in ALERTS[:3]:
        send(app, TOGETHER, alert)
    paper = runtime.brokers["paper"]
    original = paper.place_orders_in
    calls = []

    def fail_together(session, requests):
        # The writes happen, then the error: the savepoint has to take them back.
        calls.append(len(requests))
        outcomes = original(session, requests)
        if len(requests) > 1:
            raise RuntimeError("simulated database error after the writes")
        return outcomes

    paper.place_orders_in = fail_together
    caplog.set_level(logging.WARNING, logger="justtrades.execution.executor")

    _executor(runtime).execute_batch(_job_ids(runtime, "BOOKTOGETHER"))

    jobs = wait_for_jobs(app, timeout=5)
    assert [job.status for job in jobs] == ["done"] * 3
    assert calls == [3, 1, 1, 1]
    book = _book(runtime, "Book Together")
    assert book["position"][:2] == ("NQZ6", 0)
    assert len(book["fills"]) == 3
    assert any("placing them one by one" in record.getMessage() for record in caplog.records)
