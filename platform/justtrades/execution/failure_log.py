"""Logging of an operation that fails again and again during an outage, with a count instead of a flood."""

from __future__ import annotations

import logging
import time
from typing import Callable

# A database error's text can run to many lines (the SQL and its parameters), so a summary line keeps the start.
_ERROR_EXCERPT_CHARS = 200


class RepeatedFailureLog:
    """Log the first failure of an outage with its traceback, then one summary line per interval, then recovery.

    Failures after the first are counted. Once `interval_seconds` have passed since the last line, the next
    failure logs one warning with the count and the latest error. The first success after a failure logs one line
    with the outage's total count and length. So a poll every second during a long outage logs about one line a
    minute instead of a traceback a second.
    """

    def __init__(self, logger: logging.Logger, operation: str, interval_seconds: float = 60.0,
                 clock: Callable[[], float] = time.monotonic):
        if interval_seconds <= 0:
            raise ValueError(f"interval_seconds={interval_seconds} must be positive; use a value such as 60")

        self._logger = logger
        self._operation = operation
        self._interval = interval_seconds
        self._clock = clock
        self._outage_started: float | None = None
        self._last_line_at = 0.0
        self._failures = 0
        self._unreported = 0

    @property
    def failing(self) -> bool:
        return self._outage_started is not None

    def failed(self, error: BaseException) -> None:
        now = self._clock()
        if self._outage_started is None:
            self._outage_started = self._last_line_at = now
            self._failures = 1
            self._unreported = 0
            self._logger.error("%s failed; retrying, repeats are counted and logged once per %.0f s",
                               self._operation, self._interval, exc_info=error)
            return

        self._failures += 1
        self._unreported += 1
        if now - self._last_line_at < self._interval:
            return
        self._logger.warning("%s still failing: %d more failure(s) in the last %.0f s (%d since %.0f s ago); latest: %s",
                             self._operation, self._unreported, now - self._last_line_at, self._failures,
                             now - self._outage_started, _excerpt(error))
        self._last_line_at = now
        self._unreported = 0

    def succeeded(self) -> None:
        if self._outage_started is None:
            return
        self._logger.info("%s works again after %d failure(s) over %.0f s", self._operation, self._failures,
                             self._clock() - self._outage_started)
        self._outage_started = None
        self._failures = self._unreported = 0


def _excerpt(error: BaseException) -> str:
    text = f"{type(error).__name__}: {error}".replace("\n", " ")
    if len(text) > _ERROR_EXCERPT_CHARS:
        return text[:_ERROR_EXCERPT_CHARS] + "..."
    return text
