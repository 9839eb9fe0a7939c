"""Paper orders: webhooks at a fixed rate, each becoming one paper order, with the CPU each delivery costs.

Goal: the broker workers keep up with the rate, so the job queue is empty at most 5 s after the load ends. The
figures show where the CPU goes: the platform's process and the local PostgreSQL server's processes, per delivery.

    python -m bench.paper_orders --database postgresql               # 100 webhooks/s for 30 s, 20 recorders
    python -m bench.paper_orders --database postgresql --rate 200    # the rate of the load scenario
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from . import load, servers
from .databases import database_url_for
from .report import Report, ms

DRAIN_GOAL_SECONDS = 5.0


def _token(recorder: int) -> str:
    return f"bench-paper-{recorder:03d}-0123456789"


def _seed(recorders: int) -> dict:
    """Build one paper trader per recorder, each on its own account, so no two jobs share a worker lane."""
    return {
        "accounts": [{"name": f"Paper {index}", "broker": "paper"} for index in range(recorders)],
        "recorders": [{"name": f"PAPER{index:03d}", "webhook_token": _token(index)} for index in range(recorders)],
        "traders": [{"recorder": f"PAPER{index:03d}", "account": f"Paper {index}"} for index in range(recorders)],
    }


def _request_factory(recorders: int):
    def make_request(index: int):
        body = f'{{"action":"{"buy" if index % 2 else "sell"}","ticker":"NQ1!","price":21500.25,"alert_id":"{index}"}}'
        return "POST", f"/webhook/{_token(index % recorders)}", body.encode(), {"Content-Type": "text/plain"}

    return make_request


def _cpu_seconds(pids: list[int]) -> dict[int, float]:
    """Return the user and system CPU time of each of these processes, from /proc; a process gone is left out."""
    seconds = {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        seconds[pid] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return seconds


def _cpu_used(before: dict[int, float], after: dict[int, float]) -> float:
    """Return the CPU time spent between two readings; a process that started in between counts all of its time."""
    return sum(seconds - before.get(pid, 0.0) for pid, seconds in after.items())


def _children(pid: int) -> list[int]:
    """Return the processes whose parent is pid: the platform's paper worker process, when it runs one."""
    children = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
            continue
        if parent == pid:
            children.append(int(entry.name))
    return children


def _postgres_pids() -> list[int]:
    """Return the processes named postgres on this machine: the local server of the database.

    The pool opens connections during the load, so the list is read again at the end to count their backends.
    """
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "comm").read_text().strip() == "postgres":
                pids.append(int(entry.name))
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    return pids


def run(args) -> Report:
    report = Report("paper orders")
    with servers.work_folder("paper", args.keep) as workdir:
        with database_url_for(args.database, workdir) as database_url:
            servers.seed_platform(database_url, _seed(args.recorders), workdir)
            report.figure("workload", f"{args.rate:g} webhooks/s x {args.duration:g} s, {args.recorders} recorders "
                          f"with one paper trader each, {args.database}")

            make_request = _request_factory(args.recorders)
            with servers.start_platform(database_url, workdir) as platform:
                load.open_loop(platform.url, lambda index: make_request(10_000_000 + index), rate=20, duration=1)
                servers.wait_for_empty_queue(platform.url, 30)

                on_postgresql = args.database == "postgresql"
                workers = _children(platform.pid)
                platform_before = _cpu_seconds([platform.pid])
                workers_before = _cpu_seconds(workers)
                postgres_before = _cpu_seconds(_postgres_pids()) if on_postgresql else {}
                result = load.open_loop(platform.url, make_request, rate=args.rate, duration=args.duration)
                drained = servers.wait_for_empty_queue(platform.url, args.drain_seconds)
                platform_cpu = _cpu_used(platform_before, _cpu_seconds([platform.pid]))
                workers_cpu = _cpu_used(workers_before, _cpu_seconds(workers))
                postgres_cpu = _cpu_used(postgres_before, _cpu_seconds(_postgres_pids())) if on_postgresql else 0.0

    answered = result.status_counts().get(200, 0)
    per_delivery = max(answered, 1)
    report.section("acknowledgements")
    for label, fraction in (("p50", 0.50), ("p99", 0.99), ("max", 1.0)):
        report.figure(f"ack latency {label}", ms(load.percentile(result.latencies, fraction)))
    report.figure("requests sent / answered 200", f"{result.planned} / {answered}")
    report.section("orders")
    report.figure("queue drained after the load", "not within the limit" if drained is None else f"{drained:.1f} s")
    report.figure("platform CPU per delivery", ms(platform_cpu / per_delivery))
    if workers:
        report.figure("paper worker process CPU per delivery", ms(workers_cpu / per_delivery))
    if on_postgresql:
        report.figure("PostgreSQL CPU per delivery", ms(postgres_cpu / per_delivery))
    report.goal("seconds to drain the queue after the load", args.drain_seconds if drained is None else drained,
                DRAIN_GOAL_SECONDS, "s")
    report.finish()
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=100, help="webhooks per second (default 100)")
    parser.add_argument("--duration", type=float, default=30, help="seconds of load (default 30)")
    parser.add_argument("--recorders", type=int, default=20, help="recorders, one paper trader each (default 20)")
    parser.add_argument("--drain-seconds", type=float, default=300,
                        help="maximum wait, in seconds, for the queue to drain after the load (default 300)")
    servers.add_database_argument(parser)
    servers.add_keep_argument(parser)
    args = parser.parse_args(argv)
    run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
