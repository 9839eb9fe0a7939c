"""Smoke test: every benchmark runs for a moment against real servers and prints its figures.

Nothing here checks a time: speed goals are judged by running the benchmarks themselves (docs/benchmarks.md).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT, _postgres_available, require_component

SHORT_RUNS = {
    "webhook_ack": ["--rate", "20", "--duration", "1", "--traders", "2", "--connections", "2",
                    "--throughput-seconds", "1", "--drain-seconds", "5"],
    "signal_to_order": ["--traders", "4", "--workers", "2", "--signals", "1", "--pause", "0.1"],
    "metrics_render": ["--traders", "20", "--accounts", "10", "--symbols", "5", "--fills", "100", "--scrapes", "5"],
    "json_endpoints": ["--rows", "300", "--fills", "300", "--requests", "2", "--database", "sqlite"],
    "memory": ["--webhooks", "40", "--steps", "1", "--connections", "2"],
    "paper_orders": ["--rate", "20", "--duration", "1", "--recorders", "2", "--drain-seconds", "30"],
    "paper_backlog": ["--jobs", "20", "--recorders", "2", "--batch-sizes", "1,4", "--database", "sqlite"],
    "claim_model": ["--seconds", "1", "--rate", "50", "--variants", "fifo,rounds"],
    "exporter_poll": ["--traders", "10", "--accounts", "5", "--fills", "100", "--requests", "2", "--scrapes", "2"],
}


def run_benchmark(name: str, arguments: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", f"bench.{name}", *arguments], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=300)


def summary_of(output: str) -> dict:
    lines = [line for line in output.splitlines() if line.startswith("summary: ")]
    assert len(lines) == 1, output[-3000:]
    return json.loads(lines[0].removeprefix("summary: "))


@pytest.mark.parametrize("name", sorted(SHORT_RUNS))
def test_benchmark_prints_figures(name):
    result = run_benchmark(name, SHORT_RUNS[name])

    assert result.returncode == 0, result.stderr[-3000:]
    assert "machine: " in result.stdout
    assert "goal: " in result.stdout
    summary = summary_of(result.stdout)
    assert summary["goals"], result.stdout
    for goal in summary["goals"]:
        assert isinstance(goal["measured"], (int, float))
        assert isinstance(goal["met"], bool)


def test_json_endpoints_on_postgresql():
    require_component(_postgres_available(), "PostgreSQL on 127.0.0.1:5432")

    result = run_benchmark("json_endpoints", ["--rows", "300", "--fills", "300", "--requests", "2",
                                              "--database", "postgresql"])

    assert result.returncode == 0, result.stderr[-3000:]
    goals = summary_of(result.stdout)["goals"]
    assert [goal["goal"] for goal in goals] == ["postgresql: slowest endpoint p99"]


def test_postgresql_database_dropped_afterwards():
    require_component(_postgres_available(), "PostgreSQL on 127.0.0.1:5432")
    import psycopg

    from bench.databases import POSTGRES_ADMIN_URL, postgres_database

    with postgres_database() as url:
        name = url.rsplit("/", 1)[1]
        with psycopg.connect(url, connect_timeout=5) as connection:
            assert connection.execute("SELECT 1").fetchone() == (1,)

    with psycopg.connect(POSTGRES_ADMIN_URL, connect_timeout=5) as admin:
        rows = admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchall()
    assert rows == []
