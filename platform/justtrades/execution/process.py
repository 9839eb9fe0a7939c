"""The paper broker's workers in a child process, which the platform process starts, feeds and supervises.

A paper order is filled in the platform's own database, so it costs CPU, not a network wait. In one process,
200 webhooks/s and their paper orders needed more than the one core an interpreter lock allows, and the
acknowledgements fell seconds behind (docs/benchmarks.md, "The load scenario"). So the paper jobs run in a child
process (`execution/process_main.py`) with an interpreter of its own. The webhook view hands it each job's id
through a pipe once the job is committed, and the child polls the job table for due paper jobs (retries,
orphans) as the thread pool does for the others. The child reports its workers and the outcome of every
execution, which go into this process's ExecutionStats; the feed's cached prices go the other way.

Jobs of remote brokers stay in this process's threads: they wait on the network, and Tradovate wants one token
manager per platform (brokers/tradovate_auth.py).
"""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing
import os
import queue
import select
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable

from ..brokers.base import FailureReason
from ..config import Settings
from .jobs import BrokerScope
from .stats import ExecutionStats
from .workers import WorkerPool

logger = logging.getLogger(__name__)

# The brokers whose jobs the child runs: those filled in the platform's database.
PROCESS_SCOPE = BrokerScope(("paper",))

# Job ids waiting for the pipe. Beyond this the newest are dropped, and the child's table poll finds them.
OUTBOX_LIMIT = 100_000
# Seconds between price checks when no job is sent; a job sends the prices first when they changed.
PRICE_SECONDS = 0.5
# Seconds without a report after which the child's workers count as not alive (it reports every 0.2 s).
REPORT_TIMEOUT_SECONDS = 5.0
# Seconds without a report, or without the first one after the start, after which the child counts as hung and
# is killed, so that another replaces it. Its start reads the database once, within the reply deadline.
SILENT_CHILD_SECONDS = 60.0
# The wait before the first restart of a child that died, doubled per death before a report, up to the maximum.
RESTART_BACKOFF_SECONDS = 1.0
RESTART_BACKOFF_MAX_SECONDS = 30.0
# Seconds a child has to finish its jobs and exit once its pipe is closed, before it is killed.
STOP_TIMEOUT_SECONDS = 10.0


@dataclasses.dataclass(frozen=True)
class _Report:
    workers_alive: int = 0
    worker_restarts: int = 0
    received_at: float = 0.0


class BrokerProcess:
    """Starts the child, sends it job ids and prices, applies its reports, and starts another when it dies."""

    def __init__(self, settings: Settings, stats: ExecutionStats, prices: Callable[[], dict]):
        self.size = settings.broker_workers
        self._settings = settings
        self._stats = stats
        self._prices = prices

        self._outbox: queue.Queue = queue.Queue(maxsize=OUTBOX_LIMIT)
        self._stopping = threading.Event()
        self._pump_thread: threading.Thread | None = None
        self._child: subprocess.Popen | None = None
        self._connection = None
        self._receiver: threading.Thread | None = None
        self._started_at = 0.0
        self._sent_prices: dict | None = None

        self._report = _Report()
        self._earlier_restarts = 0  # the thread restarts of children that have died, and one per death
        self.process_restarts = 0
        self._deaths_in_a_row = 0

    # The interface of WorkerPool that the views and snapshots use.

    def submit(self, job_id: int, account_id: int, symbol: str, broker: str | None = None) -> None:
        try:
            self._outbox.put_nowait((job_id, account_id, symbol, broker))
        except queue.Full:
            logger.warning("job %s: %d job ids already wait for the paper worker process; its table poll will find "
                           "this one", job_id, OUTBOX_LIMIT)

    def start(self) -> None:
        # The pump thread starts every child: a child dies with the thread that started it (process_main.py).
        self._pump_thread = threading.Thread(target=self._pump, name="paper-process-pump", daemon=True)
        self._pump_thread.start()

    def stop(self, timeout: float = STOP_TIMEOUT_SECONDS + 2) -> None:
        self._stopping.set()  # the pump notices it within PRICE_SECONDS
        if self._pump_thread is not None:
            self._pump_thread.join(timeout)

    def workers_alive(self) -> int:
        child, report = self._child, self._report
        if child is None or child.poll() is not None:
            return 0
        if time.monotonic() - report.received_at > REPORT_TIMEOUT_SECONDS:
            return 0
        return report.workers_alive

    @property
    def restarts(self) -> int:
        return self._earlier_restarts + self._report.worker_restarts

    @property
    def pid(self) -> int | None:
        child = self._child
        return child.pid if child is not None and child.poll() is None else None

    # The pump thread: starting children, and sending them jobs and prices.

    def _pump(self) -> None:
        while not self._stopping.is_set():
            try:
                if self._child is None or self._child.poll() is not None:
                    self._replace_child()
                    continue
                self._kill_if_silent()
                self._send_waiting_jobs()
            except Exception:
                # The pump must outlive a bug in one pass, or nothing would start a child again.
                logger.exception("paper worker process pump failed; trying again")
                self._stopping.wait(RESTART_BACKOFF_SECONDS)
        self._stop_child()

    def _replace_child(self) -> None:
        if self._child is not None:
            self._bury_child()
            delay = min(RESTART_BACKOFF_SECONDS * 2 ** (self._deaths_in_a_row - 1), RESTART_BACKOFF_MAX_SECONDS)
            if self._stopping.wait(delay):
                return

        self._child, self._connection = _spawn_child(self._settings)
        self._started_at = time.monotonic()
        self._sent_prices = None
        self._receiver = threading.Thread(
            target=self._receive, args=(self._connection, self._child), name=f"paper-process-{self._child.pid}",
            daemon=True,
        )
        self._receiver.start()
        logger.info("paper worker process %s started with %d workers", self._child.pid, self.size)

    def _bury_child(self) -> None:
        """Count the dead child as one restart (with its threads' own), log how it ended, and close its pipe."""
        child, report = self._child, self._report
        # One death counts once, as a dead worker thread does: the restart alerts count replacements, and ten for
        # one out-of-memory kill would page at once.
        self._earlier_restarts += report.worker_restarts + 1
        self._report = _Report()
        self.process_restarts += 1
        if report.received_at == 0.0:
            self._deaths_in_a_row += 1
        else:
            self._deaths_in_a_row = 1
        logger.error("paper worker process %s exited with code %s; starting another (restart %d), which "
                     "resumes the jobs it held", child.pid, child.returncode, self.process_restarts)
        self._close_connection()
        self._child = self._connection = None

    def _kill_if_silent(self) -> None:
        """Kill a child that has sent no report for SILENT_CHILD_SECONDS, so that the next pass replaces it."""
        silent = time.monotonic() - (self._report.received_at or self._started_at)
        if silent < SILENT_CHILD_SECONDS:
            return
        logger.error("paper worker process %s sent no report for %.0f s; killing it to start another",
                     self._child.pid, silent)
        self._child.kill()
        self._child.wait(STOP_TIMEOUT_SECONDS)

    def _send_waiting_jobs(self) -> None:
        try:
            first = self._outbox.get(timeout=PRICE_SECONDS)
        except queue.Empty:
            first = None
        jobs = [first] if first is not None else []
        while jobs and len(jobs) < 1000:
            try:
                jobs.append(self._outbox.get_nowait())
            except queue.Empty:
                break

        if not _writable(self._connection, PRICE_SECONDS):
            # Only a hung child stops reading its pipe: these jobs wait for the table poll of its successor.
            logger.warning("paper worker process %s is not reading its pipe; %d job(s) left to the table poll",
                           self._child.pid, len(jobs))
            return
        try:
            self._send_prices_if_changed()
            if jobs:
                self._connection.send(("jobs", jobs))
        except OSError as error:
            # The child is dead or dying; the next pass starts another, whose poll finds these jobs in the table.
            logger.warning("paper worker process %s: writing to its pipe failed (%s); %d job(s) left to the table "
                           "poll", self._child.pid, type(error).__name__, len(jobs))
            self._child.wait(STOP_TIMEOUT_SECONDS)

    def _send_prices_if_changed(self) -> None:
        prices = self._prices()
        if prices != self._sent_prices:
            self._connection.send(("prices", prices))
            self._sent_prices = prices

    def _stop_child(self) -> None:
        child = self._child
        if child is None:
            return  # none started, or the dead one was buried while the platform began to stop
        # Shutting the pipe for writing makes the child finish its jobs and exit. Its last report still arrives.
        with socket.socket(fileno=os.dup(self._connection.fileno())) as pipe:
            pipe.shutdown(socket.SHUT_WR)
        try:
            child.wait(STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            logger.warning("paper worker process %s did not exit within %.0f s; killing it", child.pid,
                           STOP_TIMEOUT_SECONDS)
            child.kill()
            child.wait(STOP_TIMEOUT_SECONDS)
        logger.info("paper worker process %s exited with code %s", child.pid, child.returncode)
        self._close_connection()

    def _close_connection(self) -> None:
        # The receiver ends at the end of the pipe, which the child's exit brings; it must not be reading when
        # the connection closes under it.
        self._receiver.join(STOP_TIMEOUT_SECONDS)
        self._connection.close()

    # The receiving thread of one child: its reports.

    def _receive(self, connection, child: subprocess.Popen) -> None:
        while True:
            try:
                _, workers_alive, worker_restarts, events = connection.recv()
            except (EOFError, OSError):
                return
            for event in events:
                self._apply(event)
            if child is self._child:
                self._report = _Report(workers_alive, worker_restarts, time.monotonic())

    def _apply(self, event: tuple) -> None:
        kind = event[0]
        if kind == "success":
            self._stats.record_success(event[1], event[2])
        elif kind == "no_order":
            self._stats.record_no_order()
        elif kind == "failure":
            self._stats.record_failure(FailureReason(event[1]), event[2])


def _writable(connection, timeout: float) -> bool:
    """Tell whether the pipe accepts more bytes within timeout seconds."""
    _, writable, _ = select.select([], [connection.fileno()], [], timeout)
    return bool(writable)


def _spawn_child(settings: Settings):
    """Start `python -m justtrades.execution.process_main` with one end of a pipe, and send it the settings."""
    parent_end, child_end = multiprocessing.Pipe()
    # The child imports this package from where this process did, installed or not.
    package_root = str(Path(__file__).resolve().parents[2])
    environ = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))}

    command = [sys.executable, "-m", "justtrades.execution.process_main", str(child_end.fileno()), str(os.getpid())]
    child = subprocess.Popen(command, pass_fds=(child_end.fileno(),), env=environ, stdin=subprocess.DEVNULL)
    child_end.close()

    parent_end.send(("settings", settings))
    return child, parent_end


class JobRouter:
    """Hands each job to the workers of its broker, the child process or the threads, and reports both pools as one.

    Each pool has JT_BROKER_WORKERS workers, and the reference's figures describe one pool of that size. So the
    router reports that size as configured and the weaker pool's count as alive: a dead child process shows as no
    worker alive, which the worker alerts page on, though the remote brokers' workers still run. Restarts add up.
    """

    def __init__(self, threads: WorkerPool, process: BrokerProcess):
        self.threads = threads
        self.process = process

    def submit(self, job_id: int, account_id: int, symbol: str, broker: str | None = None) -> None:
        pool = self.process if PROCESS_SCOPE.covers(broker) else self.threads
        pool.submit(job_id, account_id, symbol, broker)

    @property
    def size(self) -> int:
        return self.threads.size

    @property
    def restarts(self) -> int:
        return self.threads.restarts + self.process.restarts

    def workers_alive(self) -> int:
        return min(self.threads.workers_alive(), self.process.workers_alive())

    def start(self) -> None:
        self.threads.start()
        self.process.start()

    def stop(self) -> None:
        self.process.stop()
        self.threads.stop()
