"""Paper backlog: jobs queued while the broker workers are stopped, then how fast the workers clear them.

Goal: with the default batch size the workers clear at least 200 paper jobs per second, the webhook rate of the
load scenario, so a backlog built up under load shrinks. Each batch size gets a new database. The figures are the
rate and the CPU per job of this process (where the workers run) and of the local PostgreSQL server.

    python -m bench.paper_backlog --database postgresql                    # 3000 jobs, batch sizes 1 and 16
    python -m bench.paper_backlog --database postgresql --batch-sizes 1,8,16,32
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from . import servers
from .databases import database_url_for
from .paper_orders import _children, _cpu_seconds, _cpu_used, _postgres_pids, _request_factory, _seed
from .report import Report, ms

GOAL_JOBS_PER_SECOND = 200.0


def _queue_jobs(app, jobs: int, recorders: int) -> None:
    """Send one webhook per job through the app; the stopped workers leave every job queued."""
    client = app.test_client()
    make_request = _request_factory(recorders)
    for index in range(jobs):
        method, path, body, headers = make_request(index)
        response = client.open(path, method=method, data=body, headers=headers)
        if response.status_code != 200:
            raise RuntimeError(f"webhook {index} got {response.status_code}: {response.get_data(as_text=True)}")


def _clear_backlog(args, batch_size: int, workdir) -> tuple[float, float, float, float]:
    """Return the seconds the workers took to clear the jobs, and the CPU seconds used meanwhile.

    The CPU seconds are those of this process, of its paper worker process (from its start, imports included)
    and of PostgreSQL.
    """
    from justtrades.app import create_app
    from justtrades.config import Settings

    with database_url_for(args.database, workdir / f"batch-{batch_size}") as database_url:
        servers.seed_platform(database_url, _seed(args.recorders), workdir)
        # The components read some settings from the environment themselves, so it is set for this process.
        os.environ.update(servers.platform_env(database_url, {"JT_BROKER_BATCH_SIZE": str(batch_size)}))
        app = create_app(Settings.from_environ(), start_background=False)
        runtime = app.extensions["justtrades"]
        _queue_jobs(app, args.jobs, args.recorders)

        on_postgresql = args.database == "postgresql"
        postgres_before = _cpu_seconds(_postgres_pids()) if on_postgresql else {}
        cpu_before = time.process_time()
        started = time.monotonic()
        runtime.start()
        try:
            deadline = started + args.timeout
            while runtime.jobs.queue_size() > 0:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"batch size {batch_size}: jobs still queued after {args.timeout:g} s")
                time.sleep(0.05)
            seconds = time.monotonic() - started
            cpu = time.process_time() - cpu_before
            # The paper worker process started with the workers, so all of its time counts.
            child_cpu = _cpu_used({}, _cpu_seconds(_children(os.getpid())))
            postgres_cpu = _cpu_used(postgres_before, _cpu_seconds(_postgres_pids())) if on_postgresql else 0.0
        finally:
            runtime.stop()
    return seconds, cpu, child_cpu, postgres_cpu


def run(args) -> Report:
    report = Report("paper backlog")
    report.figure("workload", f"{args.jobs} paper jobs over {args.recorders} accounts, {args.database}")
    default_batch_size = int(os.environ.get("JT_BROKER_BATCH_SIZE", "16"))
    rates = {}
    with servers.work_folder("backlog", args.keep) as workdir:
        for batch_size in args.batch_sizes:
            (workdir / f"batch-{batch_size}").mkdir()
            seconds, cpu, child_cpu, postgres_cpu = _clear_backlog(args, batch_size, workdir)
            rates[batch_size] = args.jobs / seconds
            report.section(f"batch size {batch_size}")
            report.figure("jobs per second", f"{rates[batch_size]:.0f}")
            report.figure("platform CPU per job", ms(cpu / args.jobs))
            report.figure("paper worker process CPU per job", ms(child_cpu / args.jobs))
            if args.database == "postgresql":
                report.figure("PostgreSQL CPU per job", ms(postgres_cpu / args.jobs))

    measured_size = default_batch_size if default_batch_size in rates else args.batch_sizes[-1]
    report.goal(f"jobs per second with batch size {measured_size}", rates[measured_size], GOAL_JOBS_PER_SECOND,
                "jobs/s", at_least=True)
    report.finish()
    return report


def _batch_sizes(text: str) -> list[int]:
    try:
        sizes = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--batch-sizes {text!r} is not a list of whole numbers; write e.g. 1,8")
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"--batch-sizes {text!r} needs sizes of 1 or more; write e.g. 1,8")
    return sizes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=3000, help="paper jobs to queue (default 3000)")
    parser.add_argument("--recorders", type=int, default=20, help="recorders, one paper account each (default 20)")
    parser.add_argument("--batch-sizes", type=_batch_sizes, default=[1, 16],
                        help="comma-separated JT_BROKER_BATCH_SIZE values to measure (default 1,16)")
    parser.add_argument("--timeout", type=float, default=600, help="maximum wait, in seconds, per batch size")
    servers.add_database_argument(parser)
    servers.add_keep_argument(parser)
    args = parser.parse_args(argv)
    run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
