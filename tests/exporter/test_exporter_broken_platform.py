"""A platform with bad responses: nulls, strings, missing keys, HTML pages, 500s, slow and dripping bodies."""

from __future__ import annotations

import datetime as dt
import logging
import time

import pytest
import requests

from justtrades_exporter import translate


def key(name: str, **labels: str):
    return (name, frozenset(labels.items()))


def field_errors(samples) -> dict[tuple[str, str], float]:
    return {
        (dict(labels)["endpoint"], dict(labels)["field"]): value
        for (name, labels), value in samples.items()
        if name == "justtrades_exporter_field_errors_total" and value
    }


def endpoint_value(samples, metric: str, endpoint: str) -> float | None:
    return samples.get(key(metric, endpoint=endpoint))


def test_null_fields_give_no_sample(fake_platform, documents, make_exporter, scrape):
    status = documents["/api/broker-execution/status"]
    status["broker_execution"]["workers_alive"] = None
    status["fast_webhook"]["avg_latency_ms"] = None
    fake_platform.set_json("/api/broker-execution/status", status)
    exporter = make_exporter(fake_platform.url)

    samples = scrape(exporter)

    assert key("justtrades_broker_workers_alive") not in samples
    assert key("justtrades_webhook_avg_latency_seconds") not in samples
    assert samples[key("justtrades_broker_queue_depth")] == 0.0
    assert field_errors(samples) == {
        ("/api/broker-execution/status", "broker_execution.workers_alive"): 1.0,
        ("/api/broker-execution/status", "fast_webhook.avg_latency_ms"): 1.0,
    }


def test_missing_keys_give_no_sample(fake_platform, documents, make_exporter, scrape):
    stats = documents["/api/admin/dashboard-stats"]
    del stats["total_users"]
    fake_platform.set_json("/api/admin/dashboard-stats", stats)
    whop = documents["/api/admin/whop-sync-status"]
    del whop["stuck_users"]
    fake_platform.set_json("/api/admin/whop-sync-status", whop)
    exporter = make_exporter(fake_platform.url)

    samples = scrape(exporter)

    assert key("justtrades_users") not in samples
    assert key("justtrades_whop_stuck_users") not in samples
    assert samples[key("justtrades_users_approved")] == 52.0
    assert field_errors(samples) == {
        ("/api/admin/dashboard-stats", "total_users"): 1.0,
        ("/api/admin/whop-sync-status", "stuck_users"): 1.0,
    }


def test_strings_and_offsets_are_read(fake_platform, documents, make_exporter, scrape):
    status = documents["/api/broker-execution/status"]
    status["broker_execution"]["workers_alive"] = "9"
    status["broker_execution"]["avg_execution_ms"] = " 250.5 "
    fake_platform.set_json("/api/broker-execution/status", status)
    tradingview = documents["/api/tradingview/status"]
    tradingview["websocket_connected"] = "false"
    tradingview["jwt_token_valid"] = 1
    tradingview["last_message_at"] = "2026-02-21T09:30:05-05:00"
    tradingview["cached_prices"]["NQ"]["last"] = "21534.75"
    fake_platform.set_json("/api/tradingview/status", tradingview)
    exporter = make_exporter(fake_platform.url)

    samples = scrape(exporter)

    assert samples[key("justtrades_broker_workers_alive")] == 9.0
    assert samples[key("justtrades_broker_execution_avg_seconds")] == pytest.approx(0.2505)
    assert samples[key("justtrades_tradingview_websocket_connected")] == 0.0
    assert samples[key("justtrades_tradingview_jwt_valid")] == 1.0
    expected = dt.datetime(2026, 2, 21, 14, 30, 5, tzinfo=dt.timezone.utc).timestamp()
    assert samples[key("justtrades_tradingview_last_message_timestamp_seconds")] == expected
    assert samples[key("justtrades_price", symbol="NQ")] == 21534.75
    assert field_errors(samples) == {}


@pytest.mark.parametrize(
    "bad_value",
    [[], {}, True, "ten", "NaN", "", "1e999"],
    ids=["list", "object", "boolean", "word", "nan", "empty", "overflow"],
)
def test_mistyped_number_gives_no_sample(fake_platform, documents, make_exporter, scrape, bad_value):
    status = documents["/status"]
    status["open_trades"] = bad_value
    fake_platform.set_json("/status", status)
    exporter = make_exporter(fake_platform.url)

    samples = scrape(exporter)

    assert key("justtrades_open_trades") not in samples
    assert samples[key("justtrades_indexed_trades")] == 142.0
    assert field_errors(samples) == {("/status", "open_trades"): 1.0}


@pytest.mark.parametrize("bad_time", ["2026-02-21T14:29:30", "yesterday", None, True], ids=["naive", "word", "null", "boolean"])
def test_bad_timestamp_gives_no_sample(fake_platform, documents, make_exporter, scrape, bad_time):
    whop = documents["/api/admin/whop-sync-status"]
    whop["last_run"] = bad_time
    fake_platform.set_json("/api/admin/whop-sync-status", whop)
    exporter = make_exporter(fake_platform.url)

    samples = scrape(exporter)

    assert key("justtrades_whop_sync_last_run_timestamp_seconds") not in samples
    assert field_errors(samples) == {("/api/admin/whop-sync-status", "last_run"): 1.0}


def test_bad_items_of_a_mapping(fake_platform, documents, make_exporter, scrape):
    tradingview = documents["/api/tradingview/status"]
    tradingview["cached_prices"] = {
        "NQ": {"last": None, "updated": "2026-02-21T14:30:00Z"},
        "GC": "2945.30",
        "ES": {"last": 6120.5},
    }
    fake_platform.set_json("/api/tradingview/status", tradingview)
    threads = {"threads": {"feed": {"status": 1, "restarts": "x", "last_beat": "2026-02-21T14:29:55Z"}}}
    fake_platform.set_json("/api/thread-health", threads)
    exporter = make_exporter(fake_platform.url)

    samples = scrape(exporter)

    assert key("justtrades_price", symbol="NQ") not in samples
    assert key("justtrades_price_last_update_timestamp_seconds", symbol="NQ") in samples
    assert key("justtrades_price", symbol="GC") not in samples
    assert samples[key("justtrades_price", symbol="ES")] == 6120.5
    assert key("justtrades_price_last_update_timestamp_seconds", symbol="ES") not in samples
    assert key("justtrades_thread_up", thread="feed") not in samples
    assert key("justtrades_thread_restarts_total", thread="feed") not in samples
    assert key("justtrades_thread_last_beat_timestamp_seconds", thread="feed") in samples
    assert field_errors(samples) == {
        ("/api/tradingview/status", "cached_prices.*.last"): 1.0,
        ("/api/tradingview/status", "cached_prices.*"): 1.0,
        ("/api/tradingview/status", "cached_prices.*.updated"): 1.0,
        ("/api/thread-health", "threads.*.status"): 1.0,
        ("/api/thread-health", "threads.*.restarts"): 1.0,
    }


def test_field_errors_accumulate_across_scrapes(fake_platform, documents, make_exporter, scrape):
    documents["/status"]["open_trades"] = None
    fake_platform.set_json("/status", documents["/status"])
    exporter = make_exporter(fake_platform.url)

    scrape(exporter)
    samples = scrape(exporter)

    assert field_errors(samples) == {("/status", "open_trades"): 2.0}


def test_field_error_logged_once_per_interval(fake_platform, documents, make_exporter, scrape, caplog):
    documents["/status"]["open_trades"] = None
    fake_platform.set_json("/status", documents["/status"])
    exporter = make_exporter(fake_platform.url)

    with caplog.at_level(logging.WARNING, logger="justtrades_exporter"):
        scrape(exporter)
        scrape(exporter)
        scrape(exporter)

    lines = [record.getMessage() for record in caplog.records if "open_trades" in record.getMessage()]
    assert lines == ["endpoint /status field open_trades gives no sample: expected a number, got null"]


@pytest.mark.parametrize(
    "status, body, content_type",
    [
        (200, b"<html><body>Application error</body></html>", "text/html"),
        (500, b'{"error": "internal error"}', "application/json"),
        (502, b"<html><h1>502 Bad Gateway</h1></html>", "text/html"),
        (200, b'[1, 2, 3]', "application/json"),
        (200, b'{"open_trades": 3', "application/json"),
    ],
    ids=["html-200", "json-500", "html-502", "json-list", "truncated-json"],
)
def test_bad_answer_marks_endpoint_down(fake_platform, make_exporter, scrape, status, body, content_type):
    fake_platform.set_raw("/status", body, status=status, content_type=content_type)
    exporter = make_exporter(fake_platform.url)

    samples = scrape(exporter)

    assert endpoint_value(samples, "justtrades_exporter_endpoint_up", "/status") == 0.0
    assert endpoint_value(samples, "justtrades_exporter_endpoint_errors_total", "/status") == 1.0
    assert key("justtrades_open_trades") not in samples
    assert samples[key("justtrades_up")] == 1.0
    assert samples[key("justtrades_broker_workers_alive")] == 10.0


def test_missing_api_key_marks_keyed_endpoints_down(fake_platform, make_exporter, scrape, caplog):
    exporter = make_exporter(fake_platform.url, api_key=None)

    with caplog.at_level(logging.WARNING, logger="justtrades_exporter"):
        samples = scrape(exporter)

    assert endpoint_value(samples, "justtrades_exporter_endpoint_up", "/api/broker-execution/status") == 0.0
    assert endpoint_value(samples, "justtrades_exporter_endpoint_up", "/status") == 1.0
    assert key("justtrades_broker_workers_alive") not in samples
    assert any("HTTP 401" in r.getMessage() and "JT_EXPORTER_API_KEY" in r.getMessage() for r in caplog.records)


def test_everything_broken_still_answers_200(fake_platform, make_exporter, exporter_server, parse):
    for path in list(fake_platform.routes):
        fake_platform.set_raw(path, b"<html>oops</html>", status=500)

    response = requests.get(exporter_server + "/metrics", timeout=10)

    assert response.status_code == 200
    samples = parse(response.text)
    assert samples[key("justtrades_up")] == 0.0
    business = {name for (name, _) in samples if not name.startswith("justtrades_exporter_")}
    assert business == {"justtrades_up", "justtrades_market_open"}


def test_translation_bug_keeps_other_endpoints(fake_platform, make_exporter, scrape, monkeypatch):
    def broken(reader, samples):
        raise RuntimeError("bug")

    monkeypatch.setitem(translate.TRANSLATORS, next(e for e in translate.TRANSLATORS if e.path == "/status"), broken)
    exporter = make_exporter(fake_platform.url)

    samples = scrape(exporter)

    assert endpoint_value(samples, "justtrades_exporter_endpoint_up", "/status") == 0.0
    assert key("justtrades_open_trades") not in samples
    assert samples[key("justtrades_broker_workers_alive")] == 10.0


def test_slow_endpoint_times_out(fake_platform, make_exporter, scrape):
    fake_platform.set_delay("/api/broker-queue/stats", 30)
    exporter = make_exporter(fake_platform.url, timeout_seconds=0.5, scrape_timeout_seconds=5)

    started = time.monotonic()
    samples = scrape(exporter)
    elapsed = time.monotonic() - started

    assert elapsed < 3.0
    assert endpoint_value(samples, "justtrades_exporter_endpoint_up", "/api/broker-queue/stats") == 0.0
    assert endpoint_value(samples, "justtrades_exporter_endpoint_errors_total", "/api/broker-queue/stats") == 1.0
    assert key("justtrades_broker_queue_processing_rate") not in samples
    assert samples[key("justtrades_open_trades")] == 3.0


def test_scrape_deadline_cuts_slow_polls(fake_platform, make_exporter, scrape):
    # Each request's timeout (20 s) is longer than the scrape's, so only the deadline can end the scrape.
    fake_platform.set_delay("/status", 30)
    fake_platform.set_delay("/health/detailed", 30)
    exporter = make_exporter(fake_platform.url, timeout_seconds=20, scrape_timeout_seconds=1.5)

    started = time.monotonic()
    samples = scrape(exporter)
    elapsed = time.monotonic() - started

    assert elapsed < 3.0
    assert endpoint_value(samples, "justtrades_exporter_endpoint_up", "/status") == 0.0
    assert endpoint_value(samples, "justtrades_exporter_endpoint_up", "/health/detailed") == 0.0
    assert samples[key("justtrades_up")] == 1.0


def test_dripping_answer_cut_at_deadline(fake_platform, make_exporter, scrape):
    # One byte every 0.2 s never trips a 20 s socket timeout; the body read checks the deadline itself.
    fake_platform.set_drip("/api/market-data/status", 0.2)
    exporter = make_exporter(fake_platform.url, timeout_seconds=20, scrape_timeout_seconds=1.5)

    started = time.monotonic()
    samples = scrape(exporter)
    elapsed = time.monotonic() - started

    assert elapsed < 3.0
    assert endpoint_value(samples, "justtrades_exporter_endpoint_up", "/api/market-data/status") == 0.0
    assert key("justtrades_market_data_tokens_available") not in samples


def test_prometheus_scrape_timeout_header_shortens_deadline(fake_platform, exporter_server):
    fake_platform.set_delay("/status", 30)

    started = time.monotonic()
    response = requests.get(
        exporter_server + "/metrics", headers={"X-Prometheus-Scrape-Timeout-Seconds": "1.5"}, timeout=10
    )
    elapsed = time.monotonic() - started

    assert response.status_code == 200
    # The fixture's exporter allows 2 s per request and 5 s per scrape; the header's 1.5 s must win.
    assert elapsed < 1.9
    assert 'justtrades_exporter_endpoint_up{endpoint="/status"} 0.0' in response.text


def test_scraper_bug_still_answers_200(exporter_server, exporter, monkeypatch, caplog):
    def broken(deadline, extra_endpoints=()):
        raise RuntimeError("bug")

    monkeypatch.setattr(exporter.scraper, "read", broken)

    with caplog.at_level(logging.ERROR, logger="justtrades_exporter"):
        response = requests.get(exporter_server + "/metrics", timeout=10)

    assert response.status_code == 200
    assert "justtrades_up" not in response.text
    assert any("this scrape has no platform metrics" in record.getMessage() for record in caplog.records)


def test_platform_without_spool_endpoint_counts_no_error(fake_platform, make_exporter, scrape):
    del fake_platform.routes["/api/webhook-spool"]
    exporter = make_exporter(fake_platform.url)

    samples = scrape(exporter)

    assert key("justtrades_webhook_spool_depth") not in samples
    assert key("justtrades_webhook_spooled_total") not in samples
    assert endpoint_value(samples, "justtrades_exporter_endpoint_up", "/api/webhook-spool") is None
    assert endpoint_value(samples, "justtrades_exporter_endpoint_errors_total", "/api/webhook-spool") == 0.0
    assert samples[key("justtrades_up")] == 1.0


def test_failing_spool_endpoint_counts_error(fake_platform, make_exporter, scrape):
    fake_platform.set_raw("/api/webhook-spool", b"<html>proxy error</html>", status=502)
    exporter = make_exporter(fake_platform.url)

    samples = scrape(exporter)

    assert key("justtrades_webhook_spool_depth") not in samples
    assert endpoint_value(samples, "justtrades_exporter_endpoint_up", "/api/webhook-spool") == 0.0
    assert endpoint_value(samples, "justtrades_exporter_endpoint_errors_total", "/api/webhook-spool") == 1.0


def test_spool_document_read(fake_platform, make_exporter, scrape):
    exporter = make_exporter(fake_platform.url)

    samples = scrape(exporter)

    assert samples[key("justtrades_webhook_spool_depth")] == 3.0
    assert samples[key("justtrades_webhook_spool_bytes")] == 1536.0
    assert samples[key("justtrades_webhook_spool_oldest_age_seconds")] == 10.5
    assert samples[key("justtrades_webhook_spool_failed_files")] == 0.0
    assert samples[key("justtrades_webhook_spooled_total")] == 40.0
    assert samples[key("justtrades_webhook_spool_replayed_total")] == 37.0
    assert samples[key("justtrades_webhook_spool_rejected_total")] == 1.0
    assert endpoint_value(samples, "justtrades_exporter_endpoint_up", "/api/webhook-spool") == 1.0


# Fields of this platform that the reference's broker status lacks: (block, fields, series left out, series kept).
REFERENCE_GAPS = [
    ("broker_execution", ("oldest_job_created_at", "oldest_job_age_seconds"),
     "justtrades_broker_queue_oldest_job_age_seconds", "justtrades_broker_queue_depth"),
    ("fast_webhook", ("requests_waiting",), "justtrades_http_requests_waiting", "justtrades_webhook_workers_alive"),
]


@pytest.mark.parametrize(("block", "fields", "left_out", "kept"), REFERENCE_GAPS)
def test_field_missing_in_reference_counts_no_error(fake_platform, documents, make_exporter, scrape, block, fields,
                                                    left_out, kept):
    status = documents["/api/broker-execution/status"]
    for field in fields:
        del status[block][field]
    fake_platform.set_json("/api/broker-execution/status", status)
    exporter = make_exporter(fake_platform.url)

    samples = scrape(exporter)

    assert key(kept) in samples
    assert key(left_out) not in samples
    assert field_errors(samples) == {}


def test_queue_age_read_when_reported(fake_platform, documents, make_exporter, scrape):
    status = documents["/api/broker-execution/status"]
    status["broker_execution"].update(queue_size=120, oldest_job_created_at="2026-02-21T14:29:58.500Z",
                                      oldest_job_age_seconds=1.5)
    fake_platform.set_json("/api/broker-execution/status", status)
    exporter = make_exporter(fake_platform.url)

    samples = scrape(exporter)

    assert samples[key("justtrades_broker_queue_depth")] == 120.0
    assert samples[key("justtrades_broker_queue_oldest_job_age_seconds")] == 1.5


def test_http_queue_read_when_reported(fake_platform, documents, make_exporter, scrape):
    status = documents["/api/broker-execution/status"]
    status["fast_webhook"]["requests_waiting"] = 37
    fake_platform.set_json("/api/broker-execution/status", status)
    exporter = make_exporter(fake_platform.url)

    samples = scrape(exporter)

    assert samples[key("justtrades_http_requests_waiting")] == 37.0
