"""The position monitor's writer thread: records fill and position events off the sockets' reading threads.

Socket threads call `submit()` for an event and `submit_batch()` for the entities of a sync response. Neither
blocks: the event, or the whole batch as one entry, goes into a bounded queue, or is dropped and counted when
the queue is full. The `position-monitor-writer` thread takes events one at a time and writes
each in its own short transaction (feeds.fills).

While the database is unreachable the writer keeps the failed event and the ones behind it in memory (within
the queue bound), retries with a growing delay, logs at most one line per `LOG_INTERVAL_SECONDS` and counts
every failed attempt. After events were dropped on overflow, the writer raises `resync_generation` once its
backlog is written; the socket connections then reconnect, and the sync response of the new connection lists
the day's fills and the current positions again. A write that fails for any other
database reason (a bad value, a constraint) would fail again, so that event is counted and dropped.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import queue
import threading
import time

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.orm import Session, sessionmaker

from ..daemons import ThreadContext, redact_error
from ..db.engine import transaction
from . import fills
from .broker_events import FillEvent, PositionEvent

logger = logging.getLogger("position_monitor")

THREAD_NAME = "position-monitor-writer"
QUEUE_SIZE = 10_000
# How long a fill with no matching platform order waits before it is recorded as manual: the executor stores
# the broker order id only after Tradovate's REST response, and the socket can deliver the fill before that.
MATCH_GRACE_SECONDS = 5.0
LOG_INTERVAL_SECONDS = 30.0
RETRY_BASE_SECONDS = 0.5
RETRY_MAX_SECONDS = 30.0
# Shortest time between two re-sync requests, so a database that keeps falling behind cannot make the sockets
# reconnect in a loop.
RESYNC_MIN_INTERVAL_SECONDS = 30.0
_POLL_SECONDS = 0.2

COUNTERS = ("fills_recorded", "fills_duplicate", "fills_unattributed", "fills_inactive", "positions_updated",
            "write_failures", "events_dropped")


class _RateLimitedLog:
    """Log the first of a run of repeated errors, then at most one line per interval with the count left out."""

    def __init__(self, interval: float):
        self._interval = interval
        self._last = -interval
        self._suppressed = 0

    def error(self, message: str, *args) -> None:
        now = time.monotonic()
        if now - self._last < self._interval:
            self._suppressed += 1
            return
        suffix = f" ({self._suppressed} similar errors not logged)" if self._suppressed else ""
        logger.error(message + suffix, *args)
        self._last, self._suppressed = now, 0


@dataclasses.dataclass
class _Pending:
    event: FillEvent
    due: float  # time.monotonic() of the next match attempt


class EventWriter:
    def __init__(self, session_factory: sessionmaker[Session], *, queue_size: int | None = None,
                 match_grace_seconds: float | None = None):
        queue_size = QUEUE_SIZE if queue_size is None else queue_size
        self._session_factory = session_factory
        self._queue: queue.Queue = queue.Queue(maxsize=queue_size)
        self._retry: collections.deque = collections.deque()  # events whose write failed, oldest first
        self._unmatched: list[_Pending] = []  # fills waiting for their platform order (bounded by the queue size)
        self._queue_size = queue_size
        self._match_grace = MATCH_GRACE_SECONDS if match_grace_seconds is None else match_grace_seconds
        self._lock = threading.Lock()
        self._counts = dict.fromkeys(COUNTERS, 0)
        self._failure_log = _RateLimitedLog(LOG_INTERVAL_SECONDS)
        self._drop_log = _RateLimitedLog(LOG_INTERVAL_SECONDS)
        self._retry_delay = 0.0
        self._dropped = False  # events were dropped since the last re-sync request
        self.resync_generation = 0  # raised to ask the socket connections to reconnect and sync again
        self._resync_requested_at = -RESYNC_MIN_INTERVAL_SECONDS  # time.monotonic() of the last request

    # Producer side (socket threads)

    def submit(self, event: FillEvent | PositionEvent) -> bool:
        """Queue an event without blocking; return False when the queue is full and the event was dropped."""
        return self._put(event, event.scope.token_label)

    def submit_batch(self, events: list) -> bool:
        """Queue a sync response's events as one entry, so a replay fits into a queue that live events fill."""
        if not events:
            return True
        return self._put(list(events), events[0].scope.token_label)

    def _put(self, item, token_label: str) -> bool:
        try:
            self._queue.put_nowait(item)
            return True
        except queue.Full:
            self._count_drop()
            self._drop_log.error(
                "%s Write queue full (%d entries); events dropped, a re-sync follows once the queue is written",
                token_label, self._queue_size,
            )
            return False

    # Writer thread

    def run(self, context: ThreadContext) -> None:
        while not context.stopping():
            context.beat()
            event = self._next_event()
            if event is not None and not self._write(event):
                # The database is unreachable: wait before the retry, waking early on a stop request.
                self._retry.appendleft(event)
                self._retry_delay = min(max(self._retry_delay * 2, RETRY_BASE_SECONDS), RETRY_MAX_SECONDS)
                if context.wait(self._retry_delay):
                    return
                continue
            self._retry_delay = 0.0
            self._requeue_due_unmatched()
            self._request_resync_after_drops()

    def _next_event(self):
        if not self._retry:
            try:
                item = self._queue.get(timeout=_POLL_SECONDS)
            except queue.Empty:
                return None
            self._retry.extend(item if isinstance(item, list) else [item])
        return self._retry.popleft()

    def _write(self, event) -> bool:
        """Write one event; return False only when the database could not be reached."""
        try:
            with transaction(self._session_factory) as session:
                if isinstance(event, FillEvent):
                    outcome = fills.record_fill(session, event, self._match_grace)
                else:
                    outcome = fills.record_position(session, event)
        except SQLAlchemyError as error:
            self._count("write_failures")
            if _is_unreachable(error):
                self._failure_log.error(
                    "%s Database unreachable while recording a %s; retrying: %s",
                    event.scope.token_label, _describe(event), redact_error(error),
                )
                return False
            logger.error("%s Recording a %s failed; event dropped: %s",
                         event.scope.token_label, _describe(event), redact_error(error))
            return True

        self._after_write(event, outcome)
        return True

    def _after_write(self, event, outcome: str) -> None:
        label = event.scope.token_label
        if outcome == fills.PENDING:
            self._hold_unmatched(event)
        elif outcome == fills.RECORDED:
            self._count("fills_recorded")
            logger.info("%s Recorded fill %s: %s %s %s @ %s", label, event.fill_id, event.side, event.quantity,
                        event.contract_symbol, event.price)
        elif outcome in (fills.ADOPTED, fills.CORRECTED):
            logger.info("%s Fill %s updated (%s)", label, event.fill_id, outcome)
        elif outcome == fills.DUPLICATE:
            self._count("fills_duplicate")
        elif outcome == fills.INACTIVE:
            self._count("fills_inactive")
        elif outcome == fills.UNATTRIBUTED and isinstance(event, FillEvent):
            self._count("fills_unattributed")
            if event.broker_account_id is None:
                # No order entity named the account and no platform order matched: the fill may be this group's.
                logger.warning("%s Fill %s of order %s has no known account (no order entity seen); not recorded",
                               label, event.fill_id, event.broker_order_id)
            else:
                logger.debug("%s Fill %s (order %s) belongs to account %s outside this group; not recorded",
                             label, event.fill_id, event.broker_order_id, event.broker_account_id)
        elif outcome == fills.UPDATED:
            self._count("positions_updated")

    def _hold_unmatched(self, event: FillEvent) -> None:
        if len(self._unmatched) >= self._queue_size:
            self._count_drop()
            self._drop_log.error("%s Too many fills wait for their order; fill %s dropped, a re-sync follows",
                                 event.scope.token_label, event.fill_id)
            return
        # Try again a little later; the fill is recorded as manual once it is older than the grace period.
        delay = min(0.5, max(self._match_grace / 4, 0.05))
        self._unmatched.append(_Pending(event, time.monotonic() + delay))

    def _requeue_due_unmatched(self) -> None:
        now = time.monotonic()
        due = [pending for pending in self._unmatched if pending.due <= now]
        if not due:
            return
        self._unmatched = [pending for pending in self._unmatched if pending.due > now]
        self._retry.extend(pending.event for pending in due)

    def _request_resync_after_drops(self) -> None:
        if not self._dropped or self._retry or not self._queue.empty():
            return
        if time.monotonic() - self._resync_requested_at < RESYNC_MIN_INTERVAL_SECONDS:
            return
        self._dropped = False
        self._resync_requested_at = time.monotonic()
        self.resync_generation += 1
        logger.warning("Position monitor events were dropped; asking the sockets to reconnect and sync again")

    # Status

    def _count_drop(self) -> None:
        self._count("events_dropped")
        self._dropped = True

    def _count(self, name: str) -> None:
        with self._lock:
            self._counts[name] += 1

    def snapshot(self) -> dict:
        with self._lock:
            counts = dict(self._counts)
        # A queued sync batch counts as one event here: counting its members would need the queue's lock.
        counts["write_queue_events"] = self._queue.qsize() + len(self._retry) + len(self._unmatched)
        return counts


def _is_unreachable(error: SQLAlchemyError) -> bool:
    if isinstance(error, (OperationalError, InterfaceError, PoolTimeoutError)):
        return True
    return isinstance(error, DBAPIError) and error.connection_invalidated


def _describe(event) -> str:
    if isinstance(event, FillEvent):
        return f"fill {event.fill_id}"
    return f"position {event.symbol} of account {event.broker_account_id}"
