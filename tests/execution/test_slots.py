"""FifoSlots: freed slots go to the threads that waited longest, never back to the thread that freed them."""

from __future__ import annotations

import threading
import time

import pytest

from justtrades.execution.slots import FifoSlots

WAIT_SECONDS = 5.0


def _wait_for_waiters(slots: FifoSlots, count: int) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while slots.waiting() < count:
        assert time.monotonic() < deadline, f"{count} thread(s) did not start waiting within {WAIT_SECONDS} s"
        time.sleep(0.001)


def _queue_thread(slots: FifoSlots, name: str, order: list[str]) -> threading.Thread:
    """Start a thread that takes a slot, records its name and frees the slot; return it once it waits."""
    def take() -> None:
        with slots:
            order.append(name)

    waiting_before = slots.waiting()
    thread = threading.Thread(target=take, name=name, daemon=True)
    thread.start()
    _wait_for_waiters(slots, waiting_before + 1)
    return thread


def test_slots_go_to_waiters_in_arrival_order():
    slots = FifoSlots(1)
    order: list[str] = []
    slots.acquire()
    threads = [_queue_thread(slots, name, order) for name in ("first", "second", "third")]

    slots.release()
    for thread in threads:
        thread.join(WAIT_SECONDS)

    assert order == ["first", "second", "third"]


def test_releasing_thread_queues_behind_waiters():
    slots = FifoSlots(1)
    order: list[str] = []
    slots.acquire()
    threads = [_queue_thread(slots, name, order) for name in ("first", "second")]

    # A threading.Semaphore lets this thread take the slot back before either waiter runs.
    slots.release()
    with slots:
        order.append("releaser")
    for thread in threads:
        thread.join(WAIT_SECONDS)

    assert order == ["first", "second", "releaser"]


def test_count_slots_held_at_once():
    slots = FifoSlots(2)
    slots.acquire()
    slots.acquire()
    order: list[str] = []
    thread = _queue_thread(slots, "third", order)

    assert order == []
    assert slots.waiting() == 1

    slots.release()
    thread.join(WAIT_SECONDS)
    assert order == ["third"]
    assert slots.waiting() == 0


def test_free_slot_taken_without_waiting():
    slots = FifoSlots(1)

    with slots:
        assert slots.waiting() == 0
    with slots:
        assert slots.waiting() == 0


def test_zero_slots_rejected():
    with pytest.raises(ValueError, match="at least 1, got 0"):
        FifoSlots(0)
