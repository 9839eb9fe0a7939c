"""Failed job-table polls during a database outage: one traceback, counted repeats, one recovery line."""

from __future__ import annotations

import logging
import threading
import time

import pytest
from sqlalchemy.exc import OperationalError

from justtrades.execution.failure_log import RepeatedFailureLog
from justtrades.execution.workers import WorkerPool

LOGGER_NAME = "tests.execution.poll_failures"


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def outage_error(number: int = 1) -> OperationalError:
    return OperationalError("SELECT execution_jobs.id", {}, Exception(f"connection refused (attempt {number})"))


@pytest.fixture
def records(caplog):
    caplog.set_level(logging.DEBUG, logger=LOGGER_NAME)
    return lambda: [record for record in caplog.records if record.name == LOGGER_NAME]


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def failure_log(clock):
    return RepeatedFailureLog(logging.getLogger(LOGGER_NAME), "polling the job table", 60.0, clock=clock)


def test_first_failure_logs_traceback(failure_log, records):
    failure_log.failed(outage_error())

    logged = records()
    assert len(logged) == 1
    assert logged[0].levelno == logging.ERROR
    assert logged[0].exc_info is not None
    assert logged[0].exc_info[0] is OperationalError
    assert "polling the job table failed" in logged[0].getMessage()
    assert failure_log.failing


def test_repeats_within_interval_are_silent(failure_log, clock, records):
    failure_log.failed(outage_error(1))
    for number in range(2, 60):
        clock.now += 1.0
        failure_log.failed(outage_error(number))

    assert len(records()) == 1


def test_repeats_after_interval_log_one_summary(failure_log, clock, records):
    failure_log.failed(outage_error(1))
    for number in range(2, 62):
        clock.now += 1.0
        failure_log.failed(outage_error(number))

    logged = records()
    assert len(logged) == 2
    summary = logged[1]
    assert summary.levelno == logging.WARNING
    assert summary.exc_info is None
    assert "60 more failure(s) in the last 60 s" in summary.getMessage()
    assert "61 since 60 s ago" in summary.getMessage()
    assert "attempt 61" in summary.getMessage()


def test_summary_counts_restart_after_each_line(failure_log, clock, records):
    failure_log.failed(outage_error(1))
    for number in range(2, 122):
        clock.now += 1.0
        failure_log.failed(outage_error(number))

    summaries = [record.getMessage() for record in records()[1:]]
    assert len(summaries) == 2
    assert "60 more failure(s)" in summaries[0]
    assert "60 more failure(s)" in summaries[1]
    assert "121 since 120 s ago" in summaries[1]


def test_recovery_logs_one_line_with_total(failure_log, clock, records):
    failure_log.failed(outage_error(1))
    for number in range(2, 6):
        clock.now += 1.0
        failure_log.failed(outage_error(number))
    clock.now += 1.0

    failure_log.succeeded()
    failure_log.succeeded()

    logged = records()
    assert len(logged) == 2
    assert logged[1].levelno == logging.INFO
    assert "works again after 5 failure(s) over 5 s" in logged[1].getMessage()
    assert not failure_log.failing


def test_success_without_outage_logs_nothing(failure_log, records):
    failure_log.succeeded()

    assert records() == []


def test_next_outage_logs_traceback_again(failure_log, clock, records):
    failure_log.failed(outage_error(1))
    failure_log.succeeded()
    clock.now += 1.0

    failure_log.failed(outage_error(2))

    errors = [record for record in records() if record.levelno == logging.ERROR]
    assert len(errors) == 2
    assert errors[1].exc_info is not None


def test_summary_keeps_start_of_long_error(failure_log, clock, records):
    failure_log.failed(outage_error(1))
    clock.now += 61.0
    failure_log.failed(OperationalError("SELECT " + "x, " * 500, {}, Exception("refused")))

    summary = records()[1].getMessage()
    assert summary.endswith("...")
    assert "\n" not in summary


def test_invalid_interval_is_rejected():
    with pytest.raises(ValueError, match="interval_seconds=0"):
        RepeatedFailureLog(logging.getLogger(LOGGER_NAME), "polling", 0)


class OutageStore:
    """A job store whose poll fails `failures` times, then returns no jobs."""

    instance_id = "test-host:1:abc"

    def __init__(self, failures: int):
        self._failures = failures
        self.polls = 0
        self.recovered = threading.Event()

    def release_dead_local_claims(self) -> int:
        return 0

    def due_jobs(self, limit: int, scope=None) -> list:
        self.polls += 1
        if self.polls <= self._failures:
            raise outage_error(self.polls)
        self.recovered.set()
        return []


def test_pool_logs_outage_once_and_recovery(caplog):
    caplog.set_level(logging.INFO, logger="justtrades.execution.workers")
    store = OutageStore(failures=25)
    shutdown = threading.Event()
    pool = WorkerPool(store, lambda job_id: None, size=1, poll_seconds=0.01, shutdown=shutdown)

    pool.start()
    try:
        assert store.recovered.wait(30), f"the pool polled {store.polls} times in 30 s"
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not any("works again" in r.getMessage() for r in caplog.records):
            time.sleep(0.01)
    finally:
        pool.stop()

    pool_records = [record for record in caplog.records if record.name == "justtrades.execution.workers"]
    errors = [record for record in pool_records if record.levelno == logging.ERROR]
    recoveries = [record for record in pool_records if "works again" in record.getMessage()]
    assert len(errors) == 1
    assert errors[0].exc_info is not None
    assert "instance test-host:1:abc" in errors[0].getMessage()
    assert not [record for record in pool_records if "still failing" in record.getMessage()]
    assert len(recoveries) == 1
    assert "after 25 failure(s)" in recoveries[0].getMessage()
