"""/metrics render time with 1,000 traders, 200 accounts and 50 symbols, beside a bare prometheus_client registry.

The platform builds its families on every scrape from database snapshots. The baseline is bench.bare_app serving,
with the same waitress thread count, a registry that holds exactly the series the platform's scrape returned.
Goal: the platform's median scrape at most 1.5 times the baseline's.

    python -m bench.metrics_render                       # 1,000 traders, 200 accounts, 50 symbols
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import sys
import time
from pathlib import Path

from . import bulk, load, servers, workloads
from .databases import database_url_for
from .report import Report, ms


def _scrape_times(url: str, scrapes: int, budget_seconds: float) -> tuple[list[float], int]:
    """GET /metrics up to `scrapes` times within budget_seconds over one connection; return the times and size."""
    connection = load.Connection(url, timeout=60)
    times, size = [], 0
    stop_at = time.monotonic() + budget_seconds
    while len(times) < scrapes and (not times or time.monotonic() < stop_at):
        started = time.perf_counter()
        status, body = connection.request("GET", "/metrics", None, {})
        times.append(time.perf_counter() - started)
        if status != 200:
            raise RuntimeError(f"GET {url}/metrics returned HTTP {status}; see platform.log in the work folder (--keep)")
        size = len(body)
    connection.close()
    return times, size


def _complete_exposition(url: str, timeout: float = 60.0) -> bytes:
    """Return a /metrics body in which every collector completed, so the baseline serves the same series."""
    connection = load.Connection(url, timeout=30)
    deadline = time.monotonic() + timeout
    while True:
        body = connection.request("GET", "/metrics", None, {})[1]
        if b"justtrades_metrics_collector_up{" in body and b'"} 0.0' not in _collector_lines(body):
            connection.close()
            return body
        if time.monotonic() > deadline:
            raise RuntimeError(f"GET {url}/metrics still shows a collector down after {timeout:.0f} s; "
                               "see platform.log in the work folder (--keep)")
        time.sleep(0.2)


def _collector_lines(body: bytes) -> bytes:
    return b"\n".join(line for line in body.splitlines() if line.startswith(b"justtrades_metrics_collector_up{"))


def _seed(database_url: str, args, workdir: Path) -> None:
    servers.seed_platform(database_url, workloads.many_traders(args.accounts, args.traders), workdir)
    writer = bulk.BulkWriter(database_url)
    account_ids = [row for row in range(1, args.accounts + 1)]
    symbols = workloads.contract_symbols(args.symbols)
    now = dt.datetime.now(dt.timezone.utc)
    bulk.add_positions(writer, account_ids, symbols, now)
    bulk.add_fills(writer, args.fills, writer.traders(), symbols, now)
    writer.close()


def run(args) -> Report:
    report = Report("/metrics render")
    with servers.work_folder("metrics", args.keep) as workdir:
        with database_url_for(args.database, workdir) as database_url:
            _seed(database_url, args, workdir)
            report.figure("workload", f"{args.traders} traders, {args.accounts} accounts, {args.symbols} symbols, "
                          f"{args.accounts * args.symbols} positions, {args.fills} fills, {args.database}")
            report.figure("JT_METRICS_REFRESH_SECONDS", os.environ.get("JT_METRICS_REFRESH_SECONDS") or "unset (5)")

            with servers.start_platform(database_url, workdir) as platform:
                _scrape_times(platform.url, 20, args.seconds / 4)  # warm-up
                exposition = _complete_exposition(platform.url)
                (workdir / "exposition.txt").write_bytes(exposition)
                platform_times, platform_size = _scrape_times(platform.url, args.scrapes, args.seconds)

            with servers.start_bare(workdir, exposition=workdir / "exposition.txt") as bare:
                _scrape_times(bare.url, 20, args.seconds / 4)
                bare_times, bare_size = _scrape_times(bare.url, args.scrapes, args.seconds)

            series = sum(1 for line in exposition.decode().splitlines() if line and not line.startswith("#"))
            report.figure("series in the exposition", str(series))
            report.figure("timed scrapes", str(len(platform_times)), str(len(bare_times)))
            report.figure("body size", f"{platform_size} B", f"{bare_size} B")
            for label, fraction in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99)):
                report.figure(f"scrape time {label}", ms(load.percentile(platform_times, fraction)),
                              ms(load.percentile(bare_times, fraction)))
            report.goal("median scrape vs bare registry", statistics.median(platform_times)
                        / statistics.median(bare_times), 1.5, "x")
    report.finish()
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--traders", type=int, default=1000, help="traders (default 1000)")
    parser.add_argument("--accounts", type=int, default=200, help="paper accounts (default 200)")
    parser.add_argument("--symbols", type=int, default=50, help="contracts with positions (default 50)")
    parser.add_argument("--fills", type=int, default=20_000,
                        help="fills in the database, one a second up to now (default 20000)")
    parser.add_argument("--scrapes", type=int, default=200, help="timed scrapes of each server (default 200)")
    parser.add_argument("--seconds", type=float, default=30,
                        help="time budget of the timed scrapes of each server (default 30)")
    servers.add_database_argument(parser)
    servers.add_keep_argument(parser)
    run(parser.parse_args(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
