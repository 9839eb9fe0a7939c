"""Crash safety: SIGKILL the platform while 500 Tradovate jobs are queued or running, restart it, and every job's
order reaches the broker exactly once.

The Tradovate peer runs as its own process with 200 ms of latency per request, so orders are in flight when the
platform dies, and it logs every order it accepts with its clOrdId (the job's idempotency key). It does not reject
a repeated clOrdId, so a duplicate placed by the platform would show in the log.
"""

from __future__ import annotations

import collections
import concurrent.futures
import json
import time

from sqlalchemy import func, select

from justtrades.db.engine import create_database_engine
from justtrades.db.models import ExecutionJob, Order

from .support import (
    TradovatePeerProcess,
    kill_platform,
    report_result,
    platform_process,
    restart_platform,
    tradovate_seed,
    wait_until,
)

TOKEN = "reliability-crash-5c0e7a91d2b4f638"
ACCOUNTS = 5
SIGNALS = 100  # x 5 traders = 500 jobs
JOBS = SIGNALS * ACCOUNTS


def _job_states(database_url: str) -> dict[str, int]:
    engine = create_database_engine(database_url)
    with engine.connect() as connection:
        rows = connection.execute(select(ExecutionJob.status, func.count()).group_by(ExecutionJob.status)).all()
    engine.dispose()
    return dict(rows)


def _send_signals(server, tickers: list[str]) -> list[int]:
    def send(number: int) -> int:
        side = "buy" if number % 2 else "sell"
        body = json.dumps({"action": side, "ticker": tickers[number % len(tickers)], "alert_id": f"crash-{number}"})
        return server.post_webhook(TOKEN, body).status_code

    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        return list(pool.map(send, range(SIGNALS)))


def test_sigkill_with_500_jobs_places_each_once(database_url, tmp_path):
    peer = TradovatePeerProcess(tmp_path, latency_ms=200).start()
    seed = tradovate_seed(tmp_path / "seed.yaml", ACCOUNTS, TOKEN)
    server = platform_process(tmp_path, database_url=database_url, seed=seed, env={
        "JT_TRADOVATE_URL": peer.url,
        "JT_TRADOVATE_CREDENTIALS_FILE": str(peer.write_credentials(tmp_path / "tradovate.yaml")),
        "JT_BROKER_WORKERS": "10",
    })
    try:
        server.start()

        # 1. 500 jobs in the table, orders flowing, then the process dies without any chance to clean up.
        statuses = _send_signals(server, [f"{root}1!" for root in peer.contracts])
        assert statuses == [200] * SIGNALS
        wait_until(lambda: len(peer.logged_orders()) >= 25, 60, "the platform placed no orders before the kill")
        kill_platform(server)
        time.sleep(0.5)  # requests the dead process sent may still be landing at the peer
        placed_before_restart = len(peer.logged_orders())
        states_at_kill = _job_states(database_url)

        # 2. A new process on the same database finishes the work.
        restarted = time.monotonic()
        restart_platform(server)
        wait_until(lambda: set(_job_states(database_url)) <= {"done", "failed"}, 120,
                   "the restarted platform did not finish every job")
        recovery_seconds = time.monotonic() - restarted
    finally:
        server.stop()
        peer.stop()

    assert 0 < placed_before_restart < JOBS, "the kill did not land while orders were in flight"
    assert sum(states_at_kill.values()) == JOBS
    assert states_at_kill.get("queued", 0) + states_at_kill.get("running", 0) > 0
    assert _job_states(database_url) == {"done": JOBS}

    engine = create_database_engine(database_url)
    with engine.connect() as connection:
        keys = set(connection.scalars(select(ExecutionJob.idempotency_key)))
        order_rows = connection.execute(select(Order.client_order_id, Order.status)).all()
    engine.dispose()

    logged = collections.Counter(order["clOrdId"] for order in peer.logged_orders())
    report_result("crash_safety", database=database_url.split(":", 1)[0], jobs=JOBS,
                  orders_before_kill=placed_before_restart, jobs_at_kill=states_at_kill,
                  seconds_to_finish_after_restart=round(recovery_seconds, 1), orders_logged=sum(logged.values()),
                  distinct_client_ids=len(logged))
    duplicates = {key: times for key, times in logged.items() if times > 1}
    assert duplicates == {}, f"{len(duplicates)} orders placed more than once"
    assert set(logged) == keys, f"missing at the broker: {sorted(keys - set(logged))[:10]}"
    assert len(order_rows) == JOBS
    assert {status for _, status in order_rows} <= {"placed", "filled"}
