"""The webhook spool's edges: full, left by a crash, replayed twice, corrupt, shared, and odd deliveries in an outage.

Apps run in-process on a private PostgreSQL cluster, which the tests stop to take the database away.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import os
import stat
import time

import pytest
from sqlalchemy import func, select

from justtrades.db.models import ExecutionJob, RawWebhook, WebhookActivity
from justtrades.webhooks.ingest import Delivery
from justtrades.webhooks.spool import SpoolSettings, SpoolUnavailable, WebhookSpool

from ..conftest import DEMO_SEED, TEST_API_KEY, require_component
from .support import metric_samples, wait_until
from .private_postgres import PrivatePostgres, private_cluster_available

NQ_TOKEN = "demo-nq-7f3a9c2e41b8d605"
ES_TOKEN = "demo-es-2b6d0e9a73c4f158"
BUY_NQ = b'{"action":"buy","ticker":"NQ1!","price":21500.25}'
_database_numbers = itertools.count(1)


@pytest.fixture(scope="module")
def cluster():
    available, missing = private_cluster_available()
    require_component(available, f"a private PostgreSQL cluster ({missing})")
    cluster = PrivatePostgres().init()
    cluster.start()
    yield cluster
    cluster.destroy()


@pytest.fixture
def database(cluster):
    """A migrated and seeded database of this test on the private cluster, which is running again at the end."""
    from justtrades.db.engine import create_database_engine, transaction, create_session_factory
    from justtrades.db.migrate import upgrade
    from justtrades.seed import apply_seed, load_seed_file

    url = cluster.create_database(f"spool_{next(_database_numbers)}")
    engine = create_database_engine(url)
    upgrade(engine)
    with transaction(create_session_factory(engine)) as session:
        apply_seed(session, load_seed_file(DEMO_SEED))
    engine.dispose()
    yield url
    if not cluster.is_running():
        cluster.start()


@pytest.fixture
def make_app(tmp_path):
    from justtrades.app import create_app
    from justtrades.config import Settings

    apps = []

    def build(url: str, *, spool_dir=None, max_bytes: int = 1024 * 1024, **settings):
        spool = SpoolSettings(directory=spool_dir or tmp_path / "spool", max_bytes=max_bytes, retry_seconds=0.05,
                              retry_max_seconds=0.2)
        app = create_app(Settings(database_url=url, admin_api_key=TEST_API_KEY, secret_key="test", worker_poll_seconds=0.2,
                                  **settings), spool=spool)
        app.config["TESTING"] = True
        apps.append(app)
        return app

    yield build
    for app in apps:
        app.extensions["justtrades"].stop()


def post(app, token: str, body: bytes, **headers):
    return app.test_client().post(f"/webhook/{token}", data=body, content_type="text/plain", headers=headers)


def spool_state(app) -> dict:
    return app.test_client().get("/api/webhook-spool", headers={"X-API-Key": TEST_API_KEY}).get_json()


def count(app, model, *conditions) -> int:
    with app.extensions["justtrades"].session_factory() as session:
        return session.scalar(select(func.count()).select_from(model).where(*conditions))


def delivery(token: str, body: bytes, received_at: dt.datetime | None = None) -> Delivery:
    return Delivery(token=token, body=body, size_bytes=len(body), too_large=False, content_type="text/plain",
                    source_ip="127.0.0.1", received_at=received_at or dt.datetime.now(dt.timezone.utc),
                    started=time.monotonic())


def test_full_spool_answers_503(cluster, database, make_app):
    app = make_app(database, max_bytes=1024)
    cluster.stop()

    answers = [post(app, NQ_TOKEN, b'{"action":"buy","ticker":"NQ1!","alert_id":%d}' % number) for number in range(10)]

    statuses = [answer.status_code for answer in answers]
    assert statuses[0] == 202
    assert 503 in statuses
    refused = answers[statuses.index(503)]
    assert "spool is full" in refused.get_json()["error"]
    assert "JT_WEBHOOK_SPOOL_MAX_BYTES" in refused.get_json()["error"]
    assert refused.headers["Retry-After"] == "30"
    assert spool_state(app)["rejected_total"] == statuses.count(503)


def test_spool_left_by_crash_replays_at_start(database, make_app, tmp_path):
    received_at = dt.datetime(2026, 12, 3, 15, 30, 0, 123456, tzinfo=dt.timezone.utc)
    left_behind = WebhookSpool(SpoolSettings(directory=tmp_path / "spool"))
    spool_id = left_behind.append(delivery(NQ_TOKEN, BUY_NQ, received_at))
    left_behind.close()  # the crashed process's lock goes with it

    app = make_app(database)
    wait_until(lambda: spool_state(app)["depth"] == 0, 15, f"spooled delivery {spool_id} was never replayed")

    with app.extensions["justtrades"].session_factory() as session:
        raw = session.scalars(select(RawWebhook)).one()
        activity = session.scalars(select(WebhookActivity)).one()
    assert raw.received_at == received_at
    assert raw.outcome == "accepted"
    assert activity.created_at == received_at
    assert count(app, ExecutionJob) == 2
    assert list((tmp_path / "spool" / "pending").iterdir()) == []


def test_replay_after_commit_adds_nothing(database, make_app):
    app = make_app(database)
    runtime = app.extensions["justtrades"]
    arrived = delivery(NQ_TOKEN, BUY_NQ)

    # The outcome was committed, then the request failed: the delivery is in the database and in the spool.
    assert runtime.webhooks.ingest(arrived).outcome == "accepted"
    runtime.webhook_spool.append(arrived)
    wait_until(lambda: spool_state(app)["depth"] == 0, 15, "the spooled copy was never replayed")

    assert spool_state(app)["replayed_total"] == 1
    assert count(app, RawWebhook) == 1
    assert count(app, WebhookActivity) == 1
    assert count(app, ExecutionJob) == 2


def test_replay_reuses_raw_row_without_outcome(database, make_app):
    app = make_app(database)
    runtime = app.extensions["justtrades"]
    arrived = delivery(NQ_TOKEN, BUY_NQ)

    # The raw row was written, then the database went away before the outcome.
    raw_id = runtime.webhooks._record_raw(arrived)
    runtime.webhook_spool.append(arrived)
    wait_until(lambda: spool_state(app)["depth"] == 0, 15, "the spooled delivery was never replayed")

    with runtime.session_factory() as session:
        raw = session.scalars(select(RawWebhook)).one()
    assert raw.id == raw_id
    assert raw.outcome == "accepted"
    assert count(app, WebhookActivity) == 1


def test_unreadable_spool_file_is_quarantined(database, make_app, tmp_path):
    pending = tmp_path / "spool" / "pending"
    pending.mkdir(parents=True)
    (pending / "00000000000000000001-0000000000000000.json").write_text("{not json")

    app = make_app(database)
    wait_until(lambda: spool_state(app)["failed_files"] == 1, 15, "the corrupt file was never moved to failed/")

    state = spool_state(app)
    assert state["depth"] == 0
    assert state["quarantined_total"] == 1
    reason = (tmp_path / "spool" / "failed" / "00000000000000000001-0000000000000000.error").read_text()
    assert "unreadable spool file" in reason
    samples = metric_samples(app.test_client().get("/metrics").get_data(as_text=True))
    assert samples[("justtrades_webhook_spool_failed_files", ())] == 1


def test_second_process_cannot_share_spool(tmp_path):
    first = WebhookSpool(SpoolSettings(directory=tmp_path / "spool"))
    first.append(delivery(NQ_TOKEN, BUY_NQ))
    second = WebhookSpool(SpoolSettings(directory=tmp_path / "spool"))

    with pytest.raises(SpoolUnavailable, match="JT_WEBHOOK_SPOOL_DIR"):
        second.append(delivery(NQ_TOKEN, BUY_NQ))
    assert second.snapshot()["enabled"] is False
    assert "another process" in second.snapshot()["disabled_reason"]
    first.close()


def test_spool_files_are_private(tmp_path):
    spool = WebhookSpool(SpoolSettings(directory=tmp_path / "spool"))
    spool_id = spool.append(delivery(NQ_TOKEN, b'{"action":"buy","ticker":"NQ1!","passphrase":"hunter2-secret"}'))
    spool.close()

    path = tmp_path / "spool" / "pending" / f"{spool_id}.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "spool").stat().st_mode) == 0o700
    assert NQ_TOKEN not in spool_id


def test_zero_max_bytes_disables_spool(cluster, database, make_app):
    app = make_app(database, max_bytes=0)
    cluster.stop()

    answer = post(app, NQ_TOKEN, BUY_NQ)

    assert answer.status_code == 503
    assert "switched off" in answer.get_json()["error"]


def test_outage_keeps_4xx_answers_and_raw_log(cluster, database, make_app):
    app = make_app(database, webhook_allowed_networks=("127.0.0.0/8",), webhook_max_body_bytes=1024)
    cluster.stop()

    forbidden = app.test_client().post(f"/webhook/{NQ_TOKEN}", data=BUY_NQ, environ_base={"REMOTE_ADDR": "10.9.8.7"})
    oversized = post(app, NQ_TOKEN, b'{"action":"buy","ticker":"NQ1!","note":"' + b"x" * 2000 + b'"}')
    unknown = post(app, "unknown-token-000000000000", BUY_NQ)
    cluster.start()

    assert forbidden.status_code == 403
    assert "10.9.8.7" in forbidden.get_json()["error"]
    assert oversized.status_code == 413
    assert oversized.get_json()["field"] == "body"
    assert unknown.status_code == 202
    wait_until(lambda: spool_state(app)["depth"] == 0, 20, "the spool never drained")

    with app.extensions["justtrades"].session_factory() as session:
        outcomes = sorted(session.scalars(select(RawWebhook.outcome)))
    assert outcomes == ["too_large", "unknown_token"]  # a rejected sender is never replayed


def test_backlog_of_one_recorder_spares_others(database, make_app):
    app = make_app(database)
    runtime = app.extensions["justtrades"]
    runtime.threads.unregister("webhook-spool-replayer")  # keep the backlog in place
    runtime.webhook_spool.append(delivery(NQ_TOKEN, BUY_NQ))

    queued_behind = post(app, NQ_TOKEN, b'{"action":"sell","ticker":"NQ1!"}')
    other_recorder = post(app, ES_TOKEN, b'{"action":"buy","ticker":"ES1!"}')

    assert queued_behind.status_code == 202
    assert other_recorder.status_code == 200
    assert other_recorder.get_json()["status"] == "accepted"
    assert spool_state(app)["depth"] == 2


def test_spool_status_needs_api_key(database, make_app):
    app = make_app(database)
    client = app.test_client()

    assert client.get("/api/webhook-spool").status_code == 401
    assert client.get("/api/webhook-spool", headers={"X-API-Key": "wrong"}).status_code == 403
    document = client.get("/api/webhook-spool", headers={"X-API-Key": TEST_API_KEY}).get_json()
    assert set(document) >= {"enabled", "depth", "bytes", "max_bytes", "oldest_age_seconds", "spooled_total",
                             "replayed_total", "rejected_total", "quarantined_total", "failed_files"}
    assert os.fspath(document.get("directory", "")) == ""  # the path stays out of the API
    assert json.dumps(document).find(NQ_TOKEN) == -1
