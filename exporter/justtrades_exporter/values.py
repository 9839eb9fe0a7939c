"""Conversion of JSON values into sample values, accepting what real platforms send.

Each function returns a float or raises `FieldValueError` with the reason; it never substitutes a default, because
a made-up 0 would look like a real reading to an alert rule.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

_TRUE_WORDS = frozenset({"true", "yes", "on", "1"})
_FALSE_WORDS = frozenset({"false", "no", "off", "0"})


class FieldValueError(ValueError):
    """A JSON value is null or of a type or format the metric cannot be built from."""


def describe(raw: Any) -> str:
    """Name a JSON value for an error message, shortened so a log line stays one line."""
    if raw is None:
        return "null"

    text = repr(raw)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{type(raw).__name__} {text}"


def to_number(raw: Any) -> float:
    """Read a JSON number, or a number sent as a string ("12.5"); booleans and non-finite values are rejected."""
    if isinstance(raw, bool) or raw is None:
        raise FieldValueError(f"expected a number, got {describe(raw)}")

    if isinstance(raw, (int, float)):
        value = float(raw)
    elif isinstance(raw, str):
        try:
            value = float(raw.strip())
        except ValueError:
            raise FieldValueError(f"expected a number, got {describe(raw)}") from None
    else:
        raise FieldValueError(f"expected a number, got {describe(raw)}")

    if not math.isfinite(value):
        raise FieldValueError(f"expected a finite number, got {describe(raw)}")
    return value


def to_boolean(raw: Any) -> float:
    """Read a JSON boolean as 1 or 0; the numbers 0 and 1 and the strings "true"/"false" are accepted too."""
    if isinstance(raw, bool):
        return 1.0 if raw else 0.0

    if isinstance(raw, (int, float)) and raw in (0, 1):
        return float(raw)

    if isinstance(raw, str):
        word = raw.strip().lower()
        if word in _TRUE_WORDS:
            return 1.0
        if word in _FALSE_WORDS:
            return 0.0

    raise FieldValueError(f"expected a boolean, got {describe(raw)}")


def to_timestamp(raw: Any) -> float:
    """Read an ISO 8601 time with `Z` or a UTC offset, or Unix seconds, as Unix seconds.

    A time without an offset is rejected: the platform's clock zone is unknown here, and a guess could be hours off.
    """
    if isinstance(raw, (int, float)) and not isinstance(raw, bool):
        return to_number(raw)

    if not isinstance(raw, str):
        raise FieldValueError(f"expected an ISO 8601 time, got {describe(raw)}")

    text = raw.strip()
    try:
        # Python 3.11 reads the `Z` suffix and the other ISO 8601 forms the platforms write.
        parsed = dt.datetime.fromisoformat(text)
    except ValueError:
        return _numeric_string_timestamp(raw)

    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise FieldValueError(f"time {raw!r} has no UTC offset; the platform should send `Z` or `+00:00`")
    return parsed.timestamp()


def _numeric_string_timestamp(raw: str) -> float:
    try:
        return to_number(raw)
    except FieldValueError:
        raise FieldValueError(f"expected an ISO 8601 time, got {describe(raw)}") from None
