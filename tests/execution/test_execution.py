"""Broker workers against the paper broker: positions, closes, exactly-once orders, supervision."""

from __future__ import annotations

import datetime as dt
import threading
import time
from decimal import Decimal

import pytest
from sqlalchemy import event, func, select

from justtrades.brokers.base import BrokerError, FailureReason
from justtrades.db.models import ExecutionFailure, ExecutionJob, Fill, Order, Position

from ..conftest import TEST_API_KEY, build_app

REFERENCE_TIME = dt.datetime(2026, 12, 3, 15, 30, tzinfo=dt.timezone.utc)
NQ_TOKEN = "demo-nq-7f3a9c2e41b8d605"
ES_TOKEN = "demo-es-2b6d0e9a73c4f158"


def send(app, token: str, body: str):
    response = app.test_client().post(f"/webhook/{token}", data=body, content_type="application/json")
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def wait_for_jobs(app, timeout: float = 45.0) -> list[ExecutionJob]:
    """Wait until no job is queued or running, and return all jobs."""
    session_factory = app.extensions["justtrades"].session_factory
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with session_factory() as session:
            jobs = session.scalars(select(ExecutionJob).order_by(ExecutionJob.id)).all()
        if jobs and all(job.status in ("done", "failed") for job in jobs):
            return jobs
        time.sleep(0.05)
    raise AssertionError(f"jobs did not finish in {timeout}s: {[(job.id, job.status) for job in jobs]}")


def positions(app) -> dict[tuple[int, str], int]:
    with app.extensions["justtrades"].session_factory() as session:
        return {(row.account_id, row.symbol): row.net_pos for row in session.scalars(select(Position))}


def order_count(app) -> int:
    with app.extensions["justtrades"].session_factory() as session:
        return session.scalar(select(func.count()).select_from(Order))


@pytest.fixture
def frozen(running_app):
    running_app.extensions["justtrades"].clock = lambda: REFERENCE_TIME
    return running_app


def test_buy_fills_each_trader_at_signal_price(frozen):
    send(frozen, NQ_TOKEN, '{"action":"buy","ticker":"NQ1!","price":21500.25}')

    jobs = wait_for_jobs(frozen)
    assert {job.status for job in jobs} == {"done"}
    assert positions(frozen) == {(1, "NQZ6"): 1, (2, "NQZ6"): 2}
    with frozen.extensions["justtrades"].session_factory() as session:
        assert {fill.price for fill in session.scalars(select(Fill))} == {Decimal("21500.25")}


def test_closelong_flattens_long_and_opens_no_short(frozen):
    send(frozen, NQ_TOKEN, '{"action":"buy","ticker":"NQ1!","price":21500}')
    wait_for_jobs(frozen)
    send(frozen, NQ_TOKEN, '{"action":"closelong","ticker":"NQ1!","price":21510}')
    wait_for_jobs(frozen)
    assert positions(frozen) == {(1, "NQZ6"): 0, (2, "NQZ6"): 0}

    orders_before = order_count(frozen)
    send(frozen, NQ_TOKEN, '{"action":"closelong","ticker":"NQ1!","price":21520}')
    wait_for_jobs(frozen)
    assert positions(frozen) == {(1, "NQZ6"): 0, (2, "NQZ6"): 0}
    assert order_count(frozen) == orders_before


def test_closeshort_leaves_long_alone(frozen):
    send(frozen, NQ_TOKEN, '{"action":"buy","ticker":"NQ1!","price":21500}')
    wait_for_jobs(frozen)
    send(frozen, NQ_TOKEN, '{"action":"closeshort","ticker":"NQ1!","price":21510}')
    wait_for_jobs(frozen)

    assert positions(frozen) == {(1, "NQZ6"): 1, (2, "NQZ6"): 2}


@pytest.mark.parametrize("word", ["close", "exit"])
def test_close_and_exit_flatten_a_short(frozen, word):
    send(frozen, ES_TOKEN, '{"action":"sell","ticker":"ES1!","price":6120.5}')
    wait_for_jobs(frozen)
    send(frozen, ES_TOKEN, f'{{"action":"{word}","ticker":"ES1!","price":6110.5}}')
    wait_for_jobs(frozen)

    assert positions(frozen) == {(1, "ESZ6"): 0}
    with frozen.extensions["justtrades"].session_factory() as session:
        position = session.scalars(select(Position)).one()
    assert position.realized_pnl == Decimal("500")  # 10 points short on ES at $50 a point


def test_rerunning_a_finished_job_places_no_second_order(frozen):
    send(frozen, NQ_TOKEN, '{"action":"buy","ticker":"NQ1!","price":21500}')
    jobs = wait_for_jobs(frozen)
    runtime = frozen.extensions["justtrades"]

    # Put a finished job back in the queue as a crash between the order and the status update would.
    with runtime.session_factory() as session, session.begin():
        job = session.get(ExecutionJob, jobs[0].id)
        job.status = "queued"
        job.next_attempt_at = REFERENCE_TIME - dt.timedelta(seconds=1)
    runtime.workers.submit(jobs[0].id, jobs[0].account_id, jobs[0].symbol)
    wait_for_jobs(frozen)

    assert order_count(frozen) == len(jobs)
    assert positions(frozen) == {(1, "NQZ6"): 1, (2, "NQZ6"): 2}


def test_pending_order_found_at_broker_is_not_placed_again(frozen):
    runtime = frozen.extensions["justtrades"]
    paper = runtime.brokers["paper"]
    # As a broker outside our database: the order row commits first, then the broker is called on its own.
    paper.place_orders_in = None
    placed = []
    original = paper.place_order

    def place_then_time_out(request):
        placed.append(request.client_order_id)
        original(request)
        raise BrokerError(FailureReason.TIMEOUT, "no answer in 5s", permanent=False, order_may_exist=True)

    paper.place_order = place_then_time_out
    send(frozen, ES_TOKEN, '{"action":"buy","ticker":"ES1!","price":6120.5}')
    jobs = wait_for_jobs(frozen, timeout=20)

    assert [job.status for job in jobs] == ["done"]
    assert len(placed) == 1
    assert positions(frozen) == {(1, "ESZ6"): 1}
    with runtime.session_factory() as session:
        failure = session.scalars(select(ExecutionFailure)).one()
    assert failure.reason == "timeout"
    assert failure.permanent is False


def test_permanent_failure_is_classified_and_kept(frozen):
    runtime = frozen.extensions["justtrades"]

    def reject(session, requests):
        return [BrokerError(FailureReason.INSUFFICIENT_FUNDS, "margin 0 < 1000", permanent=True) for _ in requests]

    runtime.brokers["paper"].place_orders_in = reject
    send(frozen, ES_TOKEN, '{"action":"buy","ticker":"ES1!","price":6120.5}')
    jobs = wait_for_jobs(frozen)

    assert [job.status for job in jobs] == ["failed"]
    listing = frozen.test_client().get("/api/broker-execution/failures", headers={"X-API-Key": TEST_API_KEY}).get_json()
    assert listing["failures"][0]["error"].startswith("Insufficient funds")
    assert listing["failures"][0]["recorder_name"] == "ESSCALP"
    status = frozen.test_client().get("/api/broker-execution/status", headers={"X-API-Key": TEST_API_KEY}).get_json()
    assert status["broker_execution"]["failures_by_reason"]["insufficient_funds"] == 1
    assert status["broker_execution"]["total_failures"] == 1


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_dead_worker_is_replaced_and_counted(frozen):
    runtime = frozen.extensions["justtrades"]
    original = runtime.brokers["paper"].place_orders_in
    calls = []

    def die_once(session, requests):
        calls.append([request.client_order_id for request in requests])
        if len(calls) == 1:
            raise SystemExit("simulated worker death")
        return original(session, requests)

    runtime.brokers["paper"].place_orders_in = die_once
    send(frozen, ES_TOKEN, '{"action":"buy","ticker":"ES1!","price":6120.5}')

    deadline = time.monotonic() + 30
    while runtime.workers.restarts == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert runtime.workers.restarts == 1
    assert runtime.workers.workers_alive() == runtime.workers.size

    jobs = wait_for_jobs(frozen)
    assert [job.status for job in jobs] == ["done"]
    assert order_count(frozen) == 1
    assert positions(frozen) == {(1, "ESZ6"): 1}



def test_paper_entry_is_one_transaction(frozen):
    runtime = frozen.extensions["justtrades"]
    worker_commits = []

    def count_worker_commit(connection):
        if threading.current_thread().name.startswith("broker-worker"):
            worker_commits.append(connection)

    event.listen(runtime.engine, "commit", count_worker_commit)
    try:
        send(frozen, ES_TOKEN, '{"action":"buy","ticker":"ES1!","price":6120.5}')
        jobs = wait_for_jobs(frozen)
    finally:
        event.remove(runtime.engine, "commit", count_worker_commit)

    assert [job.status for job in jobs] == ["done"]
    assert positions(frozen) == {(1, "ESZ6"): 1}
    assert len(worker_commits) == 1


def test_failed_paper_fill_rolls_back(frozen):
    runtime = frozen.extensions["justtrades"]
    paper = runtime.brokers["paper"]
    original = paper.place_orders_in
    calls = []

    def fill_then_fail_once(session, requests):
        calls.append([request.client_order_id for request in requests])
        outcomes = original(session, requests)
        if len(calls) == 1:
            raise BrokerError(FailureReason.CONNECTION_ERROR, "simulated failure after the fill", permanent=False)
        return outcomes

    paper.place_orders_in = fill_then_fail_once
    send(frozen, ES_TOKEN, '{"action":"buy","ticker":"ES1!","price":6120.5}')
    jobs = wait_for_jobs(frozen)

    # The retry finds the pending order row, so it queries the broker first and then places the order on its own.
    assert [(job.status, job.attempts) for job in jobs] == [("done", 2)]
    assert len(calls) == 1
    assert positions(frozen) == {(1, "ESZ6"): 1}
    with runtime.session_factory() as session:
        assert session.scalar(select(func.count()).select_from(Fill)) == 1
        assert session.scalar(select(func.count()).select_from(Order)) == 1
        assert session.scalars(select(ExecutionFailure.reason)).all() == ["connection_error"]


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
@pytest.mark.parametrize("limit", [1, 2])
def test_claims_run_at_most_limit_at_once(database_url, limit):
    # Without batches, so that each of the two jobs needs a claim slot of its own.
    app = build_app(database_url, start_background=True, broker_claim_concurrency=limit, broker_batch_size=1)
    runtime = app.extensions["justtrades"]
    runtime.clock = lambda: REFERENCE_TIME
    paper = runtime.brokers["paper"]
    original = paper.place_orders_in
    lock = threading.Lock()
    running, peak = [0], [0]

    def slow_fill(session, requests):
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.3)
        with lock:
            running[0] -= 1
        return original(session, requests)

    paper.place_orders_in = slow_fill
    try:
        # The recorder's two traders are on two accounts, so their jobs run in separate lanes.
        send(app, NQ_TOKEN, '{"action":"buy","ticker":"NQ1!","price":21500.25}')
        jobs = wait_for_jobs(app)
    finally:
        runtime.stop()

    assert [job.status for job in jobs] == ["done", "done"]
    assert peak[0] == limit
