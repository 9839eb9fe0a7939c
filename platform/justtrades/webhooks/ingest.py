"""Webhook ingestion: record the raw delivery, parse, detect duplicates, filter and fan out to execution jobs.

The response never waits for a broker. It is sent once the jobs are committed, so a crash after the
acknowledgement loses nothing, and TradingView, which drops a delivery after 3 seconds, gets its answer fast.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import logging
import time

from sqlalchemy import bindparam, delete, insert, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from ..db import counters
from ..db.models import DuplicateGuard, ExecutionJob, RawWebhook, Recorder, WebhookActivity
from . import filters
from .parser import Alert, AlertError, parse_alert
from .redaction import redact_body

logger = logging.getLogger(__name__)

# Counter names in the `counters` table behind /api/webhook-activity and /api/raw-webhooks.
ACTIVITY_COUNTER = "activity_"
RAW_TOTAL_COUNTER = "raw_total"
RAW_ACTION_COUNTER = "raw_action_"
# Action names in the raw-webhook breakdown; the spellings operators see in TradingView alerts.
BREAKDOWN_NAMES = {"buy": "buy", "sell": "sell", "close": "close", "close_long": "closelong", "close_short": "closeshort"}
GUARD_CLEANUP_EVERY = 1000


@dataclasses.dataclass(frozen=True)
class Delivery:
    token: str
    body: bytes
    size_bytes: int
    too_large: bool
    content_type: str | None
    source_ip: str | None
    received_at: dt.datetime
    started: float  # time.monotonic() at the start of the request


@dataclasses.dataclass(frozen=True)
class IngestResult:
    status_code: int
    payload: dict
    outcome: str  # a WebhookStats outcome
    blocked_reason: str | None = None
    jobs: tuple[tuple[int, int, str], ...] = ()  # (job id, account id, symbol) to hand to the workers


class WebhookIngestor:
    def __init__(self, runtime):
        self._runtime = runtime
        self._session_factory = runtime.session_factory
        self._settings = runtime.settings
        self._deliveries = 0

    def ingest(self, delivery: Delivery, *, replay: bool = False) -> IngestResult:
        """Record and process one delivery; `replay` marks one coming back from the spool (see _replay_raw_id)."""
        if replay:
            raw_id, finished = self._replay_raw_id(delivery)
            if finished is not None:
                logger.info("raw webhook %s was already processed before its replay; nothing to do", raw_id)
                return finished
        else:
            raw_id = self._record_raw(delivery)

        result = self._process(delivery, raw_id)
        self._maybe_clean_guards(delivery.received_at)
        return result

    def _replay_raw_id(self, delivery: Delivery) -> tuple[int, IngestResult | None]:
        """Find the raw row an earlier attempt of this delivery wrote, so a replay records it only once.

        A delivery is spooled when the database fails at any step, so an earlier attempt (the live request, or a
        replay cut short by a crash) may have written the raw row, and may even have committed the outcome just
        before the failure. The outcome is written in the same transaction as the activity and the jobs, so a raw
        row with an outcome means the delivery is done. The row is matched by token, received time (microseconds),
        source address and stored body.
        NOTE: two identical deliveries received in the same microsecond from one address count as one here.
        """
        text, _ = redact_body(delivery.body, self._settings.raw_body_keep_bytes)
        with self._session_factory() as session:
            row = session.execute(
                select(RawWebhook.id, RawWebhook.http_status, RawWebhook.outcome)
                .where(
                    RawWebhook.received_at == delivery.received_at,
                    RawWebhook.webhook_token == delivery.token[:128],
                    RawWebhook.size_bytes == delivery.size_bytes,
                    RawWebhook.body == text,
                )
                .order_by(RawWebhook.id)
            ).first()

        if row is None:
            return self._record_raw(delivery), None
        if row.http_status is None:
            return row.id, None
        payload = {"status": "already_processed", "raw_webhook_id": row.id, "outcome": row.outcome}
        return row.id, IngestResult(row.http_status, payload, "already_processed")

    def record_forbidden(self, delivery: Delivery) -> None:
        raw_id = self._record_raw(delivery)
        with self._session_factory() as session, session.begin():
            self._close_raw(session, raw_id, 403, "forbidden", None)

    def _process(self, delivery: Delivery, raw_id: int) -> IngestResult:
        # 1. The token decides the recorder; an unknown one is logged raw and answered 404.
        with self._session_factory() as session:
            recorder = session.scalars(select(Recorder).where(Recorder.webhook_token == delivery.token)).one_or_none()
        if recorder is None:
            logger.info("raw webhook %s: unknown token from %s", raw_id, delivery.source_ip)
            return self._finish_raw(raw_id, 404, "unknown_token", {
                "error": "unknown webhook token: check the webhook URL in the TradingView alert against the recorder's URL",
            })

        if delivery.too_large:
            limit = self._settings.webhook_max_body_bytes
            return self._finish_raw(raw_id, 413, "too_large", {
                "error": f"body of {delivery.size_bytes} bytes exceeds the {limit}-byte limit: shorten the alert message",
                "field": "body",
            })

        # 2. Parse; a rejected alert is recorded as failed activity with the reason.
        try:
            alert = parse_alert(delivery.body, delivery.received_at)
        except AlertError as error:
            logger.info("raw webhook %s for recorder %s rejected: %s", raw_id, recorder.id, error.message)
            self._record_rejection(delivery, raw_id, recorder, error)
            return IngestResult(400, error.to_dict(), "rejected")

        # 3. Duplicate check, filters and fan-out commit together, so concurrent copies create one set of jobs.
        try:
            return self._accept(delivery, raw_id, recorder.id, alert)
        except _Duplicate:
            self._record_duplicate(delivery, raw_id, recorder, alert)
            return IngestResult(200, {"status": "duplicate", "message": "the same alert arrived within the duplicate "
                                      "window; no new orders were created"}, "duplicate")

    def _accept(self, delivery: Delivery, raw_id: int, recorder_id: int, alert: Alert) -> IngestResult:
        now = delivery.received_at
        try:
            with self._session_factory() as session, session.begin():
                self._claim_fingerprint(session, delivery, now)
                recorder = session.get(Recorder, recorder_id, with_for_update=True)

                reason = filters.recorder_block_reason(session, recorder, alert, now)
                traders = []
                if reason is None:
                    traders, reason = filters.eligible_traders(session, recorder, alert, now)

                status = "blocked" if reason else "success"
                activity = self._add_activity(session, delivery, raw_id, recorder, alert, status, reason, len(traders))
                job_refs = self._add_jobs(session, activity, recorder, traders, alert, now)
                if not reason:
                    recorder.last_signal_at = now

                session.flush()
                self._close_raw(session, raw_id, 200, "blocked" if reason else "accepted", alert)
        except IntegrityError as error:
            if _is_guard_conflict(error):
                raise _Duplicate() from error
            raise

        if reason:
            logger.info("activity %s: signal for recorder %s blocked (%s)", activity.id, recorder_id, reason)
            payload = {"status": "blocked", "reason": reason, "activity_id": activity.id}
            return IngestResult(200, payload, "blocked", blocked_reason=reason)

        logger.info("activity %s: %s %s for recorder %s queued %d job(s)",
                    activity.id, alert.action.value, alert.contract.symbol, recorder_id, len(job_refs))
        payload = {
            "status": "accepted",
            "activity_id": activity.id,
            "action": alert.action.value,
            "symbol": alert.contract.symbol,
            "jobs": len(job_refs),
        }
        return IngestResult(200, payload, "accepted", jobs=job_refs)

    def _claim_fingerprint(self, session, delivery: Delivery, now: dt.datetime) -> None:
        """Take the delivery's fingerprint for the duplicate window; a live copy makes the insert fail."""
        fingerprint = _fingerprint(delivery)
        expires_at = now + dt.timedelta(seconds=self._settings.duplicate_window_seconds)

        values = {"guard_fingerprint": fingerprint, "guard_expires_at": expires_at, "guard_now": now}
        renewed = session.execute(_RENEW_GUARD, values).rowcount
        if renewed == 0:
            session.execute(_INSERT_GUARD, values)

    def _add_activity(self, session, delivery, raw_id, recorder, alert, status, reason, traders_notified):
        activity = WebhookActivity(
            created_at=delivery.received_at,
            raw_webhook_id=raw_id,
            recorder_id=recorder.id,
            recorder_name=recorder.name,
            action=alert.action.value if alert else None,
            ticker=alert.contract.symbol if alert else None,
            status=status,
            reason=reason,
            latency_ms=_elapsed_ms(delivery),
            traders_notified=traders_notified,
        )
        session.add(activity)
        session.flush()
        counters.increment(session, ACTIVITY_COUNTER + status)
        return activity

    def _add_jobs(self, session, activity, recorder, traders, alert: Alert, now) -> tuple[tuple[int, int, str], ...]:
        """Insert one job per trader in one statement; return (job id, account id, symbol) of each."""
        if not traders:
            return ()

        rows = [
            {
                "idempotency_key": f"jt-{activity.id}-{trader.id}",
                "activity_id": activity.id,
                "recorder_id": recorder.id,
                "trader_id": trader.id,
                "account_id": trader.account_id,
                "action": alert.action.value,
                "symbol": alert.contract.symbol,
                # The trader's quantity is a multiplier of the alert's, so one alert sizes every subscriber's order.
                "quantity": trader.quantity * (alert.quantity or 1),
                "price": alert.price,
                "take_profit": alert.take_profit,
                "stop_loss": alert.stop_loss,
                "signal_received_at": now,
                "next_attempt_at": now,
            }
            for trader in traders
        ]
        ids = session.execute(_INSERT_JOBS, rows).scalars().all()
        return tuple((job_id, row["account_id"], row["symbol"]) for job_id, row in zip(ids, rows))

    def _record_rejection(self, delivery, raw_id, recorder, error: AlertError) -> None:
        with self._session_factory() as session, session.begin():
            session.add(WebhookActivity(
                created_at=delivery.received_at,
                raw_webhook_id=raw_id,
                recorder_id=recorder.id,
                recorder_name=recorder.name,
                status="failed",
                reason=error.message[:255],
                latency_ms=_elapsed_ms(delivery),
            ))
            counters.increment(session, ACTIVITY_COUNTER + "failed")
            self._close_raw(session, raw_id, 400, "rejected", None)

    def _record_duplicate(self, delivery, raw_id, recorder, alert: Alert) -> None:
        with self._session_factory() as session, session.begin():
            session.add(WebhookActivity(
                created_at=delivery.received_at,
                raw_webhook_id=raw_id,
                recorder_id=recorder.id,
                recorder_name=recorder.name,
                action=alert.action.value,
                ticker=alert.contract.symbol,
                status="duplicate",
                reason="same alert within the duplicate window",
                latency_ms=_elapsed_ms(delivery),
            ))
            counters.increment(session, ACTIVITY_COUNTER + "duplicate")
            self._close_raw(session, raw_id, 200, "duplicate", alert)

    def _record_raw(self, delivery: Delivery) -> int:
        text, truncated = redact_body(delivery.body, self._settings.raw_body_keep_bytes)
        raw = RawWebhook(
            received_at=delivery.received_at,
            webhook_token=delivery.token[:128],
            source_ip=delivery.source_ip,
            content_type=(delivery.content_type or "")[:128] or None,
            size_bytes=delivery.size_bytes,
            body=text,
            truncated=truncated or delivery.too_large,
        )
        with self._session_factory() as session, session.begin():
            session.add(raw)
            counters.increment(session, RAW_TOTAL_COUNTER)
            session.flush()
            return raw.id

    def _finish_raw(self, raw_id: int, status_code: int, outcome: str, payload: dict) -> IngestResult:
        with self._session_factory() as session, session.begin():
            self._close_raw(session, raw_id, status_code, outcome, None)
        return IngestResult(status_code, payload, outcome)

    def _close_raw(self, session, raw_id: int, status_code: int, outcome: str, alert: Alert | None) -> None:
        action = BREAKDOWN_NAMES[alert.action.value] if alert else None
        session.execute(
            _CLOSE_RAW, {"raw_id": raw_id, "raw_http_status": status_code, "raw_outcome": outcome, "raw_action": action}
        )
        counters.increment(session, RAW_ACTION_COUNTER + (action or "unparsed"))

    def _maybe_clean_guards(self, now: dt.datetime) -> None:
        self._deliveries += 1
        if self._deliveries % GUARD_CLEANUP_EVERY:
            return
        # The delivery's outcome is committed by now: a failure here must not make the caller spool it again.
        try:
            with self._session_factory() as session, session.begin():
                session.execute(delete(DuplicateGuard).where(DuplicateGuard.expires_at < now - dt.timedelta(hours=1)))
        except SQLAlchemyError as error:
            logger.warning("cleaning expired duplicate guards failed (%s); the next cleanup retries", type(error).__name__)


# Statements of the hot path, built once on the tables: the ORM's handling of DML on a mapped class costs
# several times the statement itself (bench/webhook_ack measures the path).
_GUARDS = DuplicateGuard.__table__
_RENEW_GUARD = (
    update(_GUARDS)
    .where(_GUARDS.c.fingerprint == bindparam("guard_fingerprint"), _GUARDS.c.expires_at <= bindparam("guard_now"))
    .values(expires_at=bindparam("guard_expires_at"))
)
_INSERT_GUARD = insert(_GUARDS).values(
    fingerprint=bindparam("guard_fingerprint"), expires_at=bindparam("guard_expires_at")
)
_JOBS = ExecutionJob.__table__
# One executemany with RETURNING; sort_by_parameter_order pairs each id with its row.
_INSERT_JOBS = insert(_JOBS).returning(_JOBS.c.id, sort_by_parameter_order=True)
_RAW = RawWebhook.__table__
_CLOSE_RAW = (
    update(_RAW)
    .where(_RAW.c.id == bindparam("raw_id"))
    .values(http_status=bindparam("raw_http_status"), outcome=bindparam("raw_outcome"), action=bindparam("raw_action"))
)


class _Duplicate(Exception):
    pass


def _fingerprint(delivery: Delivery) -> str:
    # A resent alert repeats its bytes. Two alerts that differ only in spelling ("close" and "exit") are two
    # signals, so the fingerprint is the token and the body as sent, without surrounding white space.
    digest = hashlib.sha256(delivery.token.encode())
    digest.update(b"\0")
    digest.update(delivery.body.strip())
    return digest.hexdigest()


def _is_guard_conflict(error: IntegrityError) -> bool:
    return "webhook_duplicate_guard" in str(error.orig) or "fingerprint" in str(error.orig)


def _elapsed_ms(delivery: Delivery) -> int:
    return int((time.monotonic() - delivery.started) * 1000)
