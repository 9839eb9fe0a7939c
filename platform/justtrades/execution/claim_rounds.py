"""Claim rounds: the batches that workers ask to claim while a claim runs are claimed together, in one transaction."""

from __future__ import annotations

import collections
import math
import threading
import time
from typing import Callable, Generic, Sequence, TypeVar

T = TypeVar("T")

# A round waits at most this long for the interval, so a bad setting cannot stall the workers.
MAX_INTERVAL_SECONDS = 1.0


class ClaimRequest(Generic[T]):
    """One worker's batch in a claim round, and what the round returned for it.

    `join`, when given, is called by the thread that runs the round, just before the claim, and returns more job ids
    for the batch. The requesting worker waits meanwhile, so `join` may change that worker's own state.
    """

    def __init__(self, job_ids: Sequence[int], join: Callable[[], list[int]] | None = None):
        self.job_ids = list(job_ids)
        self.join = join
        self.result: T | None = None
        self.error: BaseException | None = None
        self.done = False
        self._wake = threading.Event()
        self._leads = False

    def wait(self) -> None:
        self._wake.wait()

    def finish(self, result: T | None = None, error: BaseException | None = None) -> None:
        self.result, self.error, self.done = result, error, True


class ClaimRounds(Generic[T]):
    """Runs the claims of many workers in rounds: each round serves every request that was waiting when it began.

    A claim costs a transaction and its commit, whatever its size, and only `leaders` claims run at once (in the paper
    worker process, one). With one claim per worker turn, ten workers took turns with a few jobs each while
    thousands waited in their lanes. In a 240 s load test at 200 webhooks/s the median queue depth was 5,937 jobs
    (docs/benchmarks.md, fix 24).
    A round instead claims the batches of all the workers waiting for it together. Its leader is the worker that
    waited longest, and it hands the lead to the oldest request left when the round ends, so no worker is passed
    over. Each worker then settles its own jobs. With an `interval`, a round starts no sooner than that after the
    previous one.
    """

    def __init__(self, leaders: int, serve: Callable[[list[ClaimRequest[T]]], None], interval: float = 0.0):
        if leaders < 1:
            raise ValueError(f"claim round leaders must be at least 1, got {leaders}")
        if not 0.0 <= interval <= MAX_INTERVAL_SECONDS:
            raise ValueError(f"claim round interval must be from 0 to {MAX_INTERVAL_SECONDS:g} s, got {interval!r}")
        self._serve = serve
        self._interval = interval
        self._lock = threading.Lock()
        self._pending: collections.deque[ClaimRequest[T]] = collections.deque()
        self._free_leads = leaders
        self._last_start = -math.inf

    def submit(self, request: ClaimRequest[T]) -> T:
        """Wait until a round has served the request; return its result, or raise the error the round gave it."""
        with self._lock:
            self._pending.append(request)
            if self._free_leads:
                self._free_leads -= 1
                request._leads = True

        if not request._leads:
            # Woken when a round has served the request, or when this thread is to lead the next round.
            request.wait()
        if not request.done:
            self._lead(request)

        if request.error is not None:
            raise request.error
        return request.result

    def pending(self) -> int:
        """Return how many requests wait for a round."""
        with self._lock:
            return len(self._pending)

    def _lead(self, own: ClaimRequest[T]) -> None:
        self._wait_for_interval()

        # A request with a lead waits for its own thread's round, so every leader serves its own request.
        with self._lock:
            round_ = [own, *(request for request in self._pending if not request._leads)]
            self._pending = collections.deque(request for request in self._pending
                                              if request._leads and request is not own)

        try:
            self._serve(round_)
        except BaseException as error:
            # `serve` ends the requests it served; the others get its error, which their workers raise and log.
            for request in round_:
                if not request.done:
                    request.finish(error=error)
            if not isinstance(error, Exception):
                raise
        else:
            # A woken request without a result would take a lead it was never given, so every request ends here.
            for request in round_:
                if not request.done:
                    request.finish(error=RuntimeError(f"claim round of {len(round_)} request(s) returned no result "
                                                      f"for jobs {request.job_ids}; they stay in the table"))
        finally:
            for request in round_[1:]:
                request._wake.set()
            self._pass_lead()

    def _wait_for_interval(self) -> None:
        """Start a round no sooner than `interval` after the previous one, so that requests gather meanwhile.

        Most of a claim's statements are the same for one job as for fifty. Under a steady flow each job
        would otherwise get a round of its own as soon as it arrived.
        """
        with self._lock:
            start = max(time.monotonic(), self._last_start + self._interval)
            self._last_start = start
        delay = start - time.monotonic()
        if delay > 0:
            time.sleep(delay)

    def _pass_lead(self) -> None:
        """Hand this thread's lead to the oldest pending request that has none, or free it."""
        with self._lock:
            following = next((request for request in self._pending if not request._leads), None)
            if following is None:
                self._free_leads += 1
                return
            following._leads = True
        following._wake.set()
