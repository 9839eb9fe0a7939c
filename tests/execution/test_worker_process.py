"""The paper worker process: paper jobs run in a child process that the platform starts, feeds and replaces."""

from __future__ import annotations

import datetime as dt
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import func, select, update

from justtrades.config import ConfigError, Settings
from justtrades.db.engine import transaction
from justtrades.brokers.paper import PaperBroker
from justtrades.db.models import Account, ExecutionFailure, ExecutionJob, Fill, Order
from justtrades.execution.executor import Executor
from justtrades.execution.jobs import BrokerScope, JobStore, _claimant_alive, new_instance_id
from justtrades.execution import process as process_module
from justtrades.execution.process import PROCESS_SCOPE, JobRouter
from justtrades.execution.process_main import ForwardedStats
from justtrades.feeds.tradingview import Quote
from justtrades.seed import apply_seed

from ..conftest import TEST_API_KEY, PlatformServer, build_app
from .test_execution import NQ_TOKEN, REFERENCE_TIME, send, wait_for_jobs

STEP_TIMEOUT = 30.0


def wait_until(condition, description: str, timeout: float = STEP_TIMEOUT):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {description}")


@pytest.fixture
def process_app(database_url):
    app = build_app(database_url, start_background=True, broker_process=True)
    runtime = app.extensions["justtrades"]
    runtime.clock = lambda: REFERENCE_TIME
    wait_until(lambda: runtime.workers.workers_alive() == runtime.workers.size, "the paper worker process to report")
    yield app
    runtime.stop()


def _status(app) -> dict:
    client = app.test_client()
    return client.get("/api/broker-execution/status", headers={"X-API-Key": TEST_API_KEY}).get_json()


def _count(app, model) -> int:
    with app.extensions["justtrades"].session_factory() as session:
        return session.scalar(select(func.count()).select_from(model))


@pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
def test_child_runs_each_paper_job_once(process_app):
    runtime = process_app.extensions["justtrades"]
    child_pid = runtime.workers.process.pid

    for price in ("21500.25", "21501.00", "21502.75"):
        send(process_app, NQ_TOKEN, f'{{"action":"buy","ticker":"NQ1!","price":{price}}}')
    jobs = wait_for_jobs(process_app)

    assert [job.status for job in jobs] == ["done"] * len(jobs)
    assert {int(job.claimed_by.split(":")[1]) for job in jobs} == {child_pid}
    assert _count(process_app, Order) == len(jobs)
    # The child's outcomes reach this process's ExecutionStats, which the JSON endpoint and /metrics read.
    status = wait_until(lambda: (doc := _status(process_app))["broker_execution"]["total_processed"] == len(jobs)
                        and doc, "the child's report of its executions")
    assert status["broker_execution"]["workers_alive"] == status["broker_execution"]["workers_configured"] == 10
    metrics = process_app.test_client().get("/metrics").get_data(as_text=True)
    assert f"justtrades_broker_execution_duration_seconds_count {float(len(jobs))}" in metrics


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_killed_child_is_replaced_and_jobs_finish(process_app):
    runtime = process_app.extensions["justtrades"]
    process = runtime.workers.process
    first_pid = process.pid

    os.kill(first_pid, signal.SIGKILL)
    wait_until(lambda: runtime.workers.workers_alive() == 0, "the dead child's workers to count as dead")
    for price in ("21500.25", "21501.00"):
        send(process_app, NQ_TOKEN, f'{{"action":"buy","ticker":"NQ1!","price":{price}}}')
    jobs = wait_for_jobs(process_app)

    assert process.pid not in (None, first_pid)
    assert [job.status for job in jobs] == ["done"] * len(jobs)
    assert _count(process_app, Order) == len(jobs)
    assert process.process_restarts == 1
    # A dead process counts as one restart, as a dead worker thread does, so one kill does not page.
    assert _status(process_app)["broker_execution"]["worker_restarts"] == 1
    wait_until(lambda: runtime.workers.workers_alive() == 10, "the new child's workers")
    detailed = process_app.test_client().get("/health/detailed", headers={"X-API-Key": TEST_API_KEY}).get_json()
    worker_process = detailed["workers"]["paper_worker_process"]
    assert (worker_process["pid"], worker_process["workers_alive"], worker_process["restarts"]) == (process.pid, 10, 1)
    assert worker_process["rss_bytes"] > 10 * 2**20


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_child_fills_market_order_at_feed_price(process_app):
    runtime = process_app.extensions["justtrades"]
    runtime.price_feed = _StaticFeed({"NQ": Quote(Decimal("21444.75"), REFERENCE_TIME)})

    send(process_app, NQ_TOKEN, '{"action":"buy","ticker":"NQ1!"}')
    jobs = wait_for_jobs(process_app)

    assert [job.status for job in jobs] == ["done"] * len(jobs)
    with runtime.session_factory() as session:
        assert set(session.scalars(select(Fill.price))) == {Decimal("21444.75")}


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_child_exits_cleanly_on_platform_stop(database_url):
    app = build_app(database_url, start_background=True, broker_process=True)
    runtime = app.extensions["justtrades"]
    wait_until(lambda: runtime.workers.workers_alive() == 10, "the paper worker process to report")
    child = runtime.workers.process._child

    runtime.stop()

    assert child.poll() == 0


def test_child_dies_with_killed_platform(tmp_path, postgres_database):
    server = PlatformServer(tmp_path, {"DATABASE_URL": postgres_database, "JT_BROKER_PROCESS": "auto"}).start()
    try:
        process = wait_until(lambda: server.get("/health/detailed").json()["workers"]["paper_worker_process"],
                             "the paper worker process")
        child_pid = wait_until(lambda: server.get("/health/detailed").json()["workers"]["paper_worker_process"]["pid"],
                               "the child's pid")
        assert process["workers_alive"] in (0, 10)

        server.process.kill()
        server.process.wait(10)

        wait_until(lambda: not _claimant_alive(f"{socket.gethostname()}:{child_pid}:x"), "the child to die", 10)
    finally:
        server.stop()


def test_zombie_claimant_counts_as_dead():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        wait_until(lambda: Path(f"/proc/{child.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z",
                   "the child to exit", 10)
        assert _claimant_alive(f"{socket.gethostname()}:{child.pid}:0badc0de") is False
    finally:
        child.wait(10)


def test_router_keeps_remote_jobs_in_threads():
    threads, process = _Pool(size=10, alive=10, restarts=1), _Pool(size=10, alive=7, restarts=10)
    router = JobRouter(threads, process)

    router.submit(1, 10, "NQZ6", "paper")
    router.submit(2, 11, "NQZ6", "tradovate")
    router.submit(3, 12, "NQZ6", None)

    assert [job[0] for job in process.jobs] == [1]
    assert [job[0] for job in threads.jobs] == [2, 3]
    assert (router.size, router.workers_alive(), router.restarts) == (10, 7, 11)


@pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
def test_table_poll_keeps_to_pool_scope(database_url):
    app = build_app(database_url, seed=None)
    runtime = app.extensions["justtrades"]
    with transaction(runtime.session_factory) as session:
        apply_seed(session, {
            "accounts": [{"name": "Paper", "broker": "paper"}, {"name": "Remote", "broker": "tradovate",
                                                               "environment": "demo"}],
            "recorders": [{"name": "SCOPENQ", "webhook_token": "scope-recorder-0123456789abcdef"}],
            "traders": [{"recorder": "SCOPENQ", "account": "Paper"}, {"recorder": "SCOPENQ", "account": "Remote"}],
        })
    runtime.clock = lambda: REFERENCE_TIME
    send(app, "scope-recorder-0123456789abcdef", '{"action":"buy","ticker":"NQ1!","price":21500.25}')
    later = REFERENCE_TIME + dt.timedelta(minutes=1)

    in_process = runtime.jobs.due_jobs(10, later, scope=PROCESS_SCOPE)
    in_threads = runtime.jobs.due_jobs(10, later, scope=BrokerScope(PROCESS_SCOPE.brokers, others=True))

    assert [row[3] for row in in_process] == ["paper"]
    assert [row[3] for row in in_threads] == ["tradovate"]
    assert len(runtime.jobs.due_jobs(10, later)) == 2
    runtime.stop()


@pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
def test_moved_account_job_returns_to_table(database_url):
    app = build_app(database_url, seed=None)
    runtime = app.extensions["justtrades"]
    with transaction(runtime.session_factory) as session:
        apply_seed(session, {
            "accounts": [{"name": "Moving", "broker": "paper"}],
            "recorders": [{"name": "MOVENQ", "webhook_token": "moving-recorder-0123456789abcdef"}],
            "traders": [{"recorder": "MOVENQ", "account": "Moving"}],
        })
    runtime.clock = lambda: REFERENCE_TIME
    send(app, "moving-recorder-0123456789abcdef", '{"action":"buy","ticker":"NQ1!","price":21500.25}')
    (job_id, *_), = runtime.jobs.due_jobs(10, scope=PROCESS_SCOPE)
    # The job went to the paper worker process; before it runs, the account moves to Tradovate.
    with transaction(runtime.session_factory) as session:
        session.execute(update(Account).where(Account.name == "Moving").values(broker="tradovate", environment="demo"))
    child_store = JobStore(runtime.session_factory, new_instance_id(), 60.0)
    child = Executor(runtime.session_factory, child_store, {"paper": PaperBroker(runtime.session_factory)},
                     ForwardedStats(), 5, hands_back_other_brokers=True)

    child.execute_batch([job_id])

    with runtime.session_factory() as session:
        job = session.get(ExecutionJob, job_id)
        orders = session.scalar(select(func.count()).select_from(Order))
        failures = session.scalar(select(func.count()).select_from(ExecutionFailure))
    assert (job.status, orders, failures) == ("queued", 0, 0)
    assert "moved to broker 'tradovate'" in job.last_error
    in_threads = runtime.jobs.due_jobs(10, scope=BrokerScope(PROCESS_SCOPE.brokers, others=True))
    assert [(row[0], row[3]) for row in in_threads] == [(job_id, "tradovate")]
    runtime.stop()


@pytest.mark.parametrize(("value", "database_url", "expected"), [
    (None, "postgresql://postgres@127.0.0.1:5432/test", True),
    ("auto", "sqlite:///instance/justtrades.sqlite3", False),
    ("true", "sqlite:///instance/justtrades.sqlite3", True),
    ("false", "postgresql://postgres@127.0.0.1:5432/test", False),
])
def test_process_default_follows_database(value, database_url, expected):
    environ = {"DATABASE_URL": database_url, **({"JT_BROKER_PROCESS": value} if value else {})}

    assert Settings.from_environ(environ).broker_process is expected


def test_process_setting_rejects_unknown_value():
    with pytest.raises(ConfigError, match=r"JT_BROKER_PROCESS='sometimes' is not true, false or auto"):
        Settings.from_environ({"JT_BROKER_PROCESS": "sometimes"})


class _StaticFeed:
    def __init__(self, prices: dict):
        self._prices = prices

    def price_snapshot(self) -> dict:
        return dict(self._prices)


class _Pool:
    def __init__(self, size: int, alive: int, restarts: int):
        self.size, self._alive, self.restarts = size, alive, restarts
        self.jobs = []

    def submit(self, job_id, account_id, symbol, broker=None):
        self.jobs.append((job_id, account_id, symbol, broker))

    def workers_alive(self) -> int:
        return self._alive


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_silent_child_is_killed_and_replaced(database_url, monkeypatch):
    monkeypatch.setattr(process_module, "SILENT_CHILD_SECONDS", 2.0)
    app = build_app(database_url, start_background=True, broker_process=True)
    runtime = app.extensions["justtrades"]
    runtime.clock = lambda: REFERENCE_TIME
    process = runtime.workers.process
    try:
        wait_until(lambda: runtime.workers.workers_alive() == 10, "the paper worker process to report")
        hung_pid = process.pid

        # A stopped process sends no report, as a deadlocked one would not.
        os.kill(hung_pid, signal.SIGSTOP)
        wait_until(lambda: process.pid not in (None, hung_pid), "a new child in place of the hung one")
        send(app, NQ_TOKEN, '{"action":"buy","ticker":"NQ1!","price":21500.25}')
        jobs = wait_for_jobs(app)

        assert process.process_restarts == 1
        assert not _claimant_alive(f"{socket.gethostname()}:{hung_pid}:x")
        assert [job.status for job in jobs] == ["done"] * len(jobs)
    finally:
        runtime.stop()


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_stop_during_restart_wait_is_clean(database_url, monkeypatch):
    errors = []
    monkeypatch.setattr(threading, "excepthook", errors.append)
    app = build_app(database_url, start_background=True, broker_process=True)
    runtime = app.extensions["justtrades"]
    process = runtime.workers.process
    wait_until(lambda: runtime.workers.workers_alive() == 10, "the paper worker process to report")

    os.kill(process.pid, signal.SIGKILL)
    wait_until(lambda: process.process_restarts == 1, "the dead child to be buried")
    runtime.stop()

    assert not process._pump_thread.is_alive()
    assert errors == []
    assert process.process_restarts == 1


def test_claim_interval_setting_rejects_long_wait():
    with pytest.raises(ConfigError, match=r"JT_BROKER_CLAIM_INTERVAL_SECONDS=2 is above 1"):
        Settings.from_environ({"JT_BROKER_CLAIM_INTERVAL_SECONDS": "2"})
