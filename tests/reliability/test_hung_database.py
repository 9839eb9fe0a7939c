"""A hung PostgreSQL (it accepts TCP and never replies) is handled like a stopped one: webhooks are spooled.

The hang is made by a TCP proxy on 127.0.0.1 in front of PostgreSQL that keeps accepting connections and reading
bytes but stops forwarding them (ChaosProxy's blackhole mode). The test uses a proxy rather than SIGSTOP of the
server's processes for three reasons. The proxy freezes only the platform's connections, so the test's own checks
still reach the database. It freezes new connections too, where a stopped postmaster could race with a backend
it forked a moment before. And it heals at once, without a server catching up on a backlog of abandoned
statements. From the platform's side both look the same: the kernel acknowledges every byte and no reply comes.
"""

from __future__ import annotations

import time

import psycopg
import pytest
import requests
from sqlalchemy import event, text
from sqlalchemy.engine import make_url

from justtrades.config import ConfigError
from justtrades.db.engine import create_database_engine, lifted_timeouts, urgent_calls
from justtrades.db.migrate import downgrade, upgrade
from justtrades.db.postgres import PostgresTimeouts
from justtrades.webhooks.spool import is_database_unavailable

from ..conftest import POSTGRES_ADMIN_URL, require_component
from .chaos_proxy import ChaosProxy
from .support import metric_samples, platform_process, report_result, wait_until
from .test_database_outage import Sender, _check_database

HANG_SECONDS = 20
# Bounds of the scenario: far below "no response at all" (TradingView gives up after 3 s, the sender after 10 s),
# with room for a loaded two-core machine. The urgent reply deadline is 1.5 s and connect_timeout 3 s.
DELIVERY_ANSWER_BOUND_SECONDS = 6.0
HEALTH_ANSWER_BOUND_SECONDS = 8.0


def _timeouts(**changes) -> PostgresTimeouts:
    return PostgresTimeouts(**{"connect_seconds": 2, "reply_seconds": 5.0, "urgent_reply_seconds": 1.0, **changes})


def _raised(call) -> BaseException:
    try:
        call()
    except Exception as error:  # the test inspects whatever the engine raised
        return error
    pytest.fail("the call returned instead of raising", pytrace=False)


# --- the engine against the shared server -----------------------------------------------------------------------


def test_statement_timeout_counts_as_outage(postgres_database):
    engine = create_database_engine(postgres_database, _timeouts(statement_seconds=0.2))
    try:
        with engine.connect() as connection:
            assert connection.execute(text("SHOW statement_timeout")).scalar() == "200ms"
            error = _raised(lambda: connection.execute(text("SELECT pg_sleep(3)")))
    finally:
        engine.dispose()

    assert isinstance(error.orig, psycopg.errors.QueryCanceled)
    assert is_database_unavailable(error)


def test_lock_timeout_counts_as_outage(postgres_database):
    engine = create_database_engine(postgres_database, _timeouts(lock_seconds=0.2))
    holder = psycopg.connect(postgres_database, autocommit=True, connect_timeout=5)
    try:
        holder.execute("SELECT pg_advisory_lock(424242)")
        with engine.connect() as connection:
            assert connection.execute(text("SHOW lock_timeout")).scalar() == "200ms"
            error = _raised(lambda: connection.execute(text("SELECT pg_advisory_lock(424242)")))
    finally:
        holder.close()
        engine.dispose()

    assert isinstance(error.orig, psycopg.errors.LockNotAvailable)
    assert is_database_unavailable(error)


def test_lifted_timeouts_allow_long_statements(postgres_database):
    engine = create_database_engine(postgres_database, _timeouts(statement_seconds=0.2, reply_seconds=0.5))
    try:
        with engine.connect() as connection:
            with lifted_timeouts(connection):
                assert connection.execute(text("SHOW statement_timeout")).scalar() == "0"
                assert connection.execute(text("SHOW lock_timeout")).scalar() == "0"
                # Longer than both the server's statement timeout and this side's reply deadline.
                connection.execute(text("SELECT pg_sleep(1)"))
            assert connection.execute(text("SHOW statement_timeout")).scalar() == "200ms"

        # The reset was committed: the pooled connection does not keep the lifted values.
        with engine.connect() as connection:
            assert connection.execute(text("SHOW statement_timeout")).scalar() == "200ms"
            assert connection.execute(text("SHOW lock_timeout")).scalar() == "10s"
    finally:
        engine.dispose()


@pytest.fixture
def empty_postgres_database():
    """A new, empty database on the shared server, dropped at the end."""
    name = f"jt_hang_{int(time.time() * 1000) % 10**9}"
    try:
        admin = psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError:
        require_component(False, "PostgreSQL on 127.0.0.1:5432")
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    yield POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True, connect_timeout=3) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_migrations_run_without_statement_timeout(empty_postgres_database):
    engine = create_database_engine(empty_postgres_database, _timeouts(statement_seconds=0.2))
    seen: list[tuple[str, str]] = []

    @event.listens_for(engine, "after_cursor_execute")
    def _record_timeout(_connection, cursor, statement, *_args):
        if statement.lstrip().upper().startswith(("CREATE TABLE", "DROP TABLE")):
            value = cursor.connection.execute("SHOW statement_timeout").fetchone()[0]
            seen.append((statement.split("(")[0].strip(), value))

    try:
        upgrade(engine)
        downgrade(engine, "base")
        with engine.connect() as connection:
            after = connection.execute(text("SHOW statement_timeout")).scalar()
    finally:
        engine.dispose()

    assert any(statement.startswith("CREATE TABLE") for statement, _ in seen)
    assert any(statement.startswith("DROP TABLE") for statement, _ in seen)
    assert {value for _, value in seen} == {"0"}
    assert after == "200ms"


def test_hung_connection_is_cut_and_recovers(postgres_database):
    server_url = make_url(postgres_database)
    with ChaosProxy(server_url.port or 5432, server_url.host or "127.0.0.1") as proxy:
        url = server_url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
        engine = create_database_engine(url, _timeouts())
        try:
            with engine.connect() as connection:
                assert connection.execute(text("SELECT 1")).scalar() == 1

            # 1. A statement on a frozen connection ends at the reply deadline, as an outage.
            with engine.connect() as connection:
                proxy.set_mode("blackhole")
                started = time.monotonic()
                error = _raised(lambda: connection.execute(text("SELECT 1")))
                cut_after = time.monotonic() - started
            assert is_database_unavailable(error)
            assert error.connection_invalidated

            # 2. Urgent callers now fail at once instead of waiting for a connection through the frozen path.
            started = time.monotonic()
            with urgent_calls():
                urgent_error = _raised(engine.connect)
            urgent_failed_after = time.monotonic() - started
            assert is_database_unavailable(urgent_error)

            # 3. Once the path heals, the next (background) connection probes and the engine works again.
            proxy.set_mode("pass")
            with engine.connect() as connection:
                assert connection.execute(text("SELECT 1")).scalar() == 1
            with urgent_calls(), engine.connect() as connection:
                assert connection.execute(text("SELECT 1")).scalar() == 1
        finally:
            engine.dispose()

    assert 5.0 <= cut_after < 5.0 + 3.0, cut_after
    assert urgent_failed_after < 1.0, urgent_failed_after


# --- settings ---------------------------------------------------------------------------------------------------


def test_reply_timeout_must_exceed_statement_timeout():
    error = _raised(lambda: PostgresTimeouts.from_environ({
        "JT_DB_STATEMENT_TIMEOUT_SECONDS": "30", "JT_DB_REPLY_TIMEOUT_SECONDS": "20",
    }))
    assert isinstance(error, ConfigError)
    assert "JT_DB_REPLY_TIMEOUT_SECONDS=20" in str(error)
    assert "JT_DB_STATEMENT_TIMEOUT_SECONDS=30" in str(error)


def test_connect_timeout_below_libpq_minimum_rejected():
    error = _raised(lambda: PostgresTimeouts.from_environ({"JT_DB_CONNECT_TIMEOUT_SECONDS": "1"}))
    assert isinstance(error, ConfigError)
    assert "JT_DB_CONNECT_TIMEOUT_SECONDS=1" in str(error)


def test_settings_from_environment():
    timeouts = PostgresTimeouts.from_environ({
        "JT_DB_CONNECT_TIMEOUT_SECONDS": "4", "JT_DB_STATEMENT_TIMEOUT_SECONDS": "0", "JT_DB_LOCK_TIMEOUT_SECONDS": "2.5",
        "JT_DB_KEEPALIVES_IDLE_SECONDS": "20", "JT_DB_POOL_TIMEOUT_SECONDS": "3",
    })
    arguments = timeouts.connect_args()

    assert arguments["connect_timeout"] == 4
    assert arguments["keepalives_idle"] == 20
    assert arguments["options"] == "-c statement_timeout=0 -c lock_timeout=2500"
    assert timeouts.pool_timeout_seconds == 3


def test_sqlite_engine_ignores_postgres_settings(sqlite_url, monkeypatch):
    # Invalid PostgreSQL settings would raise if SQLite read them.
    monkeypatch.setenv("JT_DB_REPLY_TIMEOUT_SECONDS", "0")
    engine = create_database_engine(sqlite_url)
    try:
        with engine.connect() as connection:
            busy_timeout = connection.exec_driver_sql("PRAGMA busy_timeout").scalar()
    finally:
        engine.dispose()

    assert busy_timeout == 30000
    assert "do_ping" not in vars(engine.dialect)
    assert "do_execute" not in vars(engine.dialect)


# --- the platform on a private cluster, frozen under webhook traffic --------------------------------------------


def _timed_get(server, path: str) -> tuple[requests.Response, float]:
    started = time.monotonic()
    response = server.get(path)
    return response, time.monotonic() - started


def _queue_size(server) -> int | None:
    response = server.get("/api/broker-execution/status")
    return response.json()["broker_execution"]["queue_size"] if response.status_code == 200 else None


def test_hung_database_spools_and_replays_every_delivery(private_postgres, tmp_path):
    url = private_postgres.create_database("justtrades")
    with ChaosProxy(private_postgres.port) as proxy:
        proxied_url = url.replace(f":{private_postgres.port}/", f":{proxy.port}/")
        server = platform_process(tmp_path, database_url=proxied_url, env={
            "JT_WEBHOOK_SPOOL_RETRY_MAX_SECONDS": "1",
            "JT_JOB_LEASE_SECONDS": "10",
        }).start()
        sender = Sender(server.url)
        health_seconds: list[float] = []
        try:
            # 1. Normal traffic, then the path to the database freezes while alerts keep coming.
            sender.start()
            wait_until(lambda: sender.answered(200) >= 10, 30, "the platform accepted no traffic before the hang")
            proxy.set_mode("blackhole")
            frozen_at = time.monotonic()
            frozen_wall = time.time()

            def _reports_down():
                response, seconds = _timed_get(server, "/health/detailed")
                health_seconds.append(seconds)
                return response.json() if response.json()["database"]["ok"] is False else None

            hung_health = wait_until(_reports_down, 15, "/health/detailed never reported the hung database")
            detected_after = time.monotonic() - frozen_at
            wait_until(lambda: server.get("/api/webhook-spool").json()["depth"] > 0, 15,
                       "no delivery was spooled during the hang")
            hung_metrics = metric_samples(requests.get(server.url + "/metrics", timeout=10).text)
            while time.monotonic() - frozen_at < HANG_SECONDS:
                health_seconds.append(_timed_get(server, "/health/detailed")[1])
                time.sleep(1)
            hung_spool = server.get("/api/webhook-spool").json()

            # 2. The path heals; traffic goes on for a while, then stops.
            proxy.set_mode("pass")
            healed_at = time.monotonic()
            time.sleep(3)
            sender.stop()

            wait_until(lambda: server.get("/api/webhook-spool").json()["depth"] == 0, 90, "the spool never drained")
            drain_seconds = time.monotonic() - healed_at
            wait_until(lambda: _queue_size(server) == 0, 60, "the job queue never drained")
            after_health = server.get("/health/detailed").json()
            after_spool = server.get("/api/webhook-spool").json()
        finally:
            sender.stop()
            server.stop()

    sent = sender.sent
    during = [record for record in sent
              if frozen_wall <= record.sent_at.timestamp() < frozen_wall + HANG_SECONDS]
    spooled = [record for record in sent if record.status == 202]
    slowest_during = max((record.answered_at - record.sent_at).total_seconds() for record in during)

    # Every delivery got a 200 or 202, and those sent during the hang got their response within the bound.
    assert [(record.alert_id, record.status, record.error) for record in sent if record.status not in (200, 202)] == []
    assert len(during) >= HANG_SECONDS * 3
    assert {record.status for record in during} == {202}
    assert slowest_during < DELIVERY_ANSWER_BOUND_SECONDS, slowest_during

    # The hang showed as an outage, like a stopped database, and the health check stayed bounded.
    assert hung_health["database"]["ok"] is False
    assert hung_health["status"] == "degraded"
    assert hung_metrics[("justtrades_database_up", ())] == 0
    assert hung_metrics[("justtrades_webhook_spool_depth", ())] >= 1
    assert hung_spool["depth"] >= 1
    assert max(health_seconds) < HEALTH_ANSWER_BOUND_SECONDS, health_seconds
    assert after_health["database"]["ok"] is True

    # Every accepted delivery was replayed exactly once, in order, with its arrival time.
    assert after_spool["replayed_total"] == len(spooled)
    assert after_spool["failed_files"] == 0
    report_result("hung_database", database="postgresql", hang_seconds=HANG_SECONDS, deliveries=len(sent),
                  sent_during_hang=len(during), answered_202_spooled=len(spooled),
                  slowest_answer_during_hang_seconds=round(slowest_during, 2),
                  health_reported_down_after_seconds=round(detected_after, 1),
                  slowest_health_detailed_seconds=round(max(health_seconds), 2),
                  replayed=after_spool["replayed_total"], seconds_to_drain_after_heal=round(drain_seconds, 1))
    _check_database(url, sent, spooled)
