"""JSON endpoints over large tables: p99 of every GET endpoint with 1,000,000 raw webhooks and activity rows.

Each endpoint is timed twice, on the seeded but otherwise empty database (the baseline, in the same run) and after
bulk rows were added, on SQLite and on PostgreSQL. Goal: every endpoint's p99 at most 50 ms, which needs
bounded, indexed queries and no full scans. Fills grow with activity in a real deployment, so the large state
also holds --fills fills.

    python -m bench.json_endpoints                        # 200,000 rows, both databases (about 3 minutes)
    python -m bench.json_endpoints --rows 1000000 --fills 1000000   # the full workload
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from pathlib import Path

from . import bulk, load, servers, workloads
from .databases import database_url_for
from .report import Report, ms

ENDPOINTS = (
    "/health",
    "/status",
    "/health/detailed",
    "/api/broker-execution/status",
    "/api/broker-execution/failures?limit=20",
    "/api/broker-queue/stats",
    "/api/webhook-activity?limit=10",
    "/api/webhook-activity?limit=500",
    "/api/raw-webhooks?limit=10",
    "/api/raw-webhooks?limit=500",
    "/api/recorders/1/execution-status",
    "/api/thread-health",
    "/api/tradingview/status",
    "/api/tradingview/auth-status",
    "/api/market-data/status",
    "/api/accounts/auth-status",
    "/api/position-monitor/status",
    "/api/admin/dashboard-stats",
    "/api/admin/max-loss-monitor/status",
    "/api/admin/whop-sync-status",
    "/api/traders/1/broker-state",
    "/api/account/1/broker-state",
    "/api/paper-trades/service-status",
)
LIMIT_MS = 50.0


def _time_endpoints(url: str, requests_each: int, budget_seconds: float) -> dict[str, tuple[int, list[float]]]:
    """GET every endpoint `requests_each` times over one keep-alive connection; return status and times.

    An endpoint stops being timed after budget_seconds, so a slow one ends the run with fewer samples.
    """
    connection = load.Connection(url, timeout=60)
    headers = {"X-API-Key": servers.BENCH_API_KEY}
    results = {}
    for path in ENDPOINTS:
        status, _ = connection.request("GET", path, None, headers)  # warm-up
        times = []
        stop_at = time.monotonic() + budget_seconds
        while len(times) < requests_each and (not times or time.monotonic() < stop_at):
            started = time.perf_counter()
            status, _ = connection.request("GET", path, None, headers)
            times.append(time.perf_counter() - started)
        results[path] = (status, times)
    connection.close()
    return results


def _measure_backend(report: Report, backend: str, args, workdir: Path) -> bool:
    with database_url_for(backend, workdir / backend) as database_url:
        (workdir / backend).mkdir(exist_ok=True)
        servers.seed_platform(database_url, workloads.many_traders(accounts=20, traders=60), workdir / backend)

        with servers.start_platform(database_url, workdir / backend) as platform:
            empty = _time_endpoints(platform.url, args.requests, args.endpoint_seconds)

        started = time.monotonic()
        writer = bulk.BulkWriter(database_url)
        now = dt.datetime.now(dt.timezone.utc)
        bulk.add_webhook_history(writer, args.rows, 1, "BENCH1", "bench-token-0001-0123456789", now)
        bulk.add_fills(writer, args.fills, writer.traders(), workloads.contract_symbols(10), now)
        writer.close()
        loaded_in = time.monotonic() - started

        with servers.start_platform(database_url, workdir / backend) as platform:
            full = _time_endpoints(platform.url, args.requests, args.endpoint_seconds)

    report.section(f"{backend}: {args.rows} raw webhooks, {args.rows} activity rows, {args.fills} fills "
                   f"(bulk load {loaded_in:.0f} s); p99 of up to {args.requests} requests each, baseline = empty database")
    all_met = True
    for path in ENDPOINTS:
        status, times = full[path]
        empty_status, empty_times = empty[path]
        if status == 404 and empty_status == 404:
            report.figure(path, "not served (404)")
            continue
        p99 = load.percentile(times, 0.99)
        suffix = "" if status == 200 else f" (HTTP {status})"
        if len(times) < args.requests:
            suffix += f" ({len(times)} requests in the time budget)"
        report.figure(path, ms(p99) + suffix, ms(load.percentile(empty_times, 0.99)))
        all_met &= p99 * 1000 <= LIMIT_MS and status == 200

    worst_path = max((path for path in ENDPOINTS if full[path][0] != 404),
                     key=lambda path: load.percentile(full[path][1], 0.99))
    report.figure("slowest endpoint", worst_path)
    report.goal(f"{backend}: slowest endpoint p99", load.percentile(full[worst_path][1], 0.99) * 1000, LIMIT_MS, "ms")
    return all_met


def run(args) -> Report:
    report = Report("JSON endpoints")
    with servers.work_folder("json", args.keep) as workdir:
        for backend in args.database:
            _measure_backend(report, backend, args, workdir)
    report.finish()
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=200_000, help="raw webhooks and activity rows (default 200000)")
    parser.add_argument("--fills", type=int, default=200_000, help="fills, one a second up to now (default 200000)")
    parser.add_argument("--requests", type=int, default=100, help="timed requests per endpoint (default 100)")
    parser.add_argument("--endpoint-seconds", type=float, default=10,
                        help="time budget per endpoint; a slower endpoint gets fewer requests (default 10)")
    parser.add_argument("--database", choices=("sqlite", "postgresql"), action="append",
                        help="repeatable; default both")
    servers.add_keep_argument(parser)
    args = parser.parse_args(argv)
    args.database = args.database or ["sqlite", "postgresql"]
    run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
