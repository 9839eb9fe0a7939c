"""Every shared webhook case through the real ingestion path, on SQLite and PostgreSQL."""

from __future__ import annotations

import concurrent.futures
import datetime as dt
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from justtrades.db.models import ExecutionJob, RawWebhook, Trader, WebhookActivity

from ..conftest import TEST_API_KEY, case_body, load_shared_cases

REFERENCE_TIME = dt.datetime(2026, 12, 3, 15, 30, tzinfo=dt.timezone.utc)
CASES = {case["id"]: case for case in load_shared_cases()}

# The demo recorder that trades each product root, and its token.
TOKENS = {
    "JADNQ": "demo-nq-7f3a9c2e41b8d605",
    "ESSCALP": "demo-es-2b6d0e9a73c4f158",
    "GOLDSWING": "demo-gc-91e5c7a02d4b6f83",
}
RECORDER_FOR_CASE = {"W07": "ESSCALP", "W08": "ESSCALP", "W09": "GOLDSWING", "W10": "ESSCALP"}


@pytest.fixture
def frozen_app(app):
    app.extensions["justtrades"].clock = lambda: REFERENCE_TIME
    return app


def post_case(client, case_id: str, token: str | None = None):
    case = CASES[case_id]
    token = token or TOKENS[RECORDER_FOR_CASE.get(case_id, "JADNQ")]
    return client.post(f"/webhook/{token}", data=case_body(case), headers={"Content-Type": case["content_type"]})


def jobs_of(app) -> list[ExecutionJob]:
    with app.extensions["justtrades"].session_factory() as session:
        return session.scalars(select(ExecutionJob).order_by(ExecutionJob.id)).all()


def raw_rows(app) -> list[RawWebhook]:
    with app.extensions["justtrades"].session_factory() as session:
        return session.scalars(select(RawWebhook).order_by(RawWebhook.id)).all()


def enabled_trader_ids(app, recorder_name: str) -> list[int]:
    from justtrades.db.models import Recorder

    with app.extensions["justtrades"].session_factory() as session:
        return list(session.scalars(
            select(Trader.id).join(Recorder).where(Recorder.name == recorder_name, Trader.enabled.is_(True)).order_by(Trader.id)
        ))


def test_shared_cases_are_all_present():
    assert sorted(CASES) == [f"W{number:02d}" for number in range(1, 22)]


@pytest.mark.parametrize(
    "case_id, action, symbol",
    [
        ("W01", "buy", "NQZ6"),
        ("W02", "sell", "NQZ6"),
        ("W03", "buy", "MNQZ6"),
        ("W05", "close_long", "NQZ6"),
        ("W06", "close_short", "NQZ6"),
        ("W07", "close", "ESZ6"),
        ("W08", "close", "ESZ6"),
        ("W10", "buy", "ESZ6"),
    ],
)
def test_accepted_case_creates_one_job_per_enabled_trader(frozen_app, case_id, action, symbol):
    response = post_case(frozen_app.test_client(), case_id)

    assert response.status_code == 200, response.get_json()
    assert response.get_json()["status"] == "accepted"
    jobs = jobs_of(frozen_app)
    recorder = RECORDER_FOR_CASE.get(case_id, "JADNQ")
    assert sorted(job.trader_id for job in jobs) == enabled_trader_ids(frozen_app, recorder)
    assert {job.action for job in jobs} == {action}
    assert {job.symbol for job in jobs} == {symbol}
    assert len({job.idempotency_key for job in jobs}) == len(jobs)


def test_quantity_strings_scale_each_trader(frozen_app):
    response = post_case(frozen_app.test_client(), "W04")

    assert response.status_code == 200
    quantities = {job.trader_id: job.quantity for job in jobs_of(frozen_app)}
    with frozen_app.extensions["justtrades"].session_factory() as session:
        trader_quantity = dict(session.execute(select(Trader.id, Trader.quantity)).all())
    assert quantities == {trader_id: trader_quantity[trader_id] * 2 for trader_id in quantities}
    assert 2 in quantities.values()  # the demo trader with quantity 1 trades the alert's 2
    assert {job.price for job in jobs_of(frozen_app)} == {Decimal("24893.00")}


def test_brackets_snap_to_gold_tick(frozen_app):
    response = post_case(frozen_app.test_client(), "W09")

    assert response.status_code == 200, response.get_json()
    (job,) = jobs_of(frozen_app)
    assert job.symbol.startswith("GC")
    assert job.take_profit == Decimal("2955.4")
    assert job.stop_loss == Decimal("2940.1")


@pytest.mark.parametrize(
    "case_id, field, words",
    [
        ("W11", "body", ["{{strategy.order.action}}", "{{ticker}}", "{{close}}"]),
        ("W12", None, ["action", "price"]),
        ("W13", "body", ["not JSON"]),
        ("W14", "body", ["column"]),
        ("W15", "body", ["empty"]),
        ("W16", "action", ["hold", "buy", "sell"]),
        ("W17", "ticker", ["ticker"]),
        ("W18", "ticker", ["ZZZ"]),
    ],
)
def test_rejected_case_names_the_problem_and_keeps_raw(frozen_app, case_id, field, words):
    response = post_case(frozen_app.test_client(), case_id)

    assert response.status_code == 400
    error = response.get_json()
    if field is not None:
        assert error["field"] == field
    for word in words:
        assert word in error["error"]
    assert jobs_of(frozen_app) == []
    (raw,) = raw_rows(frozen_app)
    assert raw.http_status == 400
    assert raw.body == CASES[case_id]["body"]


def test_unknown_token_is_404_and_visible_raw(frozen_app):
    client = frozen_app.test_client()
    response = post_case(client, "W19", token="not-a-real-token-000000")

    assert response.status_code == 404
    assert jobs_of(frozen_app) == []
    listing = client.get("/api/raw-webhooks", headers={"X-API-Key": TEST_API_KEY}).get_json()
    assert listing["total"] == 1
    assert listing["webhooks"][0]["webhook_token"] == "...0000"
    assert listing["webhooks"][0]["recorder_name"] is None
    assert listing["webhooks"][0]["raw_body"] == CASES["W19"]["body"]


def test_oversized_body_is_413_with_truncated_raw(frozen_app):
    case = CASES["W20"]
    response = post_case(frozen_app.test_client(), "W20")

    assert response.status_code == 413
    assert jobs_of(frozen_app) == []
    (raw,) = raw_rows(frozen_app)
    assert raw.size_bytes == len(case_body(case))
    assert raw.truncated is True
    assert len(raw.body.encode()) <= frozen_app.extensions["justtrades"].settings.raw_body_keep_bytes
    assert raw.body.startswith('{"action":"buy"')


def test_four_copies_within_200ms_make_one_set_of_jobs(frozen_app):
    def deliver(_):
        return post_case(frozen_app.test_client(), "W21")

    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        responses = list(pool.map(deliver, range(4)))

    statuses = sorted(response.get_json()["status"] for response in responses)
    assert [response.status_code for response in responses] == [200] * 4
    assert statuses == ["accepted", "duplicate", "duplicate", "duplicate"]
    assert len(jobs_of(frozen_app)) == len(enabled_trader_ids(frozen_app, "JADNQ"))
    with frozen_app.extensions["justtrades"].session_factory() as session:
        duplicates = session.scalar(select(func.count()).select_from(WebhookActivity).where(WebhookActivity.status == "duplicate"))
    assert duplicates == 3


def test_copy_after_the_window_is_a_new_signal(frozen_app):
    runtime = frozen_app.extensions["justtrades"]
    client = frozen_app.test_client()
    post_case(client, "W21")

    runtime.clock = lambda: REFERENCE_TIME + dt.timedelta(seconds=runtime.settings.duplicate_window_seconds + 1)
    response = post_case(client, "W21")

    assert response.get_json()["status"] == "accepted"
    assert len(jobs_of(frozen_app)) == 2 * len(enabled_trader_ids(frozen_app, "JADNQ"))


def test_secret_fields_are_redacted_in_raw_log(frozen_app):
    body = b'{"action":"buy","ticker":"NQ1!","passphrase":"hunter2-secret","api_key":"sk-live-123"}'
    frozen_app.test_client().post(f"/webhook/{TOKENS['JADNQ']}", data=body)

    (raw,) = raw_rows(frozen_app)
    assert "hunter2-secret" not in raw.body
    assert "sk-live-123" not in raw.body
    assert '"action":"buy"' in raw.body
