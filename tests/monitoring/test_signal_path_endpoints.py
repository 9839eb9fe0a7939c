"""JSON endpoints of the signal path, their auth levels, and /metrics built from the same snapshots."""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select

from justtrades.db.models import ExecutionJob

from ..conftest import TEST_API_KEY, require_component

REFERENCE_TIME = dt.datetime(2026, 12, 3, 15, 30, tzinfo=dt.timezone.utc)
NQ_TOKEN = "demo-nq-7f3a9c2e41b8d605"
ADMIN_OR_KEY = [
    "/health/detailed",
    "/api/broker-execution/status",
    "/api/broker-execution/failures",
    "/api/webhook-activity",
    "/api/raw-webhooks",
    "/api/recorders/1/execution-status",
]
OPEN = ["/health", "/status", "/api/broker-queue/stats", "/metrics"]


def samples(client) -> dict[tuple[str, tuple], float]:
    text = client.get("/metrics").get_data(as_text=True)
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def with_key(client, path):
    return client.get(path, headers={"X-API-Key": TEST_API_KEY})


@pytest.fixture
def traffic(app):
    """Three accepted signals, one rejection and one unknown token, at the reference time."""
    app.extensions["justtrades"].clock = lambda: REFERENCE_TIME
    client = app.test_client()
    for price in ("21500", "21501", "21502"):
        client.post(f"/webhook/{NQ_TOKEN}", data=f'{{"action":"buy","ticker":"NQ1!","price":{price}}}')
    client.post(f"/webhook/{NQ_TOKEN}", data='{"action":"hold","ticker":"NQ1!"}')
    client.post("/webhook/unknown-token-123456", data='{"action":"buy","ticker":"NQ1!"}')
    return client


@pytest.mark.parametrize("path", ADMIN_OR_KEY)
def test_admin_endpoint_rejects_missing_and_wrong_key(client, path):
    assert client.get(path).status_code == 401
    assert client.get(path, headers={"X-API-Key": "wrong"}).status_code == 403
    assert client.get(path + ("&" if "?" in path else "?") + "api_key=wrong").status_code == 403


@pytest.mark.parametrize("path", ADMIN_OR_KEY)
def test_admin_endpoint_accepts_header_and_query_key(client, path):
    assert with_key(client, path).status_code == 200
    assert client.get(f"{path}?api_key={TEST_API_KEY}").status_code == 200


@pytest.mark.parametrize("path", OPEN)
def test_open_endpoint_needs_no_key(client, path):
    assert client.get(path).status_code == 200


def test_clear_cache_needs_key_and_answers_reference_shape(client):
    assert client.post("/api/broker-queue/clear-cache").status_code == 401
    response = client.post("/api/broker-queue/clear-cache", headers={"X-API-Key": TEST_API_KEY})
    assert response.get_json() == {"success": True, "message": "All broker caches cleared"}


@pytest.mark.parametrize("limit", ["0", "-1", "abc", "501"])
def test_invalid_limit_is_400_naming_it(client, limit):
    response = with_key(client, f"/api/webhook-activity?limit={limit}")
    assert response.status_code == 400
    assert response.get_json()["field"] == "limit"


@pytest.mark.parametrize("path", [
    "/api/recorders/{id}/execution-status", "/api/traders/{id}/broker-state", "/api/account/{id}/broker-state",
])
@pytest.mark.parametrize("row_id", [2**31 - 1, 2**31, 2**63, 10**23])
def test_row_id_beyond_key_range_is_404(client, path, row_id):
    # Ids beyond the 32-bit keys reached the database and came back as 500. PostgreSQL raised "integer out of
    # range", and the SQLite driver raised OverflowError above 2**63 - 1.
    response = client.get(path.format(id=row_id), headers={"X-API-Key": TEST_API_KEY})

    assert response.status_code == 404
    assert "error" in response.get_json()


def test_webhook_activity_counts_and_lists(traffic):
    document = with_key(traffic, "/api/webhook-activity?limit=2").get_json()

    assert document["stats"] == {
        "total": 4, "success": 3, "failed": 1, "blocked": 0, "duplicate": 0, "success_rate": 75.0,
    }
    assert len(document["activity"]) == 2
    assert document["activity"][0]["status"] == "failed"
    assert document["activity"][1]["ticker"] == "NQZ6"
    assert document["activity"][1]["traders_notified"] == 2


def test_raw_webhooks_count_every_delivery(traffic):
    document = with_key(traffic, "/api/raw-webhooks?limit=10").get_json()

    assert document["total"] == 5
    assert document["action_breakdown"]["buy"] == 3
    assert document["action_breakdown"]["unparsed"] == 2
    assert [hook["outcome"] for hook in document["webhooks"]] == ["unknown_token", "rejected", "accepted", "accepted", "accepted"]


def test_raw_webhooks_mask_token_and_name_recorder(traffic):
    webhooks = with_key(traffic, "/api/raw-webhooks?limit=10").get_json()["webhooks"]

    assert webhooks[0]["webhook_token"] == "...3456"
    assert webhooks[0]["recorder_name"] is None
    assert webhooks[1]["webhook_token"] == "..." + NQ_TOKEN[-4:]
    assert webhooks[1]["recorder_name"] is not None
    assert all(NQ_TOKEN not in str(hook) for hook in webhooks)


def test_health_reference_shape(client):
    document = client.get("/health").get_json()
    assert document["status"] == "ok"
    assert document["service"] == "just-trades"
    assert document["timestamp"].endswith("Z")
    assert isinstance(document["market_open"], bool)


def test_recorder_execution_status_explains_disabled_trader(client):
    document = with_key(client, "/api/recorders/1/execution-status").get_json()
    assert document["enabled_accounts_count"] == 2
    assert document["execution_capability"] == "partial"
    assert document["missing_traders"][0]["reason"] == "trader is disabled"
    assert with_key(client, "/api/recorders/999/execution-status").status_code == 404


def test_metrics_mirror_json_numbers(traffic):
    status = with_key(traffic, "/api/broker-execution/status").get_json()
    activity = with_key(traffic, "/api/webhook-activity").get_json()
    raw = with_key(traffic, "/api/raw-webhooks").get_json()
    queue = traffic.get("/api/broker-queue/stats").get_json()
    system = traffic.get("/status").get_json()
    metrics = samples(traffic)
    broker = status["broker_execution"]

    mirrored = {
        ("justtrades_broker_workers_alive", ()): broker["workers_alive"],
        ("justtrades_broker_workers_configured", ()): broker["workers_configured"],
        ("justtrades_broker_queue_depth", ()): broker["queue_size"],
        ("justtrades_broker_executions_total", ()): broker["total_processed"],
        ("justtrades_broker_execution_avg_seconds", ()): broker["avg_execution_ms"] / 1000,
        ("justtrades_webhooks_processed_total", ()): status["fast_webhook"]["total_processed"],
        ("justtrades_webhook_avg_latency_seconds", ()): status["fast_webhook"]["avg_latency_ms"] / 1000,
        ("justtrades_traders_enabled", ()): status["traders"]["total_enabled"],
        ("justtrades_trader_accounts", ()): status["traders"]["total_accounts"],
        ("justtrades_signal_blocks_active", ()): len(status["signal_blocking"]["currently_blocked"]),
        ("justtrades_broker_queue_processing_rate", ()): queue["processing_rate"],
        ("justtrades_broker_queue_success_ratio", ()): queue["success_rate"] / 100,
        ("justtrades_webhook_signals_total", (("status", "success"),)): activity["stats"]["success"],
        ("justtrades_webhook_signals_total", (("status", "failed"),)): activity["stats"]["failed"],
        ("justtrades_webhook_signals_total", (("status", "blocked"),)): activity["stats"]["blocked"],
        ("justtrades_webhook_success_ratio", ()): activity["stats"]["success_rate"] / 100,
        ("justtrades_raw_webhooks_total", ()): raw["total"],
        ("justtrades_open_trades", ()): system["open_trades"],
        ("justtrades_indexed_positions", ()): system["indexed_positions"],
        ("justtrades_indexed_trades", ()): system["indexed_trades"],
    }
    for reason, count in broker["failures_by_reason"].items():
        mirrored[("justtrades_broker_execution_failures_total", (("reason", reason),))] = count
    for action, count in raw["action_breakdown"].items():
        mirrored[("justtrades_raw_webhooks_by_action_total", (("action", action),))] = count

    for key, value in mirrored.items():
        assert metrics[key] == pytest.approx(value), key
    newest = dt.datetime.fromisoformat(activity["activity"][0]["timestamp"].replace("Z", "+00:00"))
    assert metrics[("justtrades_webhook_last_activity_timestamp_seconds", ())] == pytest.approx(newest.timestamp())


def test_empty_queue_has_no_oldest_job(client):
    broker = with_key(client, "/api/broker-execution/status").get_json()["broker_execution"]

    assert broker["queue_size"] == 0
    assert broker["oldest_job_created_at"] is None
    assert broker["oldest_job_age_seconds"] == 0.0
    assert samples(client)[("justtrades_broker_queue_oldest_job_age_seconds", ())] == 0.0


def test_queue_age_from_oldest_waiting_job(traffic):
    session_factory = traffic.application.extensions["justtrades"].session_factory
    now = dt.datetime.now(dt.timezone.utc)
    with session_factory() as session, session.begin():
        first, second = session.scalars(select(ExecutionJob).order_by(ExecutionJob.id).limit(2)).all()
        # A finished job, however old, is no longer waiting.
        first.status, first.created_at = "done", now - dt.timedelta(minutes=10)
        second.created_at = now - dt.timedelta(seconds=90)

    broker = with_key(traffic, "/api/broker-execution/status").get_json()["broker_execution"]
    scraped_age = samples(traffic)[("justtrades_broker_queue_oldest_job_age_seconds", ())]

    stored_at = now - dt.timedelta(seconds=90)
    assert broker["oldest_job_created_at"] == stored_at.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    assert 90.0 <= broker["oldest_job_age_seconds"] < 100.0
    # The scrape reads the table a moment after the JSON did.
    assert broker["oldest_job_age_seconds"] <= scraped_age < broker["oldest_job_age_seconds"] + 5.0


def test_metrics_count_webhook_outcomes(traffic):
    metrics = samples(traffic)
    assert metrics[("justtrades_webhook_requests_total", (("outcome", "accepted"),))] == 3
    assert metrics[("justtrades_webhook_requests_total", (("outcome", "rejected"),))] == 1
    assert metrics[("justtrades_webhook_requests_total", (("outcome", "unknown_token"),))] == 1
    assert metrics[("justtrades_webhook_duration_seconds_count", (("outcome", "accepted"),))] == 3


def test_metrics_pass_promtool_check(traffic):
    require_component(shutil.which("promtool") is not None, "promtool")
    text = traffic.get("/metrics").get_data(as_text=True)

    result = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)

    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "" and result.stderr.strip() == "", result.stdout + result.stderr


def test_metrics_carry_no_secret_or_token(traffic):
    text = traffic.get("/metrics").get_data(as_text=True)
    assert NQ_TOKEN not in text
    assert TEST_API_KEY not in text


def test_metrics_content_type_names_one_charset(client):
    content_type = client.get("/metrics").headers["Content-Type"]

    assert content_type.startswith("text/plain; version=")
    assert content_type.count("charset=") == 1
