"""The exposition of a healthy platform, served over HTTP by waitress."""

from __future__ import annotations

import datetime as dt

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families
from justtrades_exporter.contract import METRIC_ENDPOINTS


def unix(text: str) -> float:
    return dt.datetime.fromisoformat(text).timestamp()


def key(name: str, **labels: str):
    return (name, frozenset(labels.items()))


EXPECTED_CONTRACT_SAMPLES = {
    key("justtrades_up"): 1.0,
    key("justtrades_market_open"): 1.0,
    key("justtrades_build_info", version="1.4.2"): 1.0,
    key("justtrades_database_up"): 1.0,
    key("justtrades_database_pool_connections", state="checked_out"): 2.0,
    key("justtrades_database_pool_connections", state="idle"): 3.0,
    key("justtrades_database_pool_connections", state="overflow"): 0.0,
    key("justtrades_open_trades"): 3.0,
    key("justtrades_indexed_positions"): 5.0,
    key("justtrades_indexed_trades"): 142.0,
    key("justtrades_broker_workers_alive"): 10.0,
    key("justtrades_broker_workers_configured"): 10.0,
    key("justtrades_broker_worker_restarts_total"): 1.0,
    key("justtrades_broker_queue_depth"): 0.0,
    key("justtrades_broker_queue_oldest_job_age_seconds"): 0.0,
    key("justtrades_broker_executions_total"): 892.0,
    key("justtrades_broker_execution_failures_total", reason="token_expired"): 2.0,
    key("justtrades_broker_execution_failures_total", reason="rate_limit_exceeded"): 1.0,
    key("justtrades_broker_execution_failures_total", reason="timeout"): 0.0,
    key("justtrades_broker_execution_avg_seconds"): 0.168,
    key("justtrades_webhook_workers_alive"): 10.0,
    key("justtrades_http_requests_waiting"): 0.0,
    key("justtrades_webhooks_processed_total"): 1543.0,
    key("justtrades_webhook_avg_latency_seconds"): 0.042,
    key("justtrades_traders_enabled"): 45.0,
    key("justtrades_trader_accounts"): 12.0,
    key("justtrades_signal_blocks_active"): 1.0,
    key("justtrades_broker_queue_processing_rate"): 12.5,
    key("justtrades_broker_queue_success_ratio"): 0.992,
    key("justtrades_webhook_signals_total", status="success"): 142.0,
    key("justtrades_webhook_signals_total", status="failed"): 5.0,
    key("justtrades_webhook_signals_total", status="blocked"): 3.0,
    key("justtrades_webhook_success_ratio"): 0.947,
    key("justtrades_webhook_last_activity_timestamp_seconds"): unix("2026-02-21T14:30:00+00:00"),
    key("justtrades_raw_webhooks_total"): 200.0,
    key("justtrades_raw_webhooks_by_action_total", action="buy"): 85.0,
    key("justtrades_raw_webhooks_by_action_total", action="sell"): 72.0,
    key("justtrades_raw_webhooks_by_action_total", action="closelong"): 20.0,
    key("justtrades_raw_webhooks_by_action_total", action="closeshort"): 18.0,
    key("justtrades_raw_webhooks_by_action_total", action="close"): 5.0,
    key("justtrades_webhook_spool_depth"): 3.0,
    key("justtrades_webhook_spool_bytes"): 1536.0,
    key("justtrades_webhook_spool_oldest_age_seconds"): 10.5,
    key("justtrades_webhook_spool_failed_files"): 0.0,
    key("justtrades_webhook_spooled_total"): 40.0,
    key("justtrades_webhook_spool_replayed_total"): 37.0,
    key("justtrades_webhook_spool_rejected_total"): 1.0,
    key("justtrades_tradingview_websocket_connected"): 1.0,
    key("justtrades_tradingview_jwt_valid"): 1.0,
    key("justtrades_tradingview_delayed"): 0.0,
    key("justtrades_tradingview_polling_fallback_active"): 0.0,
    key("justtrades_tradingview_reconnects_total"): 4.0,
    key("justtrades_tradingview_last_message_timestamp_seconds"): unix("2026-02-21T14:30:05+00:00"),
    key("justtrades_price", symbol="NQ"): 21534.75,
    key("justtrades_price", symbol="GC"): 2945.30,
    key("justtrades_price_last_update_timestamp_seconds", symbol="NQ"): unix("2026-02-21T14:30:00+00:00"),
    key("justtrades_price_last_update_timestamp_seconds", symbol="GC"): unix("2026-02-21T14:30:00+00:00"),
    key("justtrades_market_data_tokens_available"): 8.0,
    key("justtrades_accounts"): 12.0,
    key("justtrades_accounts_needing_reauth"): 1.0,
    key("justtrades_accounts_all_valid"): 0.0,
    key("justtrades_account_token_earliest_expiry_timestamp_seconds"): unix("2026-02-21T20:00:00+00:00"),
    key("justtrades_position_monitor_connections", state="subscribed"): 12.0,
    key("justtrades_position_monitor_connections", state="connecting"): 0.0,
    key("justtrades_position_monitor_connections", state="disconnected"): 1.0,
    key("justtrades_position_monitor_accounts"): 13.0,
    key("justtrades_position_monitor_last_message_timestamp_seconds"): unix("2026-02-21T14:29:58+00:00"),
    key("justtrades_position_monitor_events_total", type="position"): 40.0,
    key("justtrades_position_monitor_events_total", type="fill"): 22.0,
    key("justtrades_position_monitor_events_total", type="order"): 31.0,
    key("justtrades_position_monitor_events_total", type="other"): 5.0,
    key("justtrades_position_monitor_auth_failures_total"): 0.0,
    key("justtrades_position_monitor_stale_windows_total"): 2.0,
    key("justtrades_position_monitor_account_group_errors_total"): 0.0,
    key("justtrades_thread_up", thread="position_monitor"): 1.0,
    key("justtrades_thread_up", thread="whop_sync"): 0.0,
    key("justtrades_thread_restarts_total", thread="position_monitor"): 0.0,
    key("justtrades_thread_restarts_total", thread="whop_sync"): 2.0,
    key("justtrades_thread_last_beat_timestamp_seconds", thread="position_monitor"): unix("2026-02-21T14:29:55+00:00"),
    key("justtrades_thread_last_beat_timestamp_seconds", thread="whop_sync"): unix("2026-02-21T14:00:00+00:00"),
    key("justtrades_paper_trades", state="open"): 5.0,
    key("justtrades_paper_trades", state="closed"): 337.0,
    key("justtrades_paper_last_close_timestamp_seconds"): unix("2026-02-21T14:15:00+00:00"),
    key("justtrades_users"): 60.0,
    key("justtrades_users_approved"): 52.0,
    key("justtrades_users_affiliated"): 3.0,
    key("justtrades_recorders"): 8.0,
    key("justtrades_strategies"): 5.0,
    key("justtrades_daily_pnl_usd"): 1250.0,
    key("justtrades_max_loss_monitored_traders"): 45.0,
    key("justtrades_max_loss_breached_traders"): 2.0,
    key("justtrades_whop_sync_last_run_timestamp_seconds"): unix("2026-02-21T14:29:30+00:00"),
    key("justtrades_whop_sync_interval_seconds"): 30.0,
    key("justtrades_whop_synced_total"): 47.0,
    key("justtrades_whop_resent_total"): 12.0,
    key("justtrades_whop_pending_resends"): 0.0,
    key("justtrades_whop_stuck_users"): 0.0,
}


def contract_part(samples):
    return {k: v for k, v in samples.items() if not k[0].startswith("justtrades_exporter_")}


def test_healthy_platform_exact_samples(exporter_server, parse):
    response = requests.get(exporter_server + "/metrics", timeout=10)

    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    assert contract_part(parse(response.text)) == pytest.approx(EXPECTED_CONTRACT_SAMPLES, rel=1e-12)


def test_healthy_platform_no_errors_counted(exporter_server, parse):
    samples = parse(requests.get(exporter_server + "/metrics", timeout=10).text)

    endpoint_up = {dict(labels)["endpoint"]: v for (name, labels), v in samples.items() if name == "justtrades_exporter_endpoint_up"}
    assert len(endpoint_up) == len(METRIC_ENDPOINTS)
    assert set(endpoint_up.values()) == {1.0}

    errors = [v for (name, _), v in samples.items() if name in ("justtrades_exporter_endpoint_errors_total", "justtrades_exporter_field_errors_total")]
    assert errors, "error counters must exist at zero before any error"
    assert set(errors) == {0.0}
    assert samples[("justtrades_exporter_scrape_duration_seconds", frozenset())] > 0


def test_exposition_help_and_type_lines(exporter_server):
    text = requests.get(exporter_server + "/metrics", timeout=10).text

    assert "# TYPE justtrades_up gauge" in text
    assert "# TYPE justtrades_broker_executions_total counter" in text
    assert "justtrades_broker_executions_total 892.0" in text
    assert 'justtrades_broker_execution_failures_total{reason="token_expired"} 2.0' in text
    assert 'justtrades_build_info{version="1.4.2"} 1.0' in text
    assert "# HELP justtrades_market_open 1 while the CME Globex session is open" in text


def test_family_types_match_contract(exporter_server):
    from justtrades_exporter.contract import CONTRACT_BY_NAME

    text = requests.get(exporter_server + "/metrics", timeout=10).text
    for family in text_string_to_metric_families(text):
        if family.name.startswith("justtrades_exporter_"):
            continue
        spec_name = family.name + "_total" if family.type == "counter" else family.name
        assert CONTRACT_BY_NAME[spec_name].type == family.type


def test_api_key_sent_in_header_only(exporter_server, fake_platform):
    requests.get(exporter_server + "/metrics", timeout=10)

    assert fake_platform.requests, "the exporter polled nothing"
    for path, query, headers in fake_platform.requests:
        assert headers.get("X-API-Key") == "test-admin-key-0123456789", path
        assert "api_key" not in query, path


def test_lists_requested_with_small_limit(exporter_server, fake_platform):
    requests.get(exporter_server + "/metrics", timeout=10)

    queries = {path: query for path, query, _ in fake_platform.requests}
    assert queries["/api/webhook-activity"] == "limit=1"
    assert queries["/api/raw-webhooks"] == "limit=1"


def test_landing_page_links_metrics(exporter_server, fake_platform):
    response = requests.get(exporter_server + "/", timeout=10)

    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/html")
    assert '<a href="/metrics">' in response.text
    assert fake_platform.url in response.text
    assert "test-admin-key" not in response.text


def test_unknown_path_is_404(exporter_server):
    response = requests.get(exporter_server + "/nothing-here", timeout=10)

    assert response.status_code == 404
    assert "/metrics" in response.text


def test_openmetrics_negotiated(exporter_server):
    response = requests.get(
        exporter_server + "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}, timeout=10
    )

    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("application/openmetrics-text")
    assert response.text.rstrip().endswith("# EOF")


def test_platform_without_breakdown_reports_unclassified(fake_platform, documents, make_exporter, scrape):
    status = documents["/api/broker-execution/status"]
    del status["broker_execution"]["failures_by_reason"]
    fake_platform.set_json("/api/broker-execution/status", status)
    exporter = make_exporter(fake_platform.url)

    samples = scrape(exporter)

    failures = {k: v for k, v in samples.items() if k[0] == "justtrades_broker_execution_failures_total"}
    assert failures == {key("justtrades_broker_execution_failures_total", reason="unclassified"): 3.0}


def test_connections_list_counted_by_state(fake_platform, documents, make_exporter, scrape):
    monitor = documents["/api/position-monitor/status"]
    del monitor["connections_by_state"]
    monitor["connections"] = [{"state": "connected"}, {"state": "connected"}, {"state": "reconnecting"}]
    fake_platform.set_json("/api/position-monitor/status", monitor)
    exporter = make_exporter(fake_platform.url)

    samples = scrape(exporter)

    assert samples[key("justtrades_position_monitor_connections", state="connected")] == 2.0
    assert samples[key("justtrades_position_monitor_connections", state="reconnecting")] == 1.0


def test_connections_counts_object_read(fake_platform, documents, make_exporter, scrape):
    monitor = documents["/api/position-monitor/status"]
    del monitor["connections_by_state"]
    monitor["connections"] = {"subscribed": 4, "stale": 1}
    fake_platform.set_json("/api/position-monitor/status", monitor)
    exporter = make_exporter(fake_platform.url)

    samples = scrape(exporter)

    connections = {k: v for k, v in samples.items() if k[0] == "justtrades_position_monitor_connections"}
    assert connections == {
        key("justtrades_position_monitor_connections", state="subscribed"): 4.0,
        key("justtrades_position_monitor_connections", state="stale"): 1.0,
    }


def test_two_exporters_in_one_process(documents, make_platform, make_exporter, scrape):
    first_platform = make_platform(documents)
    second_documents = {path: dict(document) for path, document in documents.items()}
    second_documents["/status"] = dict(documents["/status"], open_trades=9)
    second_platform = make_platform(second_documents)

    first = make_exporter(first_platform.url)
    second = make_exporter(second_platform.url)
    first_samples = scrape(first)
    second_samples = scrape(second)

    assert first.registry is not second.registry
    assert first_samples[key("justtrades_open_trades")] == 3.0
    assert second_samples[key("justtrades_open_trades")] == 9.0
    assert "/status" in first_platform.paths_requested()
    assert "/status" in second_platform.paths_requested()


def test_market_open_from_clock_without_field(fake_platform, documents, make_exporter, scrape):
    health = documents["/health"]
    del health["market_open"]
    fake_platform.set_json("/health", health)
    exporter = make_exporter(fake_platform.url)
    # A Saturday noon in New York: the CME session is closed.
    exporter.scraper.now = lambda: dt.datetime(2026, 2, 21, 17, 0, tzinfo=dt.timezone.utc)

    samples = scrape(exporter)

    assert samples[key("justtrades_market_open")] == 0.0
    field_errors = {k: v for k, v in samples.items() if k[0] == "justtrades_exporter_field_errors_total" and v}
    assert field_errors == {}
