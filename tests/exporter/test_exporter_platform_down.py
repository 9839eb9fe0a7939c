"""An unreachable platform, and the reading cache: no business gauge is ever served from memory while it is down."""

from __future__ import annotations

import requests

from justtrades_exporter.contract import METRIC_ENDPOINTS


def key(name: str, **labels: str):
    return (name, frozenset(labels.items()))


def business_metrics(samples) -> set[str]:
    return {name for (name, _) in samples if not name.startswith("justtrades_exporter_")}


def test_platform_down_serves_only_up_and_market(fake_platform, make_exporter, scrape):
    exporter = make_exporter(fake_platform.url)
    fake_platform.stop()

    samples = scrape(exporter)

    assert samples[key("justtrades_up")] == 0.0
    assert business_metrics(samples) == {"justtrades_up", "justtrades_market_open"}
    endpoint_up = [v for (name, _), v in samples.items() if name == "justtrades_exporter_endpoint_up"]
    assert len(endpoint_up) == len(METRIC_ENDPOINTS)
    assert set(endpoint_up) == {0.0}
    assert samples[key("justtrades_exporter_endpoint_errors_total", endpoint="/health")] == 1.0


def test_platform_down_over_http_is_200(fake_platform, exporter_server, parse):
    fake_platform.stop()

    response = requests.get(exporter_server + "/metrics", timeout=10)

    assert response.status_code == 200
    assert parse(response.text)[key("justtrades_up")] == 0.0


def test_health_not_ok_reads_as_down(fake_platform, documents, make_exporter, scrape):
    fake_platform.set_json("/health", dict(documents["/health"], status="degraded"))
    exporter = make_exporter(fake_platform.url)

    samples = scrape(exporter)

    assert samples[key("justtrades_up")] == 0.0
    assert samples[key("justtrades_exporter_endpoint_up", endpoint="/health")] == 1.0


def test_platform_going_down_drops_all_gauges(fake_platform, make_exporter, scrape):
    exporter = make_exporter(fake_platform.url)
    assert scrape(exporter)[key("justtrades_open_trades")] == 3.0

    fake_platform.stop()
    samples = scrape(exporter)

    assert business_metrics(samples) == {"justtrades_up", "justtrades_market_open"}


def test_cache_answers_without_polling(fake_platform, make_exporter, scrape):
    exporter = make_exporter(fake_platform.url, cache_max_age_seconds=600)
    scrape(exporter)
    fake_platform.requests.clear()

    samples = scrape(exporter)

    assert fake_platform.paths_requested() == ["/health"]
    assert samples[key("justtrades_open_trades")] == 3.0
    assert samples[key("justtrades_exporter_endpoint_up", endpoint="/status")] == 1.0


def test_cache_max_age_in_help_text(fake_platform, make_exporter):
    from prometheus_client import generate_latest

    exporter = make_exporter(fake_platform.url, cache_max_age_seconds=30)

    text = generate_latest(exporter.registry).decode()

    assert "# HELP justtrades_open_trades Open trades (/status open_trades). Exporter: read from the platform at most 30s before the scrape (--cache-max-age)." in text


def test_cache_dropped_when_health_fails(fake_platform, documents, make_exporter, scrape):
    exporter = make_exporter(fake_platform.url, cache_max_age_seconds=600)
    scrape(exporter)

    fake_platform.set_raw("/health", b"<html>502 Bad Gateway</html>", status=502)
    fake_platform.set_raw("/status", b"<html>502 Bad Gateway</html>", status=502)
    down = scrape(exporter)

    assert down[key("justtrades_up")] == 0.0
    assert key("justtrades_open_trades") not in down

    # After the outage every endpoint is polled again: nothing from before it is reused.
    fake_platform.set_json("/health", documents["/health"])
    fake_platform.set_json("/status", dict(documents["/status"], open_trades=7))
    fake_platform.requests.clear()
    up = scrape(exporter)

    assert "/status" in fake_platform.paths_requested()
    assert up[key("justtrades_open_trades")] == 7.0


def test_cache_down_platform_serves_no_gauges(fake_platform, make_exporter, scrape):
    exporter = make_exporter(fake_platform.url, cache_max_age_seconds=600)
    scrape(exporter)
    fake_platform.stop()

    samples = scrape(exporter)

    assert business_metrics(samples) == {"justtrades_up", "justtrades_market_open"}


def test_cache_keeps_no_failed_answer(fake_platform, documents, make_exporter, scrape):
    fake_platform.set_raw("/status", b"<html>oops</html>", status=500)
    exporter = make_exporter(fake_platform.url, cache_max_age_seconds=600)
    scrape(exporter)

    fake_platform.set_json("/status", documents["/status"])
    fake_platform.requests.clear()
    samples = scrape(exporter)

    assert sorted(fake_platform.paths_requested()) == ["/health", "/status"]
    assert samples[key("justtrades_open_trades")] == 3.0
