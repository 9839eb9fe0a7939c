"""Rate-limited logging for errors that repeat on every scrape."""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable, Hashable


class RateLimitedLog:
    """Log a message at most once per interval per key, and say how many repeats were left out.

    A platform with one bad field is scraped every 15 seconds or so; one line per key per interval keeps the log
    readable while the error counters carry the full count.
    """

    def __init__(self, logger: logging.Logger, interval_seconds: float = 300.0, clock: Callable[[], float] = time.monotonic):
        self._logger = logger
        self._interval = interval_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._last_logged: dict[Hashable, float] = {}
        self._suppressed: dict[Hashable, int] = {}

    def warning(self, key: Hashable, message: str, *args) -> None:
        now = self._clock()

        with self._lock:
            last = self._last_logged.get(key)
            if last is not None and now - last < self._interval:
                self._suppressed[key] = self._suppressed.get(key, 0) + 1
                return
            self._last_logged[key] = now
            suppressed = self._suppressed.pop(key, 0)

        if suppressed:
            self._logger.warning(message + " (%d repeats not logged)", *args, suppressed)
        else:
            self._logger.warning(message, *args)
