"""The paper worker process: `python -m justtrades.execution.process_main FD PARENT_PID`, started by process.py.

It reads the settings, then job ids and prices, from the pipe on descriptor FD, runs the paper jobs with a
WorkerPool of its own, and every REPORT_SECONDS sends back its workers' state and the outcomes of its
executions. It exits when the pipe closes, and is killed by the kernel when the thread that started it ends,
so a platform killed with SIGKILL leaves no worker behind to race its successor.
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing.connection
import os
import signal
import sys
import threading
from decimal import Decimal

from ..brokers.base import FailureReason
from ..brokers.paper import PaperBroker
from ..config import Settings
from ..db.engine import create_database_engine, create_session_factory
from .executor import Executor
from .jobs import JobStore, new_instance_id
from .process import PROCESS_SCOPE
from .workers import WorkerPool

logger = logging.getLogger("justtrades.execution.process_main")  # not __main__, as it runs with -m

REPORT_SECONDS = 0.2

# prctl(2) option: the signal this process gets when the thread that created it ends.
_PR_SET_PDEATHSIG = 1


class ForwardedStats:
    """The ExecutionStats interface of the Executor, keeping each outcome until the reporter sends it."""

    def __init__(self):
        self._lock = threading.Lock()
        self._events: list[tuple] = []

    def record_success(self, execution_seconds: float, signal_to_order_seconds: float | None) -> None:
        self._add(("success", execution_seconds, signal_to_order_seconds))

    def record_no_order(self) -> None:
        self._add(("no_order",))

    def record_failure(self, reason: FailureReason, final: bool) -> None:
        self._add(("failure", reason.value, final))

    def take(self) -> list[tuple]:
        with self._lock:
            events, self._events = self._events, []
        return events

    def _add(self, event: tuple) -> None:
        with self._lock:
            self._events.append(event)


class PriceBook:
    """The feed's last prices as the platform last sent them, replaced whole: no reader gets half an update."""

    def __init__(self):
        self._prices: dict[str, Decimal] = {}

    def replace(self, prices: dict[str, Decimal]) -> None:
        self._prices = prices

    def last(self, root: str) -> Decimal | None:
        return self._prices.get(root)


def main(argv: list[str] | None = None) -> int:
    descriptor, parent_pid = (int(value) for value in (argv or sys.argv[1:]))
    _die_with_parent(parent_pid)

    # Ctrl-C in a terminal reaches the whole process group: the platform then closes the pipe, which stops this
    # process after its current jobs. SIGTERM sent to this process alone stops it the same way.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _exit_on_signal)

    connection = multiprocessing.connection.Connection(descriptor)
    _, settings = connection.recv()
    logging.basicConfig(
        level=os.environ.get("JT_LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(name)s [paper process %(process)d] - %(levelname)s - %(message)s",
    )
    run(connection, settings)
    return 0


def run(connection, settings: Settings) -> None:
    """Run the paper jobs until the pipe closes, then stop the workers and return."""
    engine = create_database_engine(settings.database_url)
    session_factory = create_session_factory(engine)
    store = JobStore(session_factory, new_instance_id(), settings.job_lease_seconds)
    prices = PriceBook()
    stats = ForwardedStats()
    executor = Executor(session_factory, store, {"paper": PaperBroker(session_factory, last_price=prices.last)},
                        stats, settings.job_max_attempts, claim_concurrency=settings.broker_claim_concurrency,
                        claim_interval=settings.broker_claim_interval_seconds, hands_back_other_brokers=True)

    shutdown = threading.Event()
    pool = WorkerPool(
        store, executor.execute, settings.broker_workers, settings.worker_poll_seconds, shutdown,
        execute_batch=executor.execute_batch, batch_size=settings.broker_batch_size,
        batchable=executor.places_in_database, scope=PROCESS_SCOPE,
    )
    pool.start()
    reporter = threading.Thread(target=_report, args=(connection, pool, stats, shutdown), name="paper-reporter",
                                daemon=True)
    reporter.start()
    logger.info("paper worker process %s (instance %s) serving", os.getpid(), store.instance_id)

    try:
        _read(connection, pool, prices)
    finally:
        logger.info("paper worker process %s: stopping the workers", os.getpid())
        shutdown.set()
        pool.stop()
        reporter.join(REPORT_SECONDS * 5)
        engine.dispose()


def _read(connection, pool: WorkerPool, prices: PriceBook) -> None:
    while True:
        try:
            kind, payload = connection.recv()
        except (EOFError, OSError):
            logger.info("paper worker process %s: the platform closed the pipe", os.getpid())
            return
        if kind == "jobs":
            for job_id, account_id, symbol, broker in payload:
                pool.submit(job_id, account_id, symbol, broker)
        elif kind == "prices":
            prices.replace(payload)


def _report(connection, pool: WorkerPool, stats: ForwardedStats, shutdown: threading.Event) -> None:
    # A last report after the stop request carries the outcomes of the jobs the workers finished meanwhile.
    while True:
        stopping = shutdown.wait(REPORT_SECONDS)
        try:
            connection.send(("status", pool.workers_alive(), pool.restarts, stats.take()))
        except OSError:
            return
        if stopping:
            return


def _exit_on_signal(signum, _frame) -> None:
    # SystemExit leaves the pipe's read loop through run's finally block, which stops the workers.
    logger.info("paper worker process %s: received signal %s", os.getpid(), signum)
    raise SystemExit(0)


def _die_with_parent(parent_pid: int) -> None:
    """Ask Linux to kill this process when its parent thread ends; exit now if the parent is already gone."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (AttributeError, OSError):
        pass  # not Linux: the closed pipe still stops the process, once its current jobs are done
    if os.getppid() != parent_pid:
        sys.exit(f"paper worker process {os.getpid()}: platform process {parent_pid} has already exited")


if __name__ == "__main__":
    sys.exit(main())
