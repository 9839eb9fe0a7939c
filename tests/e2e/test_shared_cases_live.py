"""The shared webhook cases posted to a running `justtrades serve` process, checked through its own endpoints."""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import time
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from justtrades.markets.symbols import resolve_symbol

from ..conftest import PlatformServer, case_body, load_shared_cases

TOKEN = "e2e-cases-0f6b2d9c81a4e357"
EXPECTED_STATUS = {"accepted": 200, "rejected": 400, "unknown_token": 404, "too_large": 413, "duplicate": 200}
CASES = load_shared_cases()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    server = PlatformServer(tmp_path_factory.mktemp("cases"), seed=Path(__file__).with_name("cases.yaml")).start()
    yield server
    server.stop()


def post(server, case, token=TOKEN):
    return server.post_webhook(token, case_body(case), content_type=case["content_type"])


@pytest.mark.parametrize("case", [c for c in CASES if c["outcome"] != "duplicate"], ids=lambda case: case["id"])
def test_case_outcome_over_http(server, case):
    token = "e2e-unknown-token-0000000" if case["outcome"] == "unknown_token" else TOKEN
    response = post(server, case, token)

    assert response.status_code == EXPECTED_STATUS[case["outcome"]], response.text
    document = response.json()
    if case["outcome"] == "accepted":
        assert document["status"] == "accepted"
        assert document["jobs"] == 2
        ticker = document["symbol"]
        assert ticker == resolve_symbol(_ticker_of(case), dt.datetime.now(dt.timezone.utc)).symbol
    if case["outcome"] in ("rejected", "too_large"):
        assert document["error"]
        assert document["field"]


def test_duplicate_burst_over_http(server):
    (case,) = [c for c in CASES if c["outcome"] == "duplicate"]
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        responses = list(pool.map(lambda _: post(server, case), range(4)))

    assert [response.status_code for response in responses] == [200] * 4
    assert sorted(response.json()["status"] for response in responses) == ["accepted"] + ["duplicate"] * 3


def test_endpoints_and_metrics_reflect_the_cases(server):
    _wait_for_empty_queue(server)
    activity = server.get("/api/webhook-activity?limit=50").json()
    raw = server.get("/api/raw-webhooks?limit=50").json()
    status = server.get("/api/broker-execution/status").json()
    metrics = _samples(requests.get(server.url + "/metrics", timeout=10).text)

    accepted = sum(1 for c in CASES if c["outcome"] == "accepted") + 1  # the burst's first copy
    rejected = sum(1 for c in CASES if c["outcome"] in ("rejected",))
    assert activity["stats"]["success"] == accepted
    assert activity["stats"]["failed"] == rejected
    assert activity["stats"]["duplicate"] == 3
    assert raw["total"] == len(CASES) + 3
    assert any(hook["outcome"] == "unknown_token" for hook in raw["webhooks"])
    assert any(hook["outcome"] == "too_large" and hook["truncated"] for hook in raw["webhooks"])
    assert status["broker_execution"]["total_processed"] == 2 * accepted
    assert metrics[("justtrades_webhook_signals_total", (("status", "success"),))] == accepted
    assert metrics[("justtrades_raw_webhooks_total", ())] == raw["total"]
    assert metrics[("justtrades_broker_executions_total", ())] == 2 * accepted


def _ticker_of(case) -> str:
    import json

    return json.loads(case["body"])["ticker"]


def _wait_for_empty_queue(server, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.get("/api/broker-execution/status").json()["broker_execution"]["queue_size"] == 0:
            return
        time.sleep(0.1)
    raise AssertionError("the broker queue did not drain")


def _samples(text: str) -> dict:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
