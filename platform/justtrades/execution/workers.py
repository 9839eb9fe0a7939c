"""A supervised pool of broker worker threads fed by an in-process queue and by the job table."""

from __future__ import annotations

import collections
import heapq
import logging
import queue
import threading
from typing import Callable, Hashable, Iterable

from .failure_log import RepeatedFailureLog
from .jobs import BrokerScope, JobStore

logger = logging.getLogger(__name__)

WorkItem = tuple[int, Hashable, bool]  # (job id, lane key, whether the job may share a batch)


class Lanes:
    """Serialises jobs that share a key (account and contract), keeping their queue order.

    A worker that finds its job's lane busy parks the job behind the running one instead of waiting, and the worker
    that finishes a lane runs what was parked there next. So orders for one account and symbol never overlap.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._parked: dict[Hashable, collections.deque[int]] = {}

    def enter(self, key: Hashable, job_id: int) -> bool:
        """Return True when the lane was free and the caller now owns it; False when the job was parked."""
        with self._lock:
            if key in self._parked:
                self._parked[key].append(job_id)
                return False
            self._parked[key] = collections.deque()
            return True

    def leave(self, key: Hashable) -> int | None:
        """Return the next parked job of the lane (the caller keeps the lane), or None and free the lane."""
        with self._lock:
            parked = self._parked[key]
            if parked:
                return parked.popleft()
            del self._parked[key]
            return None

    def take_oldest(self, keys: Iterable[Hashable], limit: int) -> list[tuple[Hashable, int]]:
        """Return up to `limit` (lane, job id) pairs parked in lanes the caller owns, the oldest over all of them first.

        The caller keeps the lanes. Taking by age rather than lane by lane keeps one busy lane from holding back the
        others a worker owns: their jobs would otherwise advance by one per batch.
        """
        with self._lock:
            # Job ids are unique, so the heap orders by them alone and never compares two lane keys.
            heads = [(self._parked[key][0], key) for key in keys if self._parked[key]]
            heapq.heapify(heads)
            jobs = []
            while heads and len(jobs) < limit:
                job_id, key = heapq.heappop(heads)
                parked = self._parked[key]
                parked.popleft()
                jobs.append((key, job_id))
                if parked:
                    heapq.heappush(heads, (parked[0], key))
            return jobs

    def abandon(self, key: Hashable) -> list[int]:
        """Free the lane of a worker that is dying and return its parked jobs, to be queued again."""
        with self._lock:
            return list(self._parked.pop(key, ()))


class WorkerPool:
    """Worker threads that run jobs, one at a time per lane, taking up to `batch_size` batchable jobs at once.

    A job is batchable when `batchable(broker)` returns True for its account's broker: the paper broker's orders are
    placed in the claim transaction, so several of them share one. A batch contains at most one job that is not
    batchable, so a worker still waits on one remote broker at a time.
    """

    def __init__(
        self,
        store: JobStore,
        execute: Callable[[int], None],
        size: int,
        poll_seconds: float,
        shutdown: threading.Event,
        poll_failure_log_seconds: float = 60.0,
        *,
        execute_batch: Callable[[list[int], Callable[[], list[int]]], None] | None = None,
        batch_size: int = 1,
        batchable: Callable[[str | None], bool] = lambda broker: False,
        scope: BrokerScope | None = None,
    ):
        self._store = store
        self._execute = execute
        self._execute_batch = execute_batch
        self._batch_size = batch_size if execute_batch is not None else 1
        self._batchable = batchable
        self._scope = scope  # the brokers whose jobs the table poll queues here; None for every job
        self.size = size
        self._poll_seconds = poll_seconds
        self._shutdown = shutdown

        self._queue: queue.Queue[WorkItem] = queue.Queue()
        self._lanes = Lanes()
        # Ids in the in-process queue or running, so the table poll does not queue them a second time.
        self._in_flight: set[int] = set()
        self._in_flight_lock = threading.Lock()

        self._workers: list[threading.Thread] = []
        self._supervisor: threading.Thread | None = None
        self.restarts = 0
        # During a database outage the poll fails every poll_seconds; a traceback each time would flood the log.
        self._poll_failures = RepeatedFailureLog(
            logger, f"polling the job table (instance {store.instance_id}, every {poll_seconds:g} s)",
            poll_failure_log_seconds,
        )

    def submit(self, job_id: int, account_id: int, symbol: str, broker: str | None = None) -> None:
        with self._in_flight_lock:
            if job_id in self._in_flight:
                return
            self._in_flight.add(job_id)
        self._queue.put((job_id, (account_id, symbol), self._batchable(broker)))

    def start(self) -> None:
        self._store.release_dead_local_claims()
        self._workers = [self._spawn(index) for index in range(self.size)]
        self._supervisor = threading.Thread(target=self._supervise, name="broker-supervisor", daemon=True)
        self._supervisor.start()
        logger.info("broker worker pool started with %d workers", self.size)

    def stop(self, timeout: float = 5.0) -> None:
        self._shutdown.set()
        for thread in [*self._workers, self._supervisor]:
            if thread is not None:
                thread.join(timeout)

    def workers_alive(self) -> int:
        return sum(1 for thread in self._workers if thread.is_alive())

    def _spawn(self, index: int) -> threading.Thread:
        thread = threading.Thread(target=self._work, name=f"broker-worker-{index}", daemon=True)
        thread.start()
        return thread

    def _work(self) -> None:
        while not self._shutdown.is_set():
            try:
                first = self._queue.get(timeout=0.5)
            except queue.Empty:
                continue

            # A job whose lane is busy is parked there, and the worker running that lane takes it next.
            items = self._take_batch(first)
            owned = [(key, job_id) for job_id, key, _ in items if self._lanes.enter(key, job_id)]
            if owned:
                self._run_lanes(owned, {key for _, key, batchable in items if batchable})

    def _take_batch(self, first: WorkItem) -> list[WorkItem]:
        """Return the first item and, while it and the next ones are batchable, more from the queue without waiting."""
        batch = [first]
        while batch[-1][2] and len(batch) < self._batch_size:
            try:
                batch.append(self._queue.get_nowait())
            except queue.Empty:
                break
        return batch

    def _run_lanes(self, owned: list[tuple[Hashable, int]], batchable_lanes: set[Hashable]) -> None:
        """Run the jobs of lanes this worker owns, then what was parked behind them, until the lanes are empty."""
        while owned:
            try:
                if self._batch_size > 1 and any(key in batchable_lanes for key, _ in owned):
                    # `owned` grows in place when the batch is joined, so the code after the call finds every job of it.
                    self._execute_batch([job_id for _, job_id in owned],
                                        lambda: self._join_batch(owned, batchable_lanes))
                else:
                    for _, job_id in owned:
                        self._execute(job_id)
            except Exception:
                logger.exception("jobs %s: executor raised; they stay in the table for the next poll",
                                 ", ".join(str(job_id) for _, job_id in owned))
            except BaseException:
                # The thread is going down: hand the lanes' parked jobs back so the other workers run them.
                for key, job_id in owned:
                    self._forget(job_id)
                    for parked in self._lanes.abandon(key):
                        self._forget(parked)
                raise

            next_owned = []
            for _, job_id in owned:
                self._forget(job_id)
            for key in dict.fromkeys(key for key, _ in owned):
                parked = self._lanes.leave(key)
                if parked is not None:
                    next_owned.append((key, parked))
            owned = next_owned

    def _join_batch(self, owned: list[tuple[Hashable, int]], batchable_lanes: set[Hashable]) -> list[int]:
        """Add jobs to a batch up to its size once its claim slot is held, and return their ids.

        The executor calls this when the claim starts. Under load a worker waits for the claim slot while jobs
        arrive: those parked in its own lanes join first, oldest first, then batchable jobs waiting in the queue.
        Before, a worker that woke for one job claimed that job alone, however many arrived while it waited
        (docs/benchmarks.md, fix 23).
        """
        own_lanes = dict.fromkeys(key for key, _ in owned)
        added = self._lanes.take_oldest([key for key in own_lanes if key in batchable_lanes],
                                        self._batch_size - len(owned))

        # A batch waits on at most one remote broker, so queued jobs join only a batch without such a job.
        while len(owned) + len(added) < self._batch_size and all(key in batchable_lanes for key in own_lanes):
            try:
                job_id, key, batchable = self._queue.get_nowait()
            except queue.Empty:
                break
            if batchable:
                batchable_lanes.add(key)
            if self._lanes.enter(key, job_id):
                own_lanes[key] = None
                added.append((key, job_id))
            elif batchable and key in own_lanes:
                # Parked behind a job of this batch: it runs after that one in the same transaction.
                added.extend(self._lanes.take_oldest([key], 1))

        owned.extend(added)
        return [job_id for _, job_id in added]

    def _forget(self, job_id: int) -> None:
        with self._in_flight_lock:
            self._in_flight.discard(job_id)

    def _supervise(self) -> None:
        """Replace dead workers and queue jobs from the table: due retries, orphans and work left by a restart."""
        while not self._shutdown.wait(self._poll_seconds):
            self._replace_dead_workers()
            try:
                due = self._store.due_jobs(limit=500, scope=self._scope)
            except Exception as error:
                self._poll_failures.failed(error)
                continue

            self._poll_failures.succeeded()
            for job_id, account_id, symbol, broker in due:
                self.submit(job_id, account_id, symbol, broker)

    def _replace_dead_workers(self) -> None:
        for index, thread in enumerate(self._workers):
            if thread.is_alive() or self._shutdown.is_set():
                continue
            # Count after the replacement runs, so a reader never sees the restart with the pool still short.
            self._workers[index] = self._spawn(index)
            self.restarts += 1
            logger.error("broker worker %s died; started a replacement (restart %d)", thread.name, self.restarts)
