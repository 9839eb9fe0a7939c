"""Claim model: the real broker worker pool, fed at a fixed rate, with claims that sleep for a modelled cost.

A claim here costs a fixed time per transaction plus a time per job, and only one runs at once, as in the paper
worker process. No database is involved, so the run shows how the pool shares the claim slot, not how fast a
claim is. Three ways to take the slot are compared:

- semaphore: each worker's batch takes a `threading.BoundedSemaphore` (the code before fix 24);
- fifo: each worker's batch takes a `FifoSlots` slot, given to workers in arrival order;
- rounds: `ClaimRounds` claims the batches of all waiting workers together (the code since fix 24).

Goal: with rounds, the backlog at the end of the run is at most one second of jobs.

    python -m bench.claim_model                                  # 200 jobs/s for 20 s, 13 ms per claim + 2 ms per job
    python -m bench.claim_model --claim-ms 30 --variants fifo,rounds
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time

from justtrades.execution.claim_rounds import ClaimRequest, ClaimRounds
from justtrades.execution.slots import FifoSlots
from justtrades.execution.workers import WorkerPool

from .report import Report

VARIANTS = ("semaphore", "fifo", "rounds")
SAMPLE_SECONDS = 0.5
# The pool checks this event between jobs; the model stops it this long after the load at most.
STOP_SECONDS = 5.0


class _NoTableStore:
    """The job store of the pool with an empty table: every job comes from `submit`."""

    instance_id = "claim-model:0:0"

    def release_dead_local_claims(self) -> int:
        return 0

    def due_jobs(self, limit: int, scope=None) -> list:
        return []


class _ModelledClaims:
    """Claims that sleep `claim_seconds + job_seconds * jobs` while they hold the one claim slot, and count jobs."""

    def __init__(self, variant: str, claim_seconds: float, job_seconds: float):
        self._claim_seconds = claim_seconds
        self._job_seconds = job_seconds
        self._slot = threading.BoundedSemaphore(1) if variant == "semaphore" else FifoSlots(1)
        self._rounds = ClaimRounds(1, self._claim_round) if variant == "rounds" else None
        self._lock = threading.Lock()
        self.claimed = 0
        self.claim_sizes: list[int] = []

    def execute(self, job_id: int) -> None:
        self.execute_batch([job_id])

    def execute_batch(self, job_ids: list[int], join=None) -> None:
        if self._rounds is not None:
            self._rounds.submit(ClaimRequest(job_ids, join))
            return
        with self._slot:
            if join is not None:
                job_ids = job_ids + join()
            self._claim(len(job_ids))

    def _claim_round(self, requests: list[ClaimRequest]) -> None:
        with self._slot:
            for request in requests:
                if request.join is not None:
                    request.job_ids += request.join()
            self._claim(sum(len(request.job_ids) for request in requests))
        for request in requests:
            request.finish(None)

    def _claim(self, jobs: int) -> None:
        time.sleep(self._claim_seconds + self._job_seconds * jobs)
        with self._lock:
            self.claimed += jobs
            self.claim_sizes.append(jobs)


def _run_variant(args, variant: str) -> dict:
    claims = _ModelledClaims(variant, args.claim_ms / 1000, args.job_ms / 1000)
    shutdown = threading.Event()
    pool = WorkerPool(
        _NoTableStore(), claims.execute, args.workers, poll_seconds=60, shutdown=shutdown,
        execute_batch=claims.execute_batch, batch_size=args.batch_size, batchable=lambda broker: True,
    )
    pool.start()

    sent, backlog_samples = 0, []
    started = time.monotonic()
    next_sample = started + SAMPLE_SECONDS
    try:
        while (elapsed := time.monotonic() - started) < args.seconds:
            # One job per lane in turn, as webhooks of as many recorders with one paper trader each.
            while sent < int(elapsed * args.rate):
                pool.submit(sent, sent % args.lanes, "NQZ6", "paper")
                sent += 1
            if time.monotonic() >= next_sample:
                backlog_samples.append(sent - claims.claimed)
                next_sample += SAMPLE_SECONDS
            time.sleep(0.002)
        # Read before the stop: the workers go on claiming what their lanes hold while they stop.
        claimed, claim_sizes = claims.claimed, list(claims.claim_sizes)
    finally:
        shutdown.set()
        pool.stop(STOP_SECONDS)

    later_half = claim_sizes[len(claim_sizes) // 2:] or [0]
    return {
        "sent": sent,
        "claimed per second": claimed / args.seconds,
        "backlog at the end": sent - claimed,
        "largest backlog": max(backlog_samples, default=0),
        "mean jobs per claim, second half": statistics.fmean(later_half),
    }


def run(args) -> Report:
    report = Report("claim model")
    report.figure("workload", f"{args.rate:g} jobs/s for {args.seconds:g} s over {args.lanes} lanes")
    report.figure("pool", f"{args.workers} workers, batches of {args.batch_size}")
    report.figure("modelled claim", f"{args.claim_ms:g} ms + {args.job_ms:g} ms per job")

    results = {}
    for variant in args.variants:
        results[variant] = _run_variant(args, variant)
        report.section(variant)
        for name, value in results[variant].items():
            report.figure(name, f"{value:.1f}" if isinstance(value, float) else str(value))

    if "rounds" in results:
        report.goal("backlog at the end with rounds", results["rounds"]["backlog at the end"], args.rate, "jobs")
    report.finish()
    return report


def _variants(text: str) -> list[str]:
    variants = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [variant for variant in variants if variant not in VARIANTS]
    if not variants or unknown:
        raise argparse.ArgumentTypeError(f"--variants {text!r}: use a comma-separated list of {', '.join(VARIANTS)}")
    return variants


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=200, help="jobs submitted per second (default 200)")
    parser.add_argument("--seconds", type=float, default=20, help="seconds of load per variant (default 20)")
    parser.add_argument("--lanes", type=int, default=20, help="accounts, one lane each (default 20)")
    parser.add_argument("--workers", type=int, default=10, help="worker threads (default 10, as JT_BROKER_WORKERS)")
    parser.add_argument("--batch-size", type=int, default=16, help="jobs per worker batch (default 16)")
    parser.add_argument("--claim-ms", type=float, default=13, help="milliseconds per claim transaction (default 13)")
    parser.add_argument("--job-ms", type=float, default=2, help="milliseconds per job in a claim (default 2)")
    parser.add_argument("--variants", type=_variants, default=list(VARIANTS),
                        help=f"comma-separated variants to run (default {','.join(VARIANTS)})")
    args = parser.parse_args(argv)
    run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
