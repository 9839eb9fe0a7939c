"""A semaphore that hands each freed slot to the thread that has waited longest."""

from __future__ import annotations

import collections
import threading


class FifoSlots:
    """Up to `count` holders at once; the others wait in arrival order, and a freed slot goes to the first of them.

    `threading.Semaphore` wakes a waiter on release, but the releasing thread keeps the interpreter lock and can
    take the slot again before that waiter runs. A broker worker does exactly that: it frees the claim slot, finds
    its next job at once, and requests the slot again. A model of the worker pool at 200 jobs/s, with threads that
    sleep for a claim's cost, showed the effect (docs/benchmarks.md, fix 24). One worker kept the slot with
    batches of one or two jobs, and the nine others waited with hundreds of jobs between them. Here a returning
    thread queues behind the others.
    """

    def __init__(self, count: int):
        if count < 1:
            raise ValueError(f"slot count must be at least 1, got {count}")
        self._lock = threading.Lock()
        self._free = count
        self._waiters: collections.deque[threading.Lock] = collections.deque()

    def acquire(self) -> None:
        with self._lock:
            if self._free and not self._waiters:
                self._free -= 1
                return
            handoff = threading.Lock()
            handoff.acquire()
            self._waiters.append(handoff)

        # Released by the holder that gives its slot to this thread, which then holds the slot.
        handoff.acquire()

    def release(self) -> None:
        with self._lock:
            if self._waiters:
                self._waiters.popleft().release()
            else:
                self._free += 1

    def waiting(self) -> int:
        """Return how many threads wait for a slot."""
        with self._lock:
            return len(self._waiters)

    def __enter__(self) -> FifoSlots:
        self.acquire()
        return self

    def __exit__(self, *exc_info) -> None:
        self.release()
