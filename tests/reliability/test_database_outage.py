"""Database outage under webhook traffic: deliveries are spooled, replayed in order, and none is lost or doubled.

The platform runs on a private PostgreSQL cluster, which the test stops for 30 seconds while a sender posts
alerts, each with its own alert_id so every delivery is a distinct signal.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import datetime as dt
import json
import threading
import time

import requests
from sqlalchemy import create_engine, func, select

from justtrades.db.models import ExecutionJob, Order, RawWebhook, WebhookActivity

from .support import metric_samples, platform_process, report_result, wait_until

# Two demo recorders: JADNQ has two enabled traders, ESSCALP one. Each recorder's deliveries replay in order.
TOKENS = {"demo-nq-7f3a9c2e41b8d605": ("NQ1!", "21500.25", 2), "demo-es-2b6d0e9a73c4f158": ("ES1!", "6120.50", 1)}
OUTAGE_SECONDS = 30
# An open-loop rate, as TradingView sends whatever the responses are: alerts do not slow down while the platform spools.
DELIVERIES_PER_SECOND = 4


@dataclasses.dataclass
class Sent:
    alert_id: str
    token: str
    sent_at: dt.datetime
    answered_at: dt.datetime | None = None
    status: int | None = None
    document: dict | None = None
    error: str | None = None


class Sender(threading.Thread):
    """Posts distinct buy alerts at a fixed rate, alternating between the recorders, until stopped."""

    def __init__(self, url: str):
        super().__init__(name="webhook-sender", daemon=True)
        self.url = url
        self.sent: list[Sent] = []
        self._lock = threading.Lock()
        self._stop_event = threading.Event()
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=8, thread_name_prefix="webhook-post")
        self._local = threading.local()

    def run(self) -> None:
        tokens = list(TOKENS)
        started = time.monotonic()
        number = 0
        while not self._stop_event.is_set():
            token = tokens[number % len(tokens)]
            number += 1
            self._pool.submit(self._post, f"outage-{number:05d}", token)
            self._stop_event.wait(max(0.0, started + number / DELIVERIES_PER_SECOND - time.monotonic()))

    def _post(self, alert_id: str, token: str) -> None:
        ticker, price, _ = TOKENS[token]
        record = Sent(alert_id=alert_id, token=token, sent_at=dt.datetime.now(dt.timezone.utc))
        body = json.dumps({"action": "buy", "ticker": ticker, "price": float(price), "alert_id": alert_id})
        try:
            response = self._session().post(f"{self.url}/webhook/{token}", data=body,
                                            headers={"Content-Type": "text/plain"}, timeout=10)
            record.status = response.status_code
            record.document = response.json()
        except (requests.RequestException, ValueError) as error:
            record.error = f"{type(error).__name__}: {error}"
        record.answered_at = dt.datetime.now(dt.timezone.utc)
        with self._lock:
            self.sent.append(record)

    def answered(self, status: int) -> int:
        with self._lock:
            return sum(1 for record in self.sent if record.status == status)

    def _session(self) -> requests.Session:
        if not hasattr(self._local, "session"):
            self._local.session = requests.Session()
        return self._local.session

    def stop(self) -> None:
        self._stop_event.set()
        if self.is_alive():
            self.join(timeout=30)
        self._pool.shutdown(wait=True)


def _detailed(server) -> dict:
    return server.get("/health/detailed").json()


def _spool(server) -> dict:
    return server.get("/api/webhook-spool").json()


def _metrics(server) -> dict:
    return metric_samples(requests.get(server.url + "/metrics", timeout=10).text)


def test_outage_spools_and_replays_every_delivery(private_postgres, tmp_path):
    url = private_postgres.create_database("justtrades")
    server = platform_process(tmp_path, database_url=url, env={
        "JT_WEBHOOK_SPOOL_RETRY_MAX_SECONDS": "1",
        "JT_JOB_LEASE_SECONDS": "10",
    }).start()
    sender = Sender(server.url)
    try:
        # 1. Normal traffic, then the database goes away for 30 seconds while alerts keep coming.
        sender.start()
        wait_until(lambda: sender.answered(200) >= 10, 30, "the platform accepted no traffic before the outage")
        private_postgres.stop()
        stopped_at = time.monotonic()

        outage_health = wait_until(lambda: (lambda d: d if d["database"]["ok"] is False else None)(_detailed(server)),
                                   10, "/health/detailed never reported the database as down")
        wait_until(lambda: _spool(server)["depth"] > 0, 10, "no delivery was spooled during the outage")
        outage_listing = server.get("/api/webhook-activity")
        outage_metrics = _metrics(server)
        outage_spool = _spool(server)
        deepest_spool = 0
        while time.monotonic() - stopped_at < OUTAGE_SECONDS:
            deepest_spool = max(deepest_spool, _spool(server)["depth"])
            time.sleep(1)

        # 2. The database comes back; traffic goes on for a while, then stops.
        private_postgres.start()
        database_back = time.monotonic()
        time.sleep(3)
        sender.stop()

        wait_until(lambda: _spool(server)["depth"] == 0, 60, "the spool never drained")
        drain_seconds = time.monotonic() - database_back
        wait_until(lambda: server.get("/api/broker-execution/status").json()["broker_execution"]["queue_size"] == 0,
                   60, "the job queue never drained")
        after_health = _detailed(server)
        after_metrics = _metrics(server)
        after_spool = _spool(server)
    finally:
        sender.stop()
        server.stop()

    sent = sender.sent
    spooled = [record for record in sent if record.status == 202]
    accepted = [record for record in sent if record.status == 200]

    # The outage showed on every surface.
    assert outage_health["database"]["ok"] is False
    assert outage_health["status"] == "degraded"
    assert outage_listing.status_code == 503
    assert outage_listing.headers["Retry-After"] == "5"
    assert outage_metrics[("justtrades_database_up", ())] == 0
    assert outage_metrics[("justtrades_webhook_spool_depth", ())] >= 1
    assert outage_spool["depth"] >= 1
    assert after_health["database"]["ok"] is True
    assert after_metrics[("justtrades_database_up", ())] == 1
    assert after_metrics[("justtrades_webhook_spool_depth", ())] == 0

    # Every delivery got a 200 or 202 response: nothing was refused, so TradingView lost nothing.
    assert [record for record in sent if record.status not in (200, 202)] == []
    assert len(spooled) >= OUTAGE_SECONDS * DELIVERIES_PER_SECOND * 0.8, f"only {len(spooled)} deliveries spooled"
    assert len(accepted) >= 10
    assert {record.document["status"] for record in spooled} == {"spooled"}
    assert after_spool["replayed_total"] == len(spooled)
    assert after_spool["failed_files"] == 0

    report_result("database_outage", database="postgresql", outage_seconds=OUTAGE_SECONDS, deliveries=len(sent),
                  answered_200=len(accepted), answered_202_spooled=len(spooled),
                  deepest_spool=deepest_spool, replayed=after_spool["replayed_total"],
                  seconds_to_drain_after_database_back=round(drain_seconds, 1))
    _check_database(url, sent, spooled)


def _check_database(url: str, sent: list[Sent], spooled: list[Sent]) -> None:
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.connect() as connection:
        raw_rows = connection.execute(select(RawWebhook.id, RawWebhook.body, RawWebhook.received_at,
                                             RawWebhook.outcome)).all()
        activity = connection.execute(select(WebhookActivity.status, func.count()).group_by(WebhookActivity.status)).all()
        jobs = connection.execute(select(ExecutionJob.status, func.count()).group_by(ExecutionJob.status)).all()
        orders = connection.execute(select(func.count(), func.count(func.distinct(Order.client_order_id)))).one()
    engine.dispose()

    # Each delivery is in the raw log exactly once, accepted, and created its activity row and jobs once.
    by_alert = {}
    for row in raw_rows:
        alert_id = json.loads(row.body)["alert_id"]
        assert alert_id not in by_alert, f"{alert_id} is in the raw log twice"
        by_alert[alert_id] = row
    assert set(by_alert) == {record.alert_id for record in sent}
    assert {row.outcome for row in raw_rows} == {"accepted"}
    expected_jobs = sum(TOKENS[record.token][2] for record in sent)
    assert dict(activity) == {"success": len(sent)}
    assert dict(jobs) == {"done": expected_jobs}
    assert tuple(orders) == (expected_jobs, expected_jobs)

    # A spooled delivery keeps the time it arrived, not the time of its replay, and replays in arrival order.
    for record in spooled:
        received_at = by_alert[record.alert_id].received_at
        assert record.sent_at - dt.timedelta(seconds=1) <= received_at <= record.answered_at, record.alert_id
    for token in TOKENS:
        arrival_order = sorted((r for r in spooled if r.token == token), key=lambda r: by_alert[r.alert_id].received_at)
        replay_order = sorted(arrival_order, key=lambda record: by_alert[record.alert_id].id)
        assert [r.alert_id for r in replay_order] == [r.alert_id for r in arrival_order]
