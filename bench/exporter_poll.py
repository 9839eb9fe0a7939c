"""Exporter: time of one full poll of a running platform, beside the sum of the endpoint times it calls.

The exporter polls every endpoint of its contract on each scrape. The baseline is the sum of the median times of
those endpoints, each requested alone by this client, in the same run. Goal: the exporter's median scrape at most
1.2 times that sum.

    python -m bench.exporter_poll                   # 1,000 traders, 200 accounts, 20,000 fills
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import sys
import time
from urllib.parse import urlencode

from . import bulk, load, servers, workloads
from .databases import database_url_for
from .report import Report, ms


def _contract_paths() -> list[str]:
    from justtrades_exporter import contract

    return [endpoint.path + (f"?{urlencode(endpoint.params)}" if endpoint.params else "")
            for endpoint in contract.METRIC_ENDPOINTS]


def _median_times(url: str, paths: list[str], requests_each: int) -> dict[str, float]:
    connection = load.Connection(url, timeout=30)
    headers = {"X-API-Key": servers.BENCH_API_KEY}
    medians = {}
    for path in paths:
        connection.request("GET", path, None, headers)  # warm-up
        times = []
        for _ in range(requests_each):
            started = time.perf_counter()
            status, _ = connection.request("GET", path, None, headers)
            times.append(time.perf_counter() - started)
        if status != 200:
            raise RuntimeError(f"GET {path} returned HTTP {status}; the exporter would count the endpoint as down")
        medians[path] = statistics.median(times)
    connection.close()
    return medians


def _scrape_times(url: str, scrapes: int) -> list[float]:
    connection = load.Connection(url, timeout=60)
    connection.request("GET", "/metrics", None, {})  # warm-up
    times = []
    for _ in range(scrapes):
        started = time.perf_counter()
        status, body = connection.request("GET", "/metrics", None, {})
        times.append(time.perf_counter() - started)
        if status != 200:
            raise RuntimeError(f"exporter /metrics returned HTTP {status}; see the exporter log in the work folder (--keep)")
        if b"justtrades_exporter_endpoint_up" not in body:
            raise RuntimeError("exporter /metrics has no justtrades_exporter_endpoint_up series")
    connection.close()
    return times


def run(args) -> Report:
    report = Report("exporter poll")
    with servers.work_folder("exporter", args.keep) as workdir:
        with database_url_for(args.database, workdir) as database_url:
            servers.seed_platform(database_url, workloads.many_traders(args.accounts, args.traders), workdir)
            writer = bulk.BulkWriter(database_url)
            bulk.add_fills(writer, args.fills, writer.traders(), workloads.contract_symbols(50),
                           dt.datetime.now(dt.timezone.utc))
            writer.close()
            report.figure("workload", f"{args.traders} traders, {args.accounts} accounts, {args.fills} fills, "
                          f"{args.database}")

            paths = _contract_paths()
            with servers.start_platform(database_url, workdir) as platform, \
                    servers.start_exporter(platform.url, workdir) as exporter:
                medians = _median_times(platform.url, paths, args.requests)
                scrapes = _scrape_times(exporter.url, args.scrapes)
                medians_after = _median_times(platform.url, paths, args.requests)

            report.section(f"endpoints the exporter calls ({len(paths)}), median of {args.requests} requests each")
            for path in paths:
                report.figure(path, ms(min(medians[path], medians_after[path])))
            endpoint_sum = sum(min(medians[path], medians_after[path]) for path in paths)
            report.section("one exporter scrape")
            report.figure("exporter scrape, median", ms(statistics.median(scrapes)), f"sum {ms(endpoint_sum)}")
            report.figure("exporter scrape, p90", ms(load.percentile(scrapes, 0.9)))
            report.goal("exporter scrape vs sum of endpoint times", statistics.median(scrapes) / endpoint_sum, 1.2, "x")
    report.finish()
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--traders", type=int, default=1000, help="traders (default 1000)")
    parser.add_argument("--accounts", type=int, default=200, help="paper accounts (default 200)")
    parser.add_argument("--fills", type=int, default=20_000, help="fills, one a second up to now (default 20000)")
    parser.add_argument("--requests", type=int, default=10, help="timed requests per endpoint (default 10)")
    parser.add_argument("--scrapes", type=int, default=10, help="timed exporter scrapes (default 10)")
    servers.add_database_argument(parser)
    servers.add_keep_argument(parser)
    run(parser.parse_args(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
