"""Webhook acknowledgement: open-loop latency at a fixed rate and closed-loop throughput, beside a bare Flask app.

Goals: p99 acknowledgement latency at most 10 ms at 200 requests per second for a recorder with 20 traders, and
throughput at least 70% of a bare Flask endpoint served by waitress with the same thread count.

    python -m bench.webhook_ack                      # the full workload: 200 req/s for 60 s, 20 traders
    python -m bench.webhook_ack --duration 2 --throughput-seconds 1   # a quick check
"""

from __future__ import annotations

import argparse
import sys

from . import load, servers, workloads
from .databases import database_url_for
from .report import Report, ms

TOKEN = "bench-token-0123456789abcdef"


def _webhook_request(index: int):
    return "POST", f"/webhook/{TOKEN}", workloads.alert_body(index), {"Content-Type": "application/json"}


def _latency_figures(report: Report, name: str, result: load.OpenLoopResult, baseline: load.OpenLoopResult):
    report.section(name)
    for label, fraction in (("p50", 0.50), ("p90", 0.90), ("p99", 0.99), ("max", 1.0)):
        report.figure(f"ack latency {label}", ms(load.percentile(result.latencies, fraction)),
                      ms(load.percentile(baseline.latencies, fraction)))
    report.figure("requests sent / with a response", f"{result.planned} / {len(result.samples)}",
                  f"{baseline.planned} / {len(baseline.samples)}")
    report.figure("status counts", str(result.status_counts()), str(baseline.status_counts()))


def _throughput(url: str, connections: int, seconds: float, use_wrk: bool, offset: int) -> tuple[float, str]:
    if use_wrk:
        rate, counts = load.closed_loop_wrk(url, f"/webhook/{TOKEN}", workloads.WRK_BODY_FORMAT,
                                            workloads.WRK_BODY_ARGS, connections, seconds)
        return rate, f"{counts}"
    rate, statuses = load.closed_loop_python(url, lambda index: _webhook_request(offset + index), connections, seconds)
    return rate, f"{statuses}"


def run(args) -> Report:
    report = Report("webhook ack")
    use_wrk = load.wrk_available() and not args.python_client
    with servers.work_folder("ack", args.keep) as workdir:
        with database_url_for(args.database, workdir) as database_url:
            servers.seed_platform(database_url, workloads.recorder_with_traders(args.traders, token=TOKEN), workdir)
            report.figure("workload", f"{args.rate:g} req/s x {args.duration:g} s, {args.traders} traders, "
                          f"{args.database}")

            with servers.start_bare(workdir) as bare:
                load.open_loop(bare.url, _webhook_request, rate=args.rate, duration=1)  # warm-up
                bare_latency = load.open_loop(bare.url, _webhook_request, rate=args.rate, duration=args.duration)
                bare_rate, bare_counts = _throughput(bare.url, args.connections, args.throughput_seconds, use_wrk, 0)

            with servers.start_platform(database_url, workdir) as platform:
                load.open_loop(platform.url, _webhook_request, rate=args.rate, duration=1)  # warm-up
                servers.wait_for_empty_queue(platform.url, 60)
                latency = load.open_loop(platform.url, lambda i: _webhook_request(1_000_000 + i),
                                         rate=args.rate, duration=args.duration)
                backlog_at_end = servers.broker_queue_size(platform.url)
                servers.wait_for_empty_queue(platform.url, args.drain_seconds, interval=0.5)
                left = servers.broker_queue_size(platform.url)
                rate, counts = _throughput(platform.url, args.connections, args.throughput_seconds, use_wrk, 2_000_000)

            _latency_figures(report, "open loop", latency, bare_latency)
            report.figure("broker queue at end of the open loop", f"{backlog_at_end} jobs")
            report.figure("broker queue before the throughput run", f"{left} jobs")
            report.section(f"closed loop, {args.connections} connections, {args.throughput_seconds:g} s, "
                           f"client {'wrk' if use_wrk else 'python'}")
            report.figure("throughput", f"{rate:.1f} req/s", f"{bare_rate:.1f} req/s")
            report.figure("responses", counts, bare_counts)

            p99 = load.percentile(latency.latencies, 0.99)
            failed = len(latency.samples) - latency.status_counts().get(200, 0) + latency.planned - len(latency.samples)
            report.figure("requests without a 200", str(failed))
            report.goal("p99 ack latency", p99 * 1000, 10.0, "ms")
            report.goal("throughput vs bare Flask", rate / bare_rate, 0.70, "ratio", at_least=True)
    report.finish()
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=200, help="open-loop request rate, per second (default 200)")
    parser.add_argument("--duration", type=float, default=60, help="open-loop duration in seconds (default 60)")
    parser.add_argument("--traders", type=int, default=20, help="traders of the recorder (default 20)")
    parser.add_argument("--connections", type=int, default=16, help="closed-loop connections (default 16)")
    parser.add_argument("--throughput-seconds", type=float, default=15, help="closed-loop duration (default 15)")
    parser.add_argument("--drain-seconds", type=float, default=60,
                        help="how long to wait for the broker queue to empty before the throughput run (default 60)")
    servers.add_database_argument(parser)
    parser.add_argument("--python-client", action="store_true", help="use the Python closed-loop client, not wrk")
    servers.add_keep_argument(parser)
    run(parser.parse_args(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
