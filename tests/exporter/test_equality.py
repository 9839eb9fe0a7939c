"""The exporter's output equals a running platform's own /metrics for every contract metric.

The contract metrics are read from docs/metrics.md (producer "both"), so a metric added there is compared here
without editing this file.

Comparison: the platform's /metrics is scraped once before and once after the exporter's scrape. The exporter read
the JSON in between, so each of its values must lie between the two platform readings. That bracket absorbs values
that move on their own (a rate over the last minute, a heartbeat time) without a guessed tolerance. Two tolerances
remain. Timestamps may differ by 1 ms, because the JSON may write times with millisecond precision while the
platform's gauge carries microseconds. Database pool connections by state may differ by the number of the exporter's
other requests, because the exporter polls every endpoint at once and each of those requests can hold a pooled
connection while /health/detailed counts them; the platform's own /metrics is one request alone.
"""

from __future__ import annotations

import math
import time

import pytest
import requests
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from justtrades_exporter.contract import METRIC_ENDPOINTS
from justtrades_exporter.server import Exporter, ExporterSettings

JADNQ_TOKEN = "demo-nq-7f3a9c2e41b8d605"
TIMESTAMP_TOLERANCE_SECONDS = 0.001
POOL_TOLERANCE_CONNECTIONS = len(METRIC_ENDPOINTS) - 1
RELATIVE_TOLERANCE = 1e-9


def contract_samples(text: str, contract: set[str]) -> dict[tuple[str, frozenset], float]:
    """Return the samples of contract metrics, keyed by (sample name, labels)."""
    samples = {}
    for family in text_string_to_metric_families(text):
        metric_name = family.name + "_total" if family.type == "counter" else family.name
        if metric_name not in contract:
            continue
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def family_types(text: str, contract: set[str]) -> dict[str, str]:
    types = {}
    for family in text_string_to_metric_families(text):
        metric_name = family.name + "_total" if family.type == "counter" else family.name
        if metric_name in contract:
            types[metric_name] = family.type
    return types


def within_bracket(name: str, value: float, first: float, second: float) -> bool:
    low, high = min(first, second), max(first, second)
    slack = 0.0
    if name.endswith("_timestamp_seconds"):
        slack = TIMESTAMP_TOLERANCE_SECONDS
    elif name in ("justtrades_database_pool_connections", "justtrades_http_requests_waiting"):
        # The exporter's concurrent requests use pooled connections and wait for the server's threads themselves.
        slack = POOL_TOLERANCE_CONNECTIONS
    slack = max(slack, RELATIVE_TOLERANCE * max(abs(low), abs(high)))
    return low - slack <= value <= high + slack


@pytest.fixture
def platform(request):
    """The lead's `platform_server` fixture: `justtrades serve` on 127.0.0.1 with a temporary SQLite database."""
    try:
        return request.getfixturevalue("platform_server")
    except pytest.FixtureLookupError:
        import os

        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("the platform_server fixture is missing from tests/conftest.py", pytrace=False)
        pytest.skip("the platform_server fixture is not available")


def wait_until_queue_empty(platform, timeout_seconds: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        status = platform.get("/api/broker-execution/status").json()
        if status["broker_execution"]["queue_size"] == 0:
            return
        time.sleep(0.2)
    raise AssertionError(f"the platform's queue did not drain within {timeout_seconds}s")


def scrape_platform(platform) -> str:
    response = requests.get(platform.url + "/metrics", timeout=10)
    assert response.status_code == 200
    return response.text


def test_exporter_equals_platform_metrics(platform, contract_catalogue):
    contract = set(contract_catalogue)

    # Give the counters and the activity timestamp something to show.
    assert platform.post_webhook(JADNQ_TOKEN, '{"action":"buy","ticker":"NQZ6","price":21500.00}').status_code < 300
    assert platform.post_webhook(JADNQ_TOKEN, '{"action":"sell","ticker":"NQ1!","price":21480.25}').status_code < 300
    assert platform.post_webhook("no-such-token", '{"action":"buy","ticker":"NQZ6"}').status_code == 404
    wait_until_queue_empty(platform)

    exporter = Exporter(ExporterSettings(platform_url=platform.url, api_key=platform.api_key, timeout_seconds=5))
    try:
        before = scrape_platform(platform)
        exported = generate_latest(exporter.registry).decode()
        after = scrape_platform(platform)
    finally:
        exporter.close()

    first = contract_samples(before, contract)
    second = contract_samples(after, contract)
    ours = contract_samples(exported, contract)

    # The comparison must cover real data, not two empty outputs.
    assert first[("justtrades_up", frozenset())] == 1.0
    assert ours[("justtrades_up", frozenset())] == 1.0
    assert ours[("justtrades_raw_webhooks_total", frozenset())] >= 3.0
    assert len({name for name, _ in ours}) >= 20

    # Same series: everything both platform scrapes show, and nothing that neither shows.
    assert set(first) & set(second) <= set(ours), sorted(set(first) & set(second) - set(ours))
    assert set(ours) <= set(first) | set(second), sorted(set(ours) - (set(first) | set(second)))

    mismatched = {
        key: (first.get(key), ours[key], second.get(key))
        for key in ours
        if key in first and key in second and not within_bracket(key[0], ours[key], first[key], second[key])
    }
    assert mismatched == {}

    # The platform may announce a family without samples (a null field); types are compared where both have one.
    our_types = family_types(exported, contract)
    platform_types = family_types(before, contract)
    assert {name: platform_types.get(name) for name in our_types} == our_types
    assert all(not math.isnan(value) for value in ours.values())
