"""A PostgreSQL session advisory lock, so a daemon that must run once runs on one replica only.

SQLite means one machine and one process, so there the lock is always granted.
"""

from __future__ import annotations

import hashlib
import logging

from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

logger = logging.getLogger(__name__)


def lock_key(name: str) -> int:
    """Map a lock name to the signed 64-bit key PostgreSQL advisory locks take."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


class AdvisoryLock:
    """Hold a session-level advisory lock on a dedicated connection; losing the connection loses the lock."""

    def __init__(self, engine: Engine, name: str):
        self.engine = engine
        self.name = name
        self.key = lock_key(name)
        self._connection: Connection | None = None

    @property
    def is_postgresql(self) -> bool:
        return self.engine.dialect.name == "postgresql"

    @property
    def held(self) -> bool:
        return not self.is_postgresql or self._connection is not None

    def acquire(self) -> bool:
        """Take the lock if free, or confirm it is still held; return whether this process holds it."""
        if not self.is_postgresql:
            return True
        if self._connection is not None:
            return self._still_held()

        try:
            connection = self.engine.connect()
        except SQLAlchemyError as error:
            logger.warning("advisory lock %s: cannot connect to the database (%s)", self.name, type(error).__name__)
            return False

        try:
            granted = bool(connection.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": self.key}).scalar())
            connection.commit()
        except SQLAlchemyError:
            logger.exception("advisory lock %s: pg_try_advisory_lock failed", self.name)
            connection.close()
            return False

        if not granted:
            connection.close()
            return False
        self._connection = connection
        logger.info("advisory lock %s acquired; this replica runs the daemon", self.name)
        return True

    def _still_held(self) -> bool:
        # Ask pg_locks rather than running a bare query: SQLAlchemy may have replaced a dropped connection with a
        # new one, which does not hold the lock. A bigint key is stored as classid (high half) and objid (low half).
        unsigned = self.key & 0xFFFFFFFFFFFFFFFF
        try:
            held = self._connection.execute(
                text(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = :high AND objid = :low"
                    " AND objsubid = 1 AND granted AND pid = pg_backend_pid()"
                ),
                {"high": unsigned >> 32, "low": unsigned & 0xFFFFFFFF},
            ).scalar()
            self._connection.commit()
        except SQLAlchemyError:
            held = 0

        if not held:
            logger.warning("advisory lock %s: its database connection was lost, and the lock with it", self.name)
            self._discard()
            return False
        return True

    def release(self) -> None:
        if self._connection is None:
            return
        try:
            self._connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": self.key})
            self._connection.commit()
        except SQLAlchemyError:
            logger.warning("advisory lock %s: unlock failed; closing the connection releases it", self.name)
        self._discard()

    def _discard(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            try:
                connection.close()
            except SQLAlchemyError:
                logger.debug("advisory lock %s: closing a broken connection raised", self.name, exc_info=True)
