"""Snapshots of the signal path. The JSON endpoints serialise them and the Prometheus collector reads them."""

from __future__ import annotations

import datetime as dt
import os
import resource
import threading

from sqlalchemy import desc, func, select, text

from .. import __version__
from ..db import counters
from ..db.engine import urgent_calls
from ..db.models import (
    Account,
    ExecutionFailure,
    Position,
    RawWebhook,
    Recorder,
    Trader,
    WebhookActivity,
    utcnow,
)
from ..markets import calendar
from ..webhooks import filters
from ..webhooks.ingest import ACTIVITY_COUNTER, RAW_ACTION_COUNTER, RAW_TOTAL_COUNTER, BREAKDOWN_NAMES
from ..webhooks.redaction import token_digest

MAX_LIST_LIMIT = 500


def iso(moment: dt.datetime | None) -> str | None:
    """Format a UTC time the way the reference does: 2026-02-21T14:30:00Z."""
    if moment is None:
        return None
    return moment.astimezone(dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def health(runtime) -> tuple[dict, bool]:
    """Return the /health document and whether the platform is healthy (the database answers)."""
    database_ok = _database_ok(runtime)
    now = utcnow()
    document = {
        "status": "ok" if database_ok else "degraded",
        "service": "just-trades",
        "purpose": "Trading automation platform",
        "port": getattr(runtime, "port", None),
        "timestamp": iso(now),
        "version": __version__,
        "market_open": calendar.is_market_open(now),
    }
    if not database_ok:
        document["error"] = "database unreachable; see /health/detailed"
    return document, database_ok


def _database_ok(runtime) -> bool:
    # Urgent calls: a hung PostgreSQL makes the check fail within seconds instead of blocking the endpoint.
    try:
        with urgent_calls(), runtime.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        return True
    except Exception:
        return False


def system_status(runtime) -> dict:
    with runtime.session_factory() as session:
        open_trades = session.scalar(select(func.count()).select_from(Position).where(Position.net_pos != 0))
        indexed_positions = session.scalar(select(func.count()).select_from(Position))
        indexed_trades = counters.read(session, [counters.FILLS_COUNTER])[counters.FILLS_COUNTER]

    document = {
        "open_trades": open_trades,
        "indexed_positions": indexed_positions,
        "indexed_trades": indexed_trades,
        "websocket_connected": False,
        "subscribed_symbols": [],
        "cached_prices": {},
        "timestamp": iso(utcnow()),
    }
    feed = getattr(runtime, "price_feed", None)
    if feed is not None:
        feed_status = feed.snapshot()
        document["websocket_connected"] = feed_status["websocket_connected"]
        document["subscribed_symbols"] = feed_status["subscribed_symbols"]
        document["cached_prices"] = feed_status["cached_prices"]
    return document


def broker_execution(runtime) -> dict:
    stats = runtime.execution_stats.snapshot()
    webhook = runtime.webhook_stats.snapshot()
    now = utcnow()

    with runtime.session_factory() as session:
        total_enabled = session.scalar(select(func.count()).select_from(Trader).where(Trader.enabled.is_(True)))
        total_accounts = session.scalar(
            select(func.count(func.distinct(Trader.account_id))).where(Trader.enabled.is_(True))
        )
        blocked = filters.currently_blocked(session, now)
    queue = runtime.jobs.queue_state()

    return {
        "external_engine_mode": False,
        "fast_webhook": {
            "workers_alive": http_workers_alive(runtime),
            "requests_waiting": http_requests_waiting(runtime),
            "total_processed": webhook["total_processed"],
            "avg_latency_ms": webhook["avg_latency_ms"],
        },
        "broker_execution": {
            "workers_alive": runtime.workers.workers_alive(),
            "workers_configured": runtime.workers.size,
            "worker_restarts": runtime.workers.restarts,
            "queue_size": queue.size,
            "oldest_job_created_at": iso(queue.oldest_created_at),
            "oldest_job_age_seconds": _age_seconds(queue.oldest_created_at, now),
            "total_processed": stats["total_processed"],
            "total_failures": stats["total_failures"],
            "failures_by_reason": stats["failures_by_reason"],
            "avg_execution_ms": stats["avg_execution_ms"],
        },
        "traders": {"total_enabled": total_enabled, "total_accounts": total_accounts},
        "signal_blocking": {"currently_blocked": blocked},
    }


def _age_seconds(moment: dt.datetime | None, now: dt.datetime) -> float:
    """Seconds from moment to now, never negative (the job may be stored after `now` was read); 0 without one."""
    if moment is None:
        return 0.0
    return round(max((now - moment).total_seconds(), 0.0), 3)


def _paper_worker_process(runtime) -> dict | None:
    """Describe the child process that runs the paper jobs (execution/process.py); None when threads run them."""
    process = getattr(runtime.workers, "process", None)
    if process is None:
        return None
    pid = process.pid
    return {
        "pid": pid,
        "workers_alive": process.workers_alive(),
        "restarts": process.process_restarts,
        "rss_bytes": _rss_bytes(pid) if pid is not None else None,
    }


def http_workers_alive(runtime) -> int:
    """Threads of the WSGI server that serve webhooks; the serve command installs the probe."""
    probe = getattr(runtime, "http_workers_probe", None)
    return probe() if probe else 0


def http_requests_waiting(runtime) -> int:
    """Count the requests received in full that wait for a free WSGI server thread; 0 without the serve command."""
    probe = getattr(runtime, "http_queue_probe", None)
    return probe() if probe else 0


def broker_queue_stats(runtime) -> dict:
    stats = runtime.execution_stats.snapshot()
    return {
        "queue_size": runtime.jobs.queue_size(),
        "processing_rate": stats["processing_rate"],
        "success_rate": stats["success_rate"],
    }


def execution_failures(runtime, limit: int) -> dict:
    with runtime.session_factory() as session:
        rows = session.scalars(select(ExecutionFailure).order_by(desc(ExecutionFailure.id)).limit(limit)).all()
    return {
        "failures": [
            {
                "timestamp": iso(row.created_at),
                "recorder_name": row.recorder_name,
                "trader_id": row.trader_id,
                "account_id": row.account_id,
                "error": row.error,
                "reason": row.reason,
                "symbol": row.symbol,
                "action": row.action,
                "final": row.permanent,
            }
            for row in rows
        ]
    }


# The columns the two log endpoints serialise, read as plain rows: with ?limit=500, building ORM entities was
# most of the request's time.
_ACTIVITY_COLUMNS = (
    WebhookActivity.created_at, WebhookActivity.recorder_name, WebhookActivity.action, WebhookActivity.ticker,
    WebhookActivity.status, WebhookActivity.reason, WebhookActivity.latency_ms, WebhookActivity.traders_notified,
)
_RAW_COLUMNS = (
    RawWebhook.received_at, RawWebhook.token_sha256, RawWebhook.token_tail, RawWebhook.body, RawWebhook.truncated,
    RawWebhook.size_bytes,
    RawWebhook.content_type, RawWebhook.source_ip, RawWebhook.outcome, RawWebhook.http_status,
)


def webhook_activity(runtime, limit: int) -> dict:
    with runtime.session_factory() as session:
        totals = counters.read(session, [ACTIVITY_COUNTER + status for status in ("success", "failed", "blocked", "duplicate")])
        rows = session.execute(
            select(*_ACTIVITY_COLUMNS).order_by(desc(WebhookActivity.id)).limit(limit)
        ).all()

    success, failed, blocked, duplicate = (totals[ACTIVITY_COUNTER + s] for s in ("success", "failed", "blocked", "duplicate"))
    total = success + failed + blocked
    return {
        "stats": {
            "total": total,
            "success": success,
            "failed": failed,
            "blocked": blocked,
            "duplicate": duplicate,
            # No signal yet means nothing failed: 100 rather than a division by zero.
            "success_rate": round(100.0 * success / total, 1) if total else 100.0,
        },
        "activity": [
            {
                "timestamp": iso(row.created_at),
                "recorder_name": row.recorder_name,
                "action": row.action,
                "ticker": row.ticker,
                "status": row.status,
                "reason": row.reason,
                "latency_ms": row.latency_ms,
                "traders_notified": row.traders_notified,
            }
            for row in rows
        ],
    }


def raw_webhooks(runtime, limit: int) -> dict:
    with runtime.session_factory() as session:
        total = counters.read(session, [RAW_TOTAL_COUNTER])[RAW_TOTAL_COUNTER]
        breakdown = counters.read_prefix(session, RAW_ACTION_COUNTER)
        rows = session.execute(select(*_RAW_COLUMNS).order_by(desc(RawWebhook.id)).limit(limit)).all()
        # The rows keep token digests, so the recorders' tokens are hashed to name them.
        recorders = session.execute(select(Recorder.webhook_token, Recorder.name)).all() if rows else []
        recorder_names = {token_digest(token): name for token, name in recorders}

    action_breakdown = {name: breakdown.get(name, 0) for name in BREAKDOWN_NAMES.values()}
    action_breakdown.update(breakdown)
    return {
        "total": total,
        "action_breakdown": action_breakdown,
        "webhooks": [
            {
                "timestamp": iso(row.received_at),
                # The token in a webhook URL lets anyone send orders, so only its last characters are shown.
                "webhook_token": "..." + row.token_tail,
                "recorder_name": recorder_names.get(row.token_sha256),
                "raw_body": row.body,
                "truncated": row.truncated,
                "size_bytes": row.size_bytes,
                "content_type": row.content_type,
                "source_ip": row.source_ip,
                "outcome": row.outcome,
                "http_status": row.http_status,
            }
            for row in rows
        ],
    }


def recorder_execution_status(runtime, recorder_id: int) -> dict | None:
    """Explain why a recorder's signals might not execute; None when the recorder does not exist."""
    with runtime.session_factory() as session:
        recorder = session.get(Recorder, recorder_id)
        if recorder is None:
            return None
        rows = session.execute(
            select(Trader, Account).join(Account, Account.id == Trader.account_id).where(Trader.recorder_id == recorder_id)
        ).all()
        blocked = [block for block in filters.currently_blocked(session, utcnow())
                   if block.get("recorder_name") in (None, recorder.name) and block["type"] == "signal_block"]

    issues = []
    if not recorder.enabled:
        issues.append("recorder is disabled: enable it to take signals")
    outside_window = not filters.in_trading_windows(filters.parse_trading_windows(recorder.trading_windows), runtime.clock())
    if outside_window:
        issues.append(f"outside its trading windows ({recorder.trading_windows} New York time): entries are "
                      "blocked until the next window opens; closes still pass")
    if not rows:
        issues.append("recorder has no traders: subscribe at least one trader")

    enabled_accounts, missing_traders = set(), []
    for trader, account in rows:
        problem = _trader_problem(runtime, trader, account)
        if problem:
            missing_traders.append({"trader_id": trader.id, "account_id": account.id, "reason": problem})
        else:
            enabled_accounts.add(account.id)
    issues.extend(f"signal block: {block['reason']}" for block in blocked)

    if not recorder.enabled or not enabled_accounts or blocked:
        capability = "none"
    elif missing_traders or outside_window:
        capability = "partial"
    else:
        capability = "full"
    return {
        "recorder_id": recorder.id,
        "recorder_name": recorder.name,
        "enabled_accounts_count": len(enabled_accounts),
        "missing_traders": missing_traders,
        "issues": issues,
        "execution_capability": capability,
    }


def _trader_problem(runtime, trader: Trader, account: Account) -> str | None:
    if not trader.enabled:
        return "trader is disabled"
    if not account.enabled:
        return "account is disabled"
    if account.broker not in runtime.brokers:
        return f"broker {account.broker!r} is not configured"
    if account.broker == "tradovate" and account.auth_status != "valid":
        return f"account token is {account.auth_status}: re-authenticate via OAuth"
    return None


def detailed_health(runtime) -> dict:
    document, database_ok = health(runtime)
    pool = runtime.engine.pool
    return {
        "status": document["status"],
        "timestamp": document["timestamp"],
        "version": __version__,
        "uptime_seconds": round((utcnow() - runtime.started_at).total_seconds(), 1),
        "market_open": document["market_open"],
        "database": {
            "ok": database_ok,
            "backend": runtime.engine.dialect.name,
            "pool": _pool_status(pool),
        },
        "queues": {
            "broker_queue_size": runtime.jobs.queue_size() if database_ok else None,
            "http_requests_waiting": http_requests_waiting(runtime),
        },
        "workers": {
            "broker_workers_alive": runtime.workers.workers_alive(),
            "broker_workers_configured": runtime.workers.size,
            "http_workers_alive": http_workers_alive(runtime),
            "paper_worker_process": _paper_worker_process(runtime),
        },
        "threads": {
            "count": threading.active_count(),
            "names": sorted(thread.name for thread in threading.enumerate()),
        },
        "memory": {"rss_bytes": _rss_bytes(), "max_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024},
    }


def _pool_status(pool) -> dict:
    # QueuePool exposes these; SQLite's in-memory StaticPool does not, hence the getattr defaults.
    return {
        "size": getattr(pool, "size", lambda: 0)(),
        "checked_out": getattr(pool, "checkedout", lambda: 0)(),
        "idle": getattr(pool, "checkedin", lambda: 0)(),
        "overflow": max(getattr(pool, "overflow", lambda: 0)(), 0),
    }


def _rss_bytes(pid: int | None = None) -> int | None:
    """Return the resident memory of this process, or of process pid (None when it has exited)."""
    try:
        with open(f"/proc/{pid or os.getpid()}/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        if pid is not None:
            return None
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
