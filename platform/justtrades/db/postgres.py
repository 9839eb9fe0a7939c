"""Timeouts of PostgreSQL connections, so a hung server (not only a stopped one) shows as an outage within a bound.

A stopped server refuses connections at once. A hung one (a stopped process, a network path that drops packets
without a reset, a lock wait that never ends) accepts TCP and then never replies, and without a bound every
thread that touches it waits forever. Three layers bound it:

1. libpq settings: `connect_timeout` bounds the whole connection handshake, and TCP keepalives detect a dead
   peer under an idle connection.
2. Server settings sent at connection start: `statement_timeout` and `lock_timeout`, so a slow statement or a
   lock wait ends with an error while the server is alive.
3. A reply deadline enforced on this side: a watchdog thread shuts down the socket of a call (statement, commit,
   rollback, ping) that got no reply in time. The waiting thread then gets psycopg's "server closed the
   connection" error, and SQLAlchemy invalidates the connection. This is the only layer that ends a wait on a
   server whose kernel still acknowledges TCP while the server process does not reply.

When a deadline expires, the engine treats the server as hung: pre-pings fail at once and only one thread at a
time tries a new connection (the probe) while the others get an OperationalError at once. The first probe that
connects ends that state. Webhook ingestion and the health check run with a short deadline (`urgent_calls`),
because TradingView drops a request after 3 seconds. Other work gets a deadline longer than the statement timeout.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import logging
import os
import socket
import threading
import time
from typing import Iterator

from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine

from ..config import ConfigError, _env_float, _env_int

logger = logging.getLogger(__name__)

# psycopg and libpq round connect_timeout down to whole seconds and treat anything below 2 as 2.
MIN_CONNECT_TIMEOUT_SECONDS = 2
# How long the watchdog thread stays alive without calls to watch before it exits (a new call starts it again).
_WATCHDOG_IDLE_SECONDS = 30.0
_WATCHDOG_MAX_SLEEP_SECONDS = 1.0

_urgent = contextvars.ContextVar("justtrades_urgent_database_calls", default=False)


@dataclasses.dataclass(frozen=True)
class PostgresTimeouts:
    """Timeouts of the platform's PostgreSQL connections; 0 switches a server-side timeout off."""

    connect_seconds: int = 3  # JT_DB_CONNECT_TIMEOUT_SECONDS
    statement_seconds: float = 30.0  # JT_DB_STATEMENT_TIMEOUT_SECONDS
    lock_seconds: float = 10.0  # JT_DB_LOCK_TIMEOUT_SECONDS
    reply_seconds: float = 60.0  # JT_DB_REPLY_TIMEOUT_SECONDS, must exceed the statement timeout
    urgent_reply_seconds: float = 1.5  # JT_DB_URGENT_REPLY_TIMEOUT_SECONDS: webhook ingestion, health check
    keepalives_idle_seconds: int = 30  # JT_DB_KEEPALIVES_IDLE_SECONDS
    keepalives_interval_seconds: int = 10  # JT_DB_KEEPALIVES_INTERVAL_SECONDS
    keepalives_count: int = 3  # JT_DB_KEEPALIVES_COUNT
    pool_timeout_seconds: float = 10.0  # JT_DB_POOL_TIMEOUT_SECONDS

    @classmethod
    def from_environ(cls, environ=None) -> "PostgresTimeouts":
        environ = os.environ if environ is None else environ
        defaults = cls()
        timeouts = cls(
            connect_seconds=_env_int(environ, "JT_DB_CONNECT_TIMEOUT_SECONDS", defaults.connect_seconds,
                                     minimum=MIN_CONNECT_TIMEOUT_SECONDS),
            statement_seconds=_env_float(environ, "JT_DB_STATEMENT_TIMEOUT_SECONDS", defaults.statement_seconds),
            lock_seconds=_env_float(environ, "JT_DB_LOCK_TIMEOUT_SECONDS", defaults.lock_seconds),
            reply_seconds=_env_float(environ, "JT_DB_REPLY_TIMEOUT_SECONDS", defaults.reply_seconds),
            urgent_reply_seconds=_env_float(environ, "JT_DB_URGENT_REPLY_TIMEOUT_SECONDS",
                                            defaults.urgent_reply_seconds),
            keepalives_idle_seconds=_env_int(environ, "JT_DB_KEEPALIVES_IDLE_SECONDS",
                                             defaults.keepalives_idle_seconds, minimum=1),
            keepalives_interval_seconds=_env_int(environ, "JT_DB_KEEPALIVES_INTERVAL_SECONDS",
                                                 defaults.keepalives_interval_seconds, minimum=1),
            keepalives_count=_env_int(environ, "JT_DB_KEEPALIVES_COUNT", defaults.keepalives_count, minimum=1),
            pool_timeout_seconds=_env_float(environ, "JT_DB_POOL_TIMEOUT_SECONDS", defaults.pool_timeout_seconds),
        )
        timeouts.check()
        return timeouts

    def check(self) -> None:
        """Raise ConfigError when the reply deadlines would cut statements the server still allows."""
        if self.reply_seconds <= 0 or self.urgent_reply_seconds <= 0:
            raise ConfigError(
                f"JT_DB_REPLY_TIMEOUT_SECONDS={self.reply_seconds:g} and JT_DB_URGENT_REPLY_TIMEOUT_SECONDS="
                f"{self.urgent_reply_seconds:g} must both be above 0; a hung database would block threads for ever"
            )
        if self.statement_seconds and self.reply_seconds <= self.statement_seconds:
            raise ConfigError(
                f"JT_DB_REPLY_TIMEOUT_SECONDS={self.reply_seconds:g} is not above JT_DB_STATEMENT_TIMEOUT_SECONDS="
                f"{self.statement_seconds:g}; set it higher, or statements the server allows are cut on this side"
            )

    def connect_args(self) -> dict:
        """Return the psycopg connection parameters: libpq timeouts and the server-side timeouts."""
        server_options = [
            f"-c statement_timeout={int(self.statement_seconds * 1000)}",
            f"-c lock_timeout={int(self.lock_seconds * 1000)}",
        ]
        return {
            "connect_timeout": self.connect_seconds,
            "keepalives": 1,
            "keepalives_idle": self.keepalives_idle_seconds,
            "keepalives_interval": self.keepalives_interval_seconds,
            "keepalives_count": self.keepalives_count,
            # Startup options rather than SET after connecting: no extra round trip, and RESET returns to them.
            "options": " ".join(server_options),
        }


@contextlib.contextmanager
def urgent_calls() -> Iterator[None]:
    """Bound every PostgreSQL call in this block by the urgent reply deadline instead of the normal one.

    For work whose caller gives up within seconds (a webhook sender, a load balancer's health check). There an
    early error that leads to a fallback (the spool, a "database down" response) beats a late success.
    """
    token = _urgent.set(True)
    try:
        yield
    finally:
        _urgent.reset(token)


@contextlib.contextmanager
def lifted_timeouts(connection: Connection) -> Iterator[Connection]:
    """Lift statement_timeout, lock_timeout and the reply deadline on this connection for a long legitimate job.

    For migrations and seeding. It uses SET, not SET LOCAL, so the block may span transactions. The settings are
    reset at the end, and a connection whose reset fails is invalidated, so no other pool user gets them.
    """
    if connection.dialect.name != "postgresql":
        yield connection
        return

    raw = connection.connection.dbapi_connection
    connection.exec_driver_sql("SET statement_timeout = 0")
    connection.exec_driver_sql("SET lock_timeout = 0")
    _WATCHDOG.exempt(raw)
    try:
        yield connection
    finally:
        _WATCHDOG.unexempt(raw)
        _reset_timeouts(connection)


def _reset_timeouts(connection: Connection) -> None:
    # Inside the caller's transaction the reset commits or rolls back with the SETs. Outside one it must be
    # committed here, because closing the connection would roll it back and leave the lifted values on it.
    own_transaction = not connection.in_transaction()
    try:
        connection.exec_driver_sql("RESET statement_timeout")
        connection.exec_driver_sql("RESET lock_timeout")
        if own_transaction:
            connection.commit()
    except Exception as error:
        # Typically a failed transaction: discarding the connection is the only way to be sure of its settings.
        logger.info("could not reset the lifted timeouts of a PostgreSQL connection (%s); discarding it",
                    type(error).__name__)
        connection.invalidate()


def install(engine: Engine, timeouts: PostgresTimeouts) -> None:
    """Bound every call of the engine's connections by a reply deadline and add the hung-server state."""
    server = HungServer(f"{engine.url.host or 'localhost'}:{engine.url.port or 5432}/{engine.url.database}")
    dialect = engine.dialect

    def deadline_seconds() -> float:
        return timeouts.urgent_reply_seconds if _urgent.get() else timeouts.reply_seconds

    def bounded(call_name: str, call):
        def wrapper(dbapi_connection_or_cursor, *args, **kwargs):
            dbapi_connection = _dbapi_connection_of(dbapi_connection_or_cursor)
            with _WATCHDOG.watching(dbapi_connection, deadline_seconds(), call_name, server):
                return call(dbapi_connection_or_cursor, *args, **kwargs)

        return wrapper

    for name in ("do_execute", "do_executemany", "do_execute_no_params", "do_commit", "do_rollback"):
        setattr(dialect, name, bounded(name, getattr(dialect, name)))

    ping = bounded("ping", dialect.do_ping)

    def do_ping(dbapi_connection) -> bool:
        # A hung server would make every pre-ping wait for its deadline; failing it sends the caller to connect,
        # where the probe rule below applies.
        if server.hung:
            return False
        return ping(dbapi_connection)

    dialect.do_ping = do_ping

    @event.listens_for(engine, "do_connect")
    def _connect(_dialect, _record, cargs, cparams):
        if _someone_is_waiting():
            # The waiting client gives up within seconds; libpq accepts no shorter connect_timeout than this.
            cparams = {**cparams, "connect_timeout": MIN_CONNECT_TIMEOUT_SECONDS}
        with server.connect_attempt(cparams.get("connect_timeout", 0)) as hung_since:
            connection = dialect.loaded_dbapi.connect(*cargs, **cparams)
            if hung_since is not None:
                _WATCHDOG.cut_lost_replies(connection, server, hung_since)
            return connection


def _someone_is_waiting() -> bool:
    """Tell whether a client waits on this thread: an urgent block, or an HTTP request being served."""
    if _urgent.get():
        return True
    try:
        from flask import has_request_context
    except ImportError:
        return False
    return has_request_context()


def _dbapi_connection_of(connection_or_cursor):
    # do_execute* get a psycopg cursor; do_commit, do_rollback and do_ping the pool's proxy or the psycopg
    # connection. The proxy goes first: it forwards unknown attributes (pgconn) but has an `info` of its own.
    proxied = getattr(connection_or_cursor, "dbapi_connection", None)
    if proxied is not None:
        return proxied
    if getattr(connection_or_cursor, "pgconn", None) is not None:
        return connection_or_cursor
    return connection_or_cursor.connection


class HungServer:
    """Whether one PostgreSQL server is considered hung, and the single-flight probe that ends that state.

    While the server is hung, one thread at a time tries a real connection (the probe) and the others fail at
    once. Threads serving an HTTP request and urgent calls leave the probes to background threads (workers, the
    spool replayer), which retry every second or so. They probe themselves only when no probe has started for
    URGENT_PROBE_AFTER_SECONDS, so a process without background threads still notices the recovery.
    """

    URGENT_PROBE_AFTER_SECONDS = 10.0

    def __init__(self, name: str):
        self.name = name
        self._lock = threading.Lock()
        self._hung_since: float | None = None
        self._probing = False
        self._last_probe_at = 0.0

    @property
    def hung(self) -> bool:
        return self._hung_since is not None

    def mark_hung(self, call_name: str, seconds: float, backend_pid: int | None) -> None:
        with self._lock:
            first = self._hung_since is None
            if first:
                self._hung_since = self._last_probe_at = time.monotonic()
        if first:
            backend = f" (backend pid {backend_pid})" if backend_pid else ""
            logger.warning("PostgreSQL %s: no reply to %s within %.1f s%s; treating the server as hung until a new "
                           "connection succeeds", self.name, call_name, seconds, backend)

    @contextlib.contextmanager
    def connect_attempt(self, timeout_seconds: float) -> Iterator[float | None]:
        """Let a connection attempt through unless the server is hung and this caller may not probe now.

        Yields the time.monotonic() at which the server was found hung when this attempt is the probe, else None.
        """
        import psycopg

        hung_since = self._hung_since
        probing = self._start_probe_or_raise()
        try:
            yield hung_since if probing else None
        except BaseException as error:
            if probing:
                self._end_probe(recovered=False)
            elif isinstance(error, psycopg.errors.ConnectionTimeout):
                # A server that accepts TCP but does not finish the handshake in time is hung, like one that
                # does not reply to a call (a refused connection fails at once and needs no such state).
                self.mark_hung("a new connection", timeout_seconds, None)
            raise
        if probing:
            self._end_probe(recovered=True)

    def _start_probe_or_raise(self) -> bool:
        import psycopg

        with self._lock:
            if self._hung_since is None:
                return False
            now = time.monotonic()
            waited_for_probe = now - self._last_probe_at >= self.URGENT_PROBE_AFTER_SECONDS
            if self._probing or (_someone_is_waiting() and not waited_for_probe):
                raise psycopg.OperationalError(
                    f"PostgreSQL {self.name} has been treated as hung for {now - self._hung_since:.1f} s (a call got "
                    "no reply within its deadline); another thread probes it with a new connection; retry later"
                )
            self._probing = True
            self._last_probe_at = now
            return True

    def _end_probe(self, *, recovered: bool) -> None:
        with self._lock:
            self._probing = False
            hung_since = self._hung_since
            if recovered:
                self._hung_since = None
        if recovered and hung_since is not None:
            logger.info("PostgreSQL %s: a new connection succeeded after %.1f s; the server replies again",
                        self.name, time.monotonic() - hung_since)


@dataclasses.dataclass
class _WatchedCall:
    deadline: float
    seconds: float
    name: str
    fd: int  # a duplicate of the connection's socket descriptor, so a recycled descriptor number is never hit
    server: HungServer
    backend_pid: int | None
    started: float


class _ReplyWatchdog:
    """Shuts down the socket of every watched call that outlives its deadline, from one background thread."""

    def __init__(self):
        self._condition = threading.Condition()
        self._calls: dict[int, _WatchedCall] = {}
        self._exempt: set[int] = set()
        self._thread: threading.Thread | None = None
        self._next_id = 0
        self._wake_at = 0.0  # time.monotonic() of the thread's planned wake-up; 0 while it is awake

    def exempt(self, dbapi_connection) -> None:
        with self._condition:
            self._exempt.add(id(dbapi_connection))

    def unexempt(self, dbapi_connection) -> None:
        with self._condition:
            self._exempt.discard(id(dbapi_connection))

    @contextlib.contextmanager
    def watching(self, dbapi_connection, seconds: float, name: str, server: HungServer) -> Iterator[None]:
        call_id = self._watch(dbapi_connection, seconds, name, server)
        try:
            yield
        finally:
            if call_id is not None:
                self._unwatch(call_id)

    def _watch(self, dbapi_connection, seconds: float, name: str, server: HungServer) -> int | None:
        if id(dbapi_connection) in self._exempt:
            return None
        try:
            fd = os.dup(dbapi_connection.pgconn.socket)
        except Exception:
            # A closed or broken connection: the call fails on its own, without waiting for the server.
            return None

        now = time.monotonic()
        call = _WatchedCall(now + seconds, seconds, name, fd, server, dbapi_connection.info.backend_pid, now)
        with self._condition:
            self._next_id += 1
            call_id = self._next_id
            self._calls[call_id] = call
            self._ensure_thread()
            # Waking the thread costs a context switch per call; it is needed only before its planned wake-up.
            if call.deadline < self._wake_at:
                self._condition.notify()
        return call_id

    def _unwatch(self, call_id: int) -> None:
        with self._condition:
            call = self._calls.pop(call_id, None)
        if call is not None:
            os.close(call.fd)

    def cut_lost_replies(self, probe_connection, server: HungServer, hung_since: float) -> None:
        """Cut the calls that started before the hang and whose backend is no longer working on them.

        A frozen network path may have dropped a request or its reply, and such a call would wait for its full
        deadline after the server is back. PostgreSQL shows a backend that works on a statement as `active`; one
        that is idle, or gone, owes its client nothing more.
        """
        with self._condition:
            suspects = {call_id: call for call_id, call in self._calls.items()
                        if call.server is server and call.started < hung_since and call.backend_pid is not None}
        if not suspects:
            return

        pids = sorted({call.backend_pid for call in suspects.values()})
        with self.watching(probe_connection, MIN_CONNECT_TIMEOUT_SECONDS, "lost-reply check", server):
            rows = probe_connection.execute(
                "SELECT pid FROM pg_stat_activity WHERE pid = ANY(%s) AND state = 'active'", (pids,)
            ).fetchall()
            probe_connection.rollback()
        working = {row[0] for row in rows}

        with self._condition:
            lost = [self._calls.pop(call_id) for call_id, call in suspects.items()
                    if call.backend_pid not in working and call_id in self._calls]
        for call in lost:
            logger.warning("PostgreSQL %s: cutting %s on backend pid %s, waiting %.1f s: the backend is not working "
                           "on it, so its reply was lost", server.name, call.name, call.backend_pid,
                           time.monotonic() - call.started)
            self._shut_down(call)

    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name="postgres-reply-watchdog", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        idle_since = time.monotonic()
        while True:
            with self._condition:
                now = time.monotonic()
                if not self._calls and now - idle_since > _WATCHDOG_IDLE_SECONDS:
                    self._thread = None
                    return
                expired = [call_id for call_id, call in self._calls.items() if call.deadline <= now]
                calls = [self._calls.pop(call_id) for call_id in expired]
                next_deadline = min((call.deadline for call in self._calls.values()), default=now + 1)
                if self._calls or calls:
                    idle_since = now
                if not calls:
                    sleep_seconds = min(max(next_deadline - now, 0.01), _WATCHDOG_MAX_SLEEP_SECONDS)
                    self._wake_at = now + sleep_seconds
                    self._condition.wait(sleep_seconds)
                    self._wake_at = 0.0
            for call in calls:
                self._expire(call)

    @classmethod
    def _expire(cls, call: _WatchedCall) -> None:
        call.server.mark_hung(call.name, call.seconds, call.backend_pid)
        cls._shut_down(call)

    @staticmethod
    def _shut_down(call: _WatchedCall) -> None:
        sock = socket.socket(fileno=call.fd)
        try:
            # Shutdown wakes the thread blocked in poll() on the same socket; close alone would not.
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # the connection ended on its own meanwhile
        finally:
            sock.close()


_WATCHDOG = _ReplyWatchdog()
