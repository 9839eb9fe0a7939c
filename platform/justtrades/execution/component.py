"""Wires the job store, brokers, executor and worker pool into the runtime."""

from __future__ import annotations

import dataclasses
import logging
from decimal import Decimal

from ..brokers.paper import PaperBroker
from .executor import Executor
from .jobs import JobStore
from .process import PROCESS_SCOPE, BrokerProcess, JobRouter
from .stats import ExecutionStats, WebhookStats
from .workers import WorkerPool

logger = logging.getLogger(__name__)


def init_app(app, runtime) -> None:
    settings = runtime.settings

    runtime.execution_stats = ExecutionStats(runtime.registry)
    runtime.webhook_stats = WebhookStats(runtime.registry)
    runtime.jobs = JobStore(runtime.session_factory, runtime.instance_id, settings.job_lease_seconds)
    runtime.brokers = {"paper": PaperBroker(runtime.session_factory, last_price=lambda root: _cached_price(runtime, root))}
    _add_tradovate(runtime)

    executor = Executor(
        runtime.session_factory, runtime.jobs, runtime.brokers, runtime.execution_stats, settings.job_max_attempts,
        claim_concurrency=settings.broker_claim_concurrency, claim_interval=settings.broker_claim_interval_seconds,
    )
    threads = WorkerPool(
        runtime.jobs, executor.execute, settings.broker_workers, settings.worker_poll_seconds, runtime.shutdown_event,
        execute_batch=executor.execute_batch, batch_size=settings.broker_batch_size,
        batchable=executor.places_in_database,
        scope=dataclasses.replace(PROCESS_SCOPE, others=True) if settings.broker_process else None,
    )
    if settings.broker_process:
        process = BrokerProcess(settings, runtime.execution_stats, lambda: _cached_prices(runtime))
        runtime.workers = JobRouter(threads, process)
    else:
        runtime.workers = threads
    runtime.on_start(runtime.workers.start)
    runtime.on_stop(runtime.workers.stop)


def _add_tradovate(runtime) -> None:
    try:
        from ..brokers.tradovate import build_tradovate_broker
    except ImportError:
        logger.info("Tradovate adapter not available; accounts with broker 'tradovate' will fail with account_not_found")
        return
    runtime.brokers["tradovate"] = build_tradovate_broker(runtime.settings)


def _cached_price(runtime, root: str) -> Decimal | None:
    feed = getattr(runtime, "price_feed", None)
    if feed is None:
        return None
    entry = feed.price_snapshot().get(root)
    return entry[0] if entry else None


def _cached_prices(runtime) -> dict[str, Decimal]:
    """Return the feed's last price of each contract root; the feed component starts after this one."""
    feed = getattr(runtime, "price_feed", None)
    if feed is None:
        return {}
    return {root: quote[0] for root, quote in feed.price_snapshot().items()}
