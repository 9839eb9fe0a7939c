"""Column types that behave the same on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
from decimal import ROUND_HALF_UP, Decimal

from sqlalchemy import DateTime, Numeric, String
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator):
    """A timezone-aware UTC timestamp.

    SQLite keeps no offset, so values are normalised to UTC on the way in and marked UTC on the way out.
    A naive datetime is rejected, because guessing its zone is how off-by-hours bugs start.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: pass a timezone-aware UTC value")
        value = value.astimezone(dt.timezone.utc)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.timezone.utc)
        return value.astimezone(dt.timezone.utc)


# Decimal places that an ExactDecimal column keeps on PostgreSQL.
EXACT_PLACES = 10


def round_to_column(value: Decimal) -> Decimal:
    """Round a Decimal to what an ExactDecimal column keeps on PostgreSQL, half away from zero as it rounds.

    Code that keeps a value in memory across several updates rounds it with this after each one, so it ends
    where the same updates written and read back one at a time would, on both databases.
    """
    return value.quantize(Decimal(1).scaleb(-EXACT_PLACES), rounding=ROUND_HALF_UP)


class ExactDecimal(TypeDecorator):
    """A Decimal stored exactly: NUMERIC on PostgreSQL, text on SQLite (whose numbers are binary floats)."""

    impl = Numeric(24, EXACT_PLACES)
    cache_ok = True

    def load_dialect_impl(self, dialect):
        if dialect.name == "sqlite":
            return dialect.type_descriptor(String(40))
        return dialect.type_descriptor(Numeric(24, EXACT_PLACES))

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        value = Decimal(value)
        if dialect.name == "sqlite":
            return str(value)
        return value

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        return _without_trailing_zeros(Decimal(value))


def _without_trailing_zeros(value: Decimal) -> Decimal:
    # NUMERIC(24, 10) returns 21500.0000000000; both dialects should return the same Decimal text.
    if value == value.to_integral_value():
        return value.quantize(Decimal(1))
    return value.normalize()


class DecimalText(TypeDecorator):
    """A Decimal of any scale stored as its text on both databases.

    For running totals whose averages can carry 28 significant digits (Python's default decimal context):
    NUMERIC(24, 10) would round them on PostgreSQL, and a total rounded on every update would drift from
    the same sum recomputed from the rows.
    """

    impl = String(64)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        return str(Decimal(value))

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        return Decimal(value)
