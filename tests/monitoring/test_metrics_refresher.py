"""The metrics snapshot: scrapes render the refresher's last run, never run the collectors, and show its age."""

from __future__ import annotations

import threading
import time

import pytest
from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.parser import text_string_to_metric_families

from justtrades.monitoring.refresher import HEALTH_LANE, REFRESHER_THREAD, MetricsSettings, MetricsSnapshot

from ..conftest import TEST_API_KEY, build_app

NQ_TOKEN = "demo-nq-7f3a9c2e41b8d605"


class FakeClock:
    def __init__(self):
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


class OneRunContext:
    """Thread context that stops the refresher after `runs` refreshes."""

    def __init__(self, runs: int = 1):
        self.runs = runs
        self.beats = 0

    def beat(self):
        self.beats += 1

    def stopping(self) -> bool:
        return self.beats >= self.runs

    def wait(self, seconds: float) -> bool:
        return self.stopping()


class CountingCollector:
    """Yields one gauge whose value is the number of times it ran."""

    def __init__(self, name: str = "jt_test_runs"):
        self.name = name
        self.runs = 0

    def __call__(self):
        self.runs += 1
        yield GaugeMetricFamily(self.name, "Runs of the test collector.", value=self.runs)


def values(exposition: bytes) -> dict[tuple[str, tuple], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(exposition.decode())
        for sample in family.samples
    }


def snapshot_in_registry(clock=None) -> tuple[MetricsSnapshot, CollectorRegistry]:
    snapshot = MetricsSnapshot(clock=clock or FakeClock())
    registry = CollectorRegistry(auto_describe=False)
    registry.register(snapshot)
    return snapshot, registry


def test_scrape_renders_last_refresh_without_collecting():
    clock = FakeClock()
    snapshot, registry = snapshot_in_registry(clock)
    collector = CountingCollector()
    snapshot.add("counting", collector)

    snapshot.run(OneRunContext(runs=1), interval=5)
    clock.now += 3.5
    first = values(snapshot.render(registry))
    second = values(generate_latest(registry))

    assert collector.runs == 1
    assert first[("jt_test_runs", ())] == 1
    assert second[("jt_test_runs", ())] == 1
    assert first[("justtrades_metrics_snapshot_age_seconds", ())] == 3.5
    assert first[("justtrades_metrics_collector_up", (("collector", "counting"),))] == 1


def test_live_collector_runs_on_every_scrape():
    snapshot, registry = snapshot_in_registry()
    refreshed = CountingCollector()
    live = CountingCollector("jt_test_live_runs")
    snapshot.add("refreshed", refreshed)
    snapshot.add("live", live, live=True)

    snapshot.run(OneRunContext(runs=1), interval=5)
    snapshot.render(registry)
    latest = values(snapshot.render(registry))

    assert refreshed.runs == 1
    assert live.runs == 2
    assert latest[("jt_test_live_runs", ())] == 2
    assert latest[("justtrades_metrics_collector_up", (("collector", "live"),))] == 1


def test_without_refresher_every_scrape_collects():
    snapshot, registry = snapshot_in_registry()
    collector = CountingCollector()
    snapshot.add("counting", collector)

    snapshot.render(registry)
    latest = values(snapshot.render(registry))

    assert collector.runs == 2
    assert latest[("jt_test_runs", ())] == 2
    assert latest[("justtrades_metrics_snapshot_age_seconds", ())] == 0


def test_render_matches_generate_latest_with_live_metrics():
    registry = CollectorRegistry(auto_describe=False)
    snapshot = MetricsSnapshot(registry, clock=FakeClock())
    snapshot.add("counting", CountingCollector())
    snapshot.add("live", CountingCollector("jt_test_live_runs"), live=True)
    events = Counter("jt_test_events", "Test events.", registry=registry)
    events.inc(7)
    snapshot.run(OneRunContext(runs=1), interval=5)
    snapshot.run(OneRunContext(runs=1), interval=5, lane=HEALTH_LANE)

    rendered = values(snapshot.render(registry))
    generated = values(generate_latest(registry))

    assert rendered.keys() == generated.keys()
    assert rendered[("jt_test_events_total", ())] == 7
    assert rendered[("jt_test_runs", ())] == 1


def test_registry_metrics_refresh_with_health_lane():
    registry = CollectorRegistry(auto_describe=False)
    snapshot = MetricsSnapshot(registry, clock=FakeClock())
    events = Counter("jt_test_events", "Test events.", registry=registry)
    snapshot.run(OneRunContext(runs=1), interval=5, lane=HEALTH_LANE)
    events.inc(3)

    before = values(snapshot.render(registry))
    snapshot.run(OneRunContext(runs=1), interval=5, lane=HEALTH_LANE)
    after = values(snapshot.render(registry))

    assert before[("jt_test_events_total", ())] == 0
    assert after[("jt_test_events_total", ())] == 3


def test_failing_collector_is_down_and_keeps_partial_families():
    def partial():
        yield GaugeMetricFamily("jt_test_before_failure", "Built before the failure.", value=4)
        raise RuntimeError("database is unreachable")

    snapshot, registry = snapshot_in_registry()
    snapshot.add("partial", partial)
    snapshot.add("counting", CountingCollector())
    snapshot.run(OneRunContext(runs=1), interval=5)

    latest = values(snapshot.render(registry))

    assert latest[("justtrades_metrics_collector_up", (("collector", "partial"),))] == 0
    assert latest[("justtrades_metrics_collector_up", (("collector", "counting"),))] == 1
    assert latest[("jt_test_before_failure", ())] == 4
    assert latest[("jt_test_runs", ())] == 1


def test_hung_collector_keeps_last_values_others_update():
    clock = FakeClock()
    snapshot, registry = snapshot_in_registry(clock)
    release = threading.Event()
    entered = threading.Event()
    runs = []

    def hangs_on_second_run():
        runs.append(1)
        if len(runs) == 2:
            entered.set()
            release.wait(30)
        yield GaugeMetricFamily("jt_test_hanging_runs", "Runs of the hanging collector.", value=len(runs))

    quick = CountingCollector()
    snapshot.add("quick", quick)
    snapshot.add("hanging", hangs_on_second_run)
    refresher = threading.Thread(target=snapshot.run, args=(OneRunContext(runs=2), 0.01), daemon=True)
    refresher.start()
    try:
        assert entered.wait(10), "the refresher never started its second run"
        clock.now += 42
        latest = values(snapshot.render(registry))
    finally:
        release.set()
        refresher.join(10)

    assert not refresher.is_alive()
    assert latest[("jt_test_runs", ())] == 2
    assert latest[("jt_test_hanging_runs", ())] == 1
    assert latest[("justtrades_metrics_snapshot_age_seconds", ())] == 42


def test_health_lane_publishes_while_database_lane_hangs():
    snapshot, registry = snapshot_in_registry()
    release = threading.Event()
    entered = threading.Event()

    def hangs():
        entered.set()
        release.wait(30)
        yield GaugeMetricFamily("jt_test_hanging_runs", "Runs of the hanging collector.", value=1)

    health = CountingCollector("jt_test_health_runs")
    snapshot.add("hanging", hangs)
    snapshot.add("health", health, lane=HEALTH_LANE)
    database_thread = threading.Thread(target=snapshot.run, args=(OneRunContext(runs=1), 0.01), daemon=True)
    health_thread = threading.Thread(target=snapshot.run, args=(OneRunContext(runs=3), 0.01, HEALTH_LANE), daemon=True)
    database_thread.start()
    try:
        assert entered.wait(10), "the database lane never started"
        health_thread.start()
        health_thread.join(10)
        latest = values(snapshot.render(registry))
    finally:
        release.set()
        database_thread.join(10)

    assert not health_thread.is_alive()
    assert health.runs == 3
    assert latest[("jt_test_health_runs", ())] == 3
    assert ("jt_test_hanging_runs", ()) not in latest
    assert latest[("justtrades_metrics_collector_up", (("collector", "hanging"),))] == 0


def test_unknown_lane_is_rejected():
    snapshot = MetricsSnapshot()

    with pytest.raises(ValueError, match="lane 'slow'"):
        snapshot.add("counting", CountingCollector(), lane="slow")


@pytest.mark.parametrize("raw", ["soon", "-1", "7200"])
def test_invalid_refresh_seconds_names_variable(raw):
    with pytest.raises(ValueError, match="JT_METRICS_REFRESH_SECONDS"):
        MetricsSettings.from_environ({"JT_METRICS_REFRESH_SECONDS": raw})


def test_refresh_seconds_default_and_zero():
    assert MetricsSettings.from_environ({}).refresh_seconds == 5
    assert MetricsSettings.from_environ({"JT_METRICS_REFRESH_SECONDS": "0"}).refresh_seconds == 0


def test_refresher_thread_brings_webhook_into_metrics(database_url, monkeypatch):
    monkeypatch.setenv("JT_METRICS_REFRESH_SECONDS", "0.2")
    app = build_app(database_url, start_background=True)
    client = app.test_client()
    try:
        client.post(f"/webhook/{NQ_TOKEN}", data='{"action":"buy","ticker":"NQ1!","price":1}')
        raw_total = client.get("/api/raw-webhooks", headers={"X-API-Key": TEST_API_KEY}).get_json()["total"]
        threads = client.get("/api/thread-health", headers={"X-API-Key": TEST_API_KEY}).get_json()["threads"]

        latest = {}
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            latest = values(client.get("/metrics").get_data())
            if latest.get(("justtrades_raw_webhooks_total", ())) == raw_total:
                break
            time.sleep(0.1)
    finally:
        app.extensions["justtrades"].stop()

    assert raw_total == 1
    assert threads[REFRESHER_THREAD]["status"] == "running"
    assert threads["metrics-health"]["status"] == "running"
    assert latest.get(("justtrades_raw_webhooks_total", ())) == raw_total
    assert latest[("justtrades_metrics_collector_up", (("collector", "signal path"),))] == 1
    assert latest[("justtrades_metrics_snapshot_age_seconds", ())] >= 0
