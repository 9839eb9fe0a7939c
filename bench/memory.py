"""Memory: resident set size of the platform process over many webhooks, after a warm-up.

Goal: RSS growth from the end of the warm-up to the end of the run at most 10%, so nothing keeps per-webhook
state in memory without a bound. The baseline is the bare Flask app taking the same number of requests.

    python -m bench.memory                        # 3,000 webhooks (about 3 minutes)
    python -m bench.memory --webhooks 100000      # the full workload
"""

from __future__ import annotations

import argparse
import sys
import threading
import time

import requests

from . import load, servers, workloads
from .databases import database_url_for
from .report import Report

TOKEN = "bench-token-0123456789abcdef"


def _webhook_request(index: int):
    return "POST", f"/webhook/{TOKEN}", workloads.alert_body(index), {"Content-Type": "application/json"}


def _drive(server: servers.ServerProcess, total: int, warmup: int, connections: int, steps: int,
           wait_for_queue: bool) -> tuple[int, int, list[tuple[int, int]], dict[int, int]]:
    """Send `total` webhooks in `steps` closed-loop batches; return RSS after warm-up, at the end, the curve, statuses."""
    statuses: dict[int, int] = {}
    curve = []
    sent = 0
    batch = max(1, (total - warmup) // steps)
    for size in [warmup] + [batch] * steps:
        _send_batch(server.url, sent, size, connections, statuses)
        sent += size
        if wait_for_queue:
            _wait_for_empty_queue(server.url, timeout=120)
        curve.append((sent, server.rss_bytes()))
    return curve[0][1], curve[-1][1], curve, statuses


def _send_batch(url: str, offset: int, count: int, connections: int, statuses: dict[int, int]) -> None:
    """Send webhooks offset .. offset + count - 1 over `connections` keep-alive connections, closed loop."""
    counter = iter(range(offset, offset + count))
    per_connection = -(-count // connections)
    connection_list = [load.Connection(url, timeout=30) for _ in range(connections)]
    lock = threading.Lock()

    def _loop(connection: load.Connection):
        for _ in range(per_connection):
            with lock:
                index = next(counter, None)
            if index is None:
                return
            method, path, body, headers = _webhook_request(index)
            try:
                status, _ = connection.request(method, path, body, headers)
            except OSError:
                status = 0
            with lock:
                statuses[status] = statuses.get(status, 0) + 1

    threads = [threading.Thread(target=_loop, args=(connection,), daemon=True) for connection in connection_list]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(600)
    for connection in connection_list:
        connection.close()


def _wait_for_empty_queue(url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if requests.get(url + "/api/broker-queue/stats", timeout=10).json()["queue_size"] == 0:
            return
        time.sleep(0.2)


def run(args) -> Report:
    report = Report("memory")
    warmup = max(1, args.webhooks // 10)
    with servers.work_folder("memory", args.keep) as workdir:
        with database_url_for(args.database, workdir) as database_url:
            servers.seed_platform(database_url, workloads.recorder_with_traders(args.traders, token=TOKEN), workdir)
            report.figure("workload", f"{args.webhooks} webhooks ({warmup} of them warm-up), {args.traders} traders, "
                          f"{args.connections} connections, {args.database}")

            started = time.monotonic()
            with servers.start_platform(database_url, workdir) as platform:
                warm, final, curve, statuses = _drive(platform, args.webhooks, warmup, args.connections, args.steps,
                                                      wait_for_queue=True)
            platform_seconds = time.monotonic() - started
            with servers.start_bare(workdir) as bare:
                bare_warm, bare_final, _, _ = _drive(bare, args.webhooks, warmup, args.connections, args.steps,
                                                     wait_for_queue=False)

            report.figure("run time", f"{platform_seconds:.0f} s")
            report.figure("responses", str(statuses))
            report.figure("RSS after warm-up", f"{warm / 2**20:.1f} MiB", f"{bare_warm / 2**20:.1f} MiB")
            report.figure("RSS at the end", f"{final / 2**20:.1f} MiB", f"{bare_final / 2**20:.1f} MiB")
            report.figure("RSS curve (webhooks: MiB)", ", ".join(f"{sent}: {rss / 2**20:.1f}" for sent, rss in curve))
            report.figure("growth after warm-up", f"{100 * (final - warm) / warm:.1f}%",
                          f"{100 * (bare_final - bare_warm) / bare_warm:.1f}%")
            report.goal("RSS growth after warm-up", 100 * (final - warm) / warm, 10.0, "%")
    report.finish()
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--webhooks", type=int, default=3_000, help="webhooks in all, warm-up included (default 3000)")
    parser.add_argument("--traders", type=int, default=2, help="traders of the recorder (default 2)")
    parser.add_argument("--connections", type=int, default=4, help="closed-loop connections (default 4)")
    parser.add_argument("--steps", type=int, default=5, help="RSS readings after the warm-up (default 5)")
    servers.add_database_argument(parser)
    servers.add_keep_argument(parser)
    run(parser.parse_args(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
