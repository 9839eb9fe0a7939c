"""Batches of paper jobs: several claims, fills and job ends in one transaction, and each order still placed once."""

from __future__ import annotations

import logging
import threading
import time

import pytest
from sqlalchemy import event, func, insert, select

from justtrades.db.engine import transaction
from justtrades.db.models import ExecutionJob, Fill, Order
from justtrades.execution import orders
from justtrades.execution.executor import Executor
from justtrades.execution.workers import Lanes, WorkerPool
from justtrades.seed import apply_seed

from ..conftest import build_app
from .test_execution import REFERENCE_TIME, positions, send, wait_for_jobs

TOKEN = "batch-recorder-5d0c2e8f4a7b1936"
ACCOUNTS = 6


def _seed() -> dict:
    """One recorder whose six traders each have a paper account, so one alert makes six jobs in six lanes."""
    return {
        "accounts": [{"name": f"Batch Paper {index}", "broker": "paper"} for index in range(ACCOUNTS)],
        "recorders": [{"name": "BATCHNQ", "webhook_token": TOKEN}],
        "traders": [{"recorder": "BATCHNQ", "account": f"Batch Paper {index}"} for index in range(ACCOUNTS)],
    }


def _batch_app(database_url: str, batch_size: int):
    # One worker, so the batches it forms do not depend on which thread wins the queue.
    app = build_app(database_url, seed=None, broker_workers=1, broker_batch_size=batch_size)
    runtime = app.extensions["justtrades"]
    runtime.clock = lambda: REFERENCE_TIME
    with transaction(runtime.session_factory) as session:
        apply_seed(session, _seed())
    return app, runtime


def _queue_two_alerts(app) -> None:
    """Queue twelve jobs, two per lane, while the workers are stopped."""
    send(app, TOKEN, '{"action":"buy","ticker":"NQ1!","price":21500.25}')
    send(app, TOKEN, '{"action":"buy","ticker":"NQ1!","price":21501.00}')


def _worker_commits(runtime) -> list:
    commits = []

    def count(connection):
        if threading.current_thread().name.startswith("broker-worker"):
            commits.append(connection)

    event.listen(runtime.engine, "commit", count)
    return commits


def _count(runtime, model) -> int:
    with runtime.session_factory() as session:
        return session.scalar(select(func.count()).select_from(model))


@pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
def test_queued_paper_jobs_fill_in_two_transactions(database_url):
    app, runtime = _batch_app(database_url, batch_size=8)
    _queue_two_alerts(app)
    commits = _worker_commits(runtime)

    runtime.start()
    try:
        jobs = wait_for_jobs(app)
    finally:
        runtime.stop()

    # The first batch takes eight jobs: six lanes, and the two jobs parked behind two of them, which run after
    # them in the same transaction. The last four jobs form the second.
    assert [job.status for job in jobs] == ["done"] * 12
    assert len(commits) == 2
    assert _count(runtime, Order) == 12
    assert _count(runtime, Fill) == 12
    assert sorted(positions(app).values()) == [2] * ACCOUNTS


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_racing_order_row_falls_back_to_single_claims(database_url, monkeypatch, caplog):
    app, runtime = _batch_app(database_url, batch_size=8)
    _queue_two_alerts(app)
    real_order_values = orders._order_values
    raced = []

    def earlier_holder_writes_first(job, side, quantity):
        # An earlier holder of the job, still running after its lease lapsed, writes its order row and commits
        # between the batch's read and its insert. A second connection plays that holder.
        if not raced:
            with runtime.engine.begin() as connection:
                connection.execute(insert(Order).values(
                    job_id=job.id, account_id=job.account_id, trader_id=job.trader_id,
                    client_order_id=job.idempotency_key, symbol=job.symbol, side=side, quantity=quantity,
                ))
            raced.append(job.id)
        return real_order_values(job, side, quantity)

    monkeypatch.setattr(orders, "_order_values", earlier_holder_writes_first)
    caplog.set_level(logging.WARNING, logger="justtrades.execution.executor")

    runtime.start()
    try:
        jobs = wait_for_jobs(app)
    finally:
        runtime.stop()

    with runtime.session_factory() as session:
        orders_per_job = session.execute(select(Order.job_id, func.count()).group_by(Order.job_id)).all()
    assert [job.status for job in jobs] == ["done"] * 12
    assert sorted(count for _, count in orders_per_job) == [1] * 12
    assert _count(runtime, Fill) == 12
    assert sorted(positions(app).values()) == [2] * ACCOUNTS
    assert any("claiming one by one" in record.getMessage() for record in caplog.records)


@pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
def test_batches_waiting_for_claim_share_transaction(database_url):
    app, runtime = _batch_app(database_url, batch_size=8)
    send(app, TOKEN, '{"action":"buy","ticker":"NQ1!","price":21500.25}')
    with runtime.session_factory() as session:
        job_ids = session.scalars(select(ExecutionJob.id).order_by(ExecutionJob.id)).all()
    executor = Executor(runtime.session_factory, runtime.jobs, runtime.brokers, runtime.execution_stats, max_attempts=3)
    commits = _worker_commits(runtime)

    # Another worker's claim has the slot. So the first batch leads the next round, and the two after it wait.
    executor._claim_slots.acquire()
    workers = [threading.Thread(target=executor.execute_batch, args=(job_ids[index:index + 2],),
                                name=f"broker-worker-{index}") for index in (0, 2, 4)]
    workers[0].start()
    deadline = time.monotonic() + 10
    while executor._claim_slots.waiting() < 1 and time.monotonic() < deadline:
        time.sleep(0.001)
    for worker in workers[1:]:
        worker.start()
    while executor._claim_rounds.pending() < 2 and time.monotonic() < deadline:
        time.sleep(0.001)
    executor._claim_slots.release()
    for worker in workers:
        worker.join(10)

    jobs = wait_for_jobs(app)
    assert [job.status for job in jobs] == ["done"] * ACCOUNTS
    assert _count(runtime, Order) == ACCOUNTS
    assert _count(runtime, Fill) == ACCOUNTS
    # One transaction for the first batch, and one for the two that waited while it ran.
    assert len(commits) == 2


class _NoJobsStore:
    instance_id = "test-host:1:abc"

    def release_dead_local_claims(self) -> int:
        return 0

    def due_jobs(self, limit: int, scope=None) -> list:
        return []


def _run_pool(submissions, batch_size: int) -> list[tuple[str, object]]:
    """Submit (job id, lane, broker) items before the one worker starts; return its executor calls in order."""
    calls = []
    done = threading.Event()

    def record(kind, value, count):
        calls.append((kind, value))
        if sum(len(v) if isinstance(v, list) else 1 for _, v in calls) >= len(submissions):
            done.set()

    pool = WorkerPool(
        _NoJobsStore(), lambda job_id: record("single", job_id, 1), size=1, poll_seconds=30, shutdown=threading.Event(),
        execute_batch=lambda job_ids, join: record("batch", job_ids + join(), None), batch_size=batch_size,
        batchable=lambda broker: broker == "paper",
    )
    for job_id, lane, broker in submissions:
        pool.submit(job_id, lane, "NQZ6", broker)

    pool.start()
    try:
        assert done.wait(10), f"the pool ran only {calls}"
        time.sleep(0.05)  # a call beyond the expected ones would show here
    finally:
        pool.stop()
    return calls


def test_batch_ends_at_size_or_remote_job():
    calls = _run_pool([(1, 1, "paper"), (2, 2, "paper"), (3, 3, "paper"), (4, 4, "paper"), (5, 5, "tradovate"),
                       (6, 6, "paper")], batch_size=3)

    assert calls == [("batch", [1, 2, 3]), ("batch", [4, 5]), ("batch", [6])]


def test_remote_broker_job_first_runs_alone():
    calls = _run_pool([(1, 1, "tradovate"), (2, 2, "tradovate"), (3, 3, "paper")], batch_size=8)

    assert calls == [("single", 1), ("single", 2), ("batch", [3])]


def test_job_behind_busy_lane_joins_its_batch():
    # The executor claims a batch's jobs in id order and fills them one after the other, so job 2 runs after job 1.
    calls = _run_pool([(1, 1, "paper"), (2, 1, "paper"), (3, 2, "paper")], batch_size=8)

    assert calls == [("batch", [1, 3, 2])]


def test_parked_jobs_fill_batch_up_to_its_size():
    calls = _run_pool([(1, 1, "paper"), (2, 1, "paper"), (3, 1, "paper"), (4, 2, "paper"), (5, 2, "paper"),
                       (6, 1, "paper")], batch_size=4)

    # The first take is jobs 1 to 4: lanes 1 and 2 run 1 and 4, and 2 and 3 wait behind 1, with room for both.
    assert calls == [("batch", [1, 4, 2, 3]), ("batch", [5, 6])]


def test_jobs_queued_during_claim_wait_join_batch():
    batches = []
    waiting, slot_free = threading.Event(), threading.Event()

    def execute_batch(job_ids, join):
        # The claim slot is busy with another worker's batch until the test frees it.
        waiting.set()
        assert slot_free.wait(10)
        batches.append(job_ids + join())

    pool = WorkerPool(
        _NoJobsStore(), lambda job_id: batches.append(job_id), size=1, poll_seconds=30, shutdown=threading.Event(),
        execute_batch=execute_batch, batch_size=8, batchable=lambda broker: broker == "paper",
    )
    pool.submit(1, 1, "NQZ6", "paper")
    pool.start()
    try:
        assert waiting.wait(10)
        for job_id, lane in ((2, 1), (3, 2), (4, 1), (5, 3)):
            pool.submit(job_id, lane, "NQZ6", "paper")
        slot_free.set()
        deadline = time.monotonic() + 10
        while sum(map(len, batches)) < 5 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        pool.stop()

    # One claim for all five: jobs 2 and 4 wait in lane 1 behind job 1 and run after it in the same transaction.
    assert batches == [[1, 2, 3, 4, 5]]


def test_take_oldest_spans_lanes():
    lanes = Lanes()
    assert lanes.enter("busy", 1)
    assert lanes.enter("quiet", 2)
    for job_id in (10, 11, 12, 13):
        assert not lanes.enter("busy", job_id)
    assert not lanes.enter("quiet", 3)

    # Lane by lane, the busy lane would fill the batch and job 3 would wait for the next one.
    assert lanes.take_oldest(["busy", "quiet"], 3) == [("quiet", 3), ("busy", 10), ("busy", 11)]
    assert lanes.take_oldest(["busy", "quiet"], 8) == [("busy", 12), ("busy", 13)]
    assert lanes.leave("busy") is None
    assert lanes.leave("quiet") is None
