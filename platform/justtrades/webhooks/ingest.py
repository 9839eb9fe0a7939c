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
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError

from ..db import counters
from ..db.models import DuplicateGuard, ExecutionJob, RawWebhook, Recorder, WebhookActivity
from . import filters
from .parser import Alert, AlertError, parse_alert
from .redaction import redact_body, token_digest, token_tail

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


# (job id, account id, symbol, broker of the account or None) of a new execution job.
JobRef = tuple[int, int, str, str | None]


@dataclasses.dataclass(frozen=True)
class IngestResult:
    status_code: int
    payload: dict
    outcome: str  # a WebhookStats outcome
    blocked_reason: str | None = None
    jobs: tuple[JobRef, ...] = ()  # the jobs to hand to the workers


@dataclasses.dataclass
class _Decision:
    """The outcome of one delivery: its response, and the rows it adds besides the raw row."""

    status_code: int
    outcome: str  # a WebhookStats outcome, also stored as the raw row's outcome
    payload: dict
    alert: Alert | None = None
    activity_status: str | None = None  # None: no activity row (unknown token, oversized body)
    reason: str | None = None
    traders: list = dataclasses.field(default_factory=list)


class WebhookIngestor:
    def __init__(self, runtime):
        self._runtime = runtime
        self._session_factory = runtime.session_factory
        self._settings = runtime.settings
        self._deliveries = 0

    def ingest(self, delivery: Delivery, *, replay: bool = False) -> IngestResult:
        """Record and process one delivery; `replay` marks one coming back from the spool (see _replay_raw_id)."""
        raw_id = None
        if replay:
            raw_id, finished = self._replay_raw_id(delivery)
            if finished is not None:
                logger.info("raw webhook %s was already processed before its replay; nothing to do", raw_id)
                return finished

        try:
            result = self._process(delivery, raw_id)
        except Exception as error:
            if raw_id is None:
                self._keep_raw_after_failure(delivery, error)
            raise
        self._maybe_clean_guards(delivery.received_at)
        return result

    def _replay_raw_id(self, delivery: Delivery) -> tuple[int | None, IngestResult | None]:
        """Find the raw row an earlier attempt of this delivery wrote, so a replay records it only once.

        A delivery is spooled when the database fails at any step. The raw row, the activity, the jobs and the
        outcome commit in one transaction, so an earlier attempt (the live request, or a replay cut short by a
        crash) left either nothing, a finished raw row, or (after a failure that was not an outage) a raw row
        without an outcome. The row is matched by token, received time (microseconds), body size and stored
        body. Returns (None, None) when no attempt left a row.
        NOTE: two identical deliveries received in the same microsecond from one address count as one here.
        """
        text, _ = redact_body(delivery.body, self._settings.raw_body_keep_bytes)
        with self._session_factory() as session:
            row = session.execute(
                select(RawWebhook.id, RawWebhook.http_status, RawWebhook.outcome)
                .where(
                    RawWebhook.received_at == delivery.received_at,
                    RawWebhook.token_sha256 == token_digest(delivery.token),
                    RawWebhook.size_bytes == delivery.size_bytes,
                    RawWebhook.body == text,
                )
                .order_by(RawWebhook.id)
            ).first()

        if row is None:
            return None, None
        if row.http_status is None:
            return row.id, None
        payload = {"status": "already_processed", "raw_webhook_id": row.id, "outcome": row.outcome}
        return row.id, IngestResult(row.http_status, payload, "already_processed")

    def record_forbidden(self, delivery: Delivery) -> None:
        decision = _Decision(403, "forbidden", {})
        with self._session_factory() as session, session.begin():
            self._write_raw(session, None, self._raw_values(delivery), decision)
            counters.increment_many(session, _counter_names(decision, new_raw=True))

    def _process(self, delivery: Delivery, raw_id: int | None) -> IngestResult:
        # The CPU work that needs no database runs before the transaction: on SQLite the transaction holds the
        # process's write lock, and every other webhook waits for it.
        alert, error = None, None
        if not delivery.too_large:
            try:
                alert = parse_alert(delivery.body, delivery.received_at)
            except AlertError as rejected:
                error = rejected
        fingerprint = _fingerprint(delivery) if alert else None
        raw_values = None if raw_id is not None else self._raw_values(delivery)

        # The raw row, the duplicate guard, the activity and the jobs commit together, so a crash leaves all of them
        # or none. The spool replays a delivery that failed on an outage, and concurrent copies of one alert create
        # one set of jobs.
        with self._session_factory() as session, session.begin():
            decision, recorder = self._decide(session, delivery, alert, error, fingerprint)
            new_raw = raw_id is None
            raw_id = self._write_raw(session, raw_id, raw_values, decision)
            activity_id, job_refs = self._write_outcome(session, delivery, raw_id, recorder, decision)
            # Every webhook updates these rows: written last, they stay locked (PostgreSQL) only until the commit.
            counters.increment_many(session, _counter_names(decision, new_raw))

        return self._result(delivery, raw_id, recorder, decision, activity_id, job_refs)

    def _decide(self, session, delivery: Delivery, alert: Alert | None, error: AlertError | None,
                fingerprint: str | None) -> tuple[_Decision, object]:
        """Read what the delivery's outcome depends on; return the decision and the recorder row (or None)."""
        # 1. The token decides the recorder; an unknown one is logged raw and gets a 404. For a parsed alert the
        # recorder comes with its signal blocks and traders, and its row is locked (PostgreSQL), so the cooldown
        # check and the last-signal update see one order.
        context = None
        if "\x00" in delivery.token:
            # No token has a NUL character, and PostgreSQL cannot compare text that contains one.
            recorder = None
        elif alert:
            context = filters.read_signal_context(session, delivery.token, alert, delivery.received_at)
            recorder = context.recorder if context else None
        else:
            recorder = session.connection().execute(_RECORDER, {"recorder_token": delivery.token}).first()
        if recorder is None:
            return _Decision(404, "unknown_token", {
                "error": "unknown webhook token: check the webhook URL in the TradingView alert against the recorder's URL",
            }), None

        if delivery.too_large:
            limit = self._settings.webhook_max_body_bytes
            return _Decision(413, "too_large", {
                "error": f"body of {delivery.size_bytes} bytes exceeds the {limit}-byte limit: shorten the alert message",
                "field": "body",
            }), recorder

        # 2. A rejected alert is recorded as failed activity with the reason.
        if error is not None:
            return _Decision(400, "rejected", error.to_dict(), activity_status="failed",
                             reason=error.message[:255]), recorder

        # 3. Duplicate check, then the filters; the guard is taken for a blocked signal too.
        if not self._claim_fingerprint(session, fingerprint, delivery.received_at):
            return _Decision(200, "duplicate", {
                "status": "duplicate",
                "message": "the same alert arrived within the duplicate window; no new orders were created",
            }, alert, "duplicate", "same alert within the duplicate window"), recorder

        now = delivery.received_at
        reason = filters.recorder_block_reason(context, alert, now)
        traders = []
        if reason is None:
            traders, reason = filters.eligible_traders(context, alert)
        if reason:
            payload = {"status": "blocked", "reason": reason,
                       "message": filters.block_message(reason, recorder, alert, now)}
            return _Decision(200, "blocked", payload, alert, "blocked", reason), recorder
        return _Decision(200, "accepted", {}, alert, "success", traders=traders), recorder

    def _claim_fingerprint(self, session, fingerprint: str, now: dt.datetime) -> bool:
        """Take the fingerprint for the duplicate window; return False when a live copy has it.

        One upsert: it inserts the guard or renews an expired one, and changes nothing while the guard is live.
        On PostgreSQL a concurrent copy waits on the unique key until the first commits, then finds the live guard.
        """
        values = {
            "guard_fingerprint": fingerprint,
            "guard_expires_at": now + dt.timedelta(seconds=self._settings.duplicate_window_seconds),
            "guard_now": now,
        }
        statement = _CLAIM_GUARD[session.get_bind().dialect.name]
        return session.connection().execute(statement, values).first() is not None

    def _write_raw(self, session, raw_id: int | None, raw_values: dict | None, decision: _Decision) -> int:
        """Insert the raw row (raw_values) with its outcome, or close the row raw_id an earlier attempt left; return its id."""
        action = _breakdown_action(decision)
        connection = session.connection()

        if raw_id is not None:
            connection.execute(_CLOSE_RAW, {
                "raw_id": raw_id, "raw_http_status": decision.status_code, "raw_outcome": decision.outcome,
                "raw_action": action,
            })
        else:
            values = dict(raw_values)
            values.update(http_status=decision.status_code, outcome=decision.outcome, action=action)
            raw_id = connection.execute(_INSERT_RAW, values).inserted_primary_key[0]
        return raw_id

    def _write_outcome(self, session, delivery: Delivery, raw_id: int, recorder, decision: _Decision):
        """Insert the activity row and the jobs; return the activity id (or None) and the job references."""
        if decision.activity_status is None:
            return None, ()

        alert = decision.alert
        connection = session.connection()
        activity_id = connection.execute(_INSERT_ACTIVITY, {
            "created_at": delivery.received_at,
            "raw_webhook_id": raw_id,
            "recorder_id": recorder.id,
            "recorder_name": recorder.name,
            "action": alert.action.value if alert else None,
            "ticker": alert.contract.symbol if alert else None,
            "status": decision.activity_status,
            "reason": decision.reason,
            "latency_ms": _elapsed_ms(delivery),
            "traders_notified": len(decision.traders),
        }).inserted_primary_key[0]

        job_refs = self._add_jobs(connection, activity_id, recorder.id, decision.traders, alert, delivery.received_at)
        if decision.outcome == "accepted":
            connection.execute(_MARK_SIGNAL, {"signal_recorder_id": recorder.id, "signal_at": delivery.received_at})
        return activity_id, job_refs

    def _add_jobs(self, connection, activity_id, recorder_id, traders, alert: Alert, now) -> tuple[JobRef, ...]:
        """Insert one job per trader in one statement; return (job id, account id, symbol, broker) of each."""
        if not traders:
            return ()

        rows = [
            {
                "idempotency_key": f"jt-{activity_id}-{trader.id}",
                "activity_id": activity_id,
                "recorder_id": recorder_id,
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
        if len(rows) == 1:
            # A plain insert skips the batching of an executemany with RETURNING. For a recorder with one trader
            # that saved 7% of the CPU of ingestion in docs/benchmarks.md, fix 26.
            ids = [connection.execute(_INSERT_JOB, rows[0]).scalar_one()]
        else:
            ids = connection.execute(_INSERT_JOBS, rows).scalars().all()
        return tuple(
            (job_id, row["account_id"], row["symbol"], trader.broker) for job_id, row, trader in zip(ids, rows, traders)
        )

    def _result(self, delivery: Delivery, raw_id: int, recorder, decision: _Decision, activity_id,
                job_refs) -> IngestResult:
        """Log the outcome and build the response."""
        if decision.outcome == "unknown_token":
            logger.info("raw webhook %s: unknown token from %s", raw_id, delivery.source_ip)
            return IngestResult(404, decision.payload, "unknown_token")

        if decision.outcome == "too_large":
            logger.info("raw webhook %s for recorder %s: body of %d bytes is too large", raw_id, recorder.id,
                        delivery.size_bytes)
            return IngestResult(413, decision.payload, "too_large")

        if decision.outcome == "rejected":
            logger.info("raw webhook %s for recorder %s rejected: %s", raw_id, recorder.id, decision.reason)
            return IngestResult(400, decision.payload, "rejected")

        if decision.outcome == "duplicate":
            logger.info("raw webhook %s for recorder %s: duplicate within the window", raw_id, recorder.id)
            return IngestResult(200, decision.payload, "duplicate")

        if decision.outcome == "blocked":
            logger.info("activity %s: signal for recorder %s blocked (%s)", activity_id, recorder.id, decision.reason)
            payload = {**decision.payload, "activity_id": activity_id}
            return IngestResult(200, payload, "blocked", blocked_reason=decision.reason)

        alert = decision.alert
        logger.info("activity %s: %s %s for recorder %s queued %d job(s)",
                    activity_id, alert.action.value, alert.contract.symbol, recorder.id, len(job_refs))
        payload = {
            "status": "accepted",
            "activity_id": activity_id,
            "action": alert.action.value,
            "symbol": alert.contract.symbol,
            "jobs": len(job_refs),
        }
        return IngestResult(200, payload, "accepted", jobs=job_refs)

    def _record_raw(self, delivery: Delivery) -> int:
        """Insert the raw row alone, without an outcome; return its id."""
        values = self._raw_values(delivery)
        with self._session_factory() as session, session.begin():
            raw_id = session.connection().execute(_INSERT_RAW, values).inserted_primary_key[0]
            counters.increment(session, RAW_TOTAL_COUNTER)
        return raw_id

    def _keep_raw_after_failure(self, delivery: Delivery, error: Exception) -> None:
        """Keep the raw row of a delivery whose processing raised, so the raw log still shows it arrived."""
        # Imported here because the spool module imports this one.
        from .spool import is_database_unavailable

        if is_database_unavailable(error):
            return  # the caller spools the delivery, and its replay writes the raw row
        try:
            raw_id = self._record_raw(delivery)
        except Exception as second:
            logger.warning("raw row of the failed delivery for token ...%s not written either (%s)",
                           delivery.token[-4:], type(second).__name__)
            return
        logger.warning("raw webhook %s kept without an outcome: its processing raised %s",
                       raw_id, type(error).__name__)

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


    def _raw_values(self, delivery: Delivery) -> dict:
        """Return the raw row's columns: the body redacted and cut to JT_RAW_BODY_KEEP_BYTES."""
        text, truncated = redact_body(delivery.body, self._settings.raw_body_keep_bytes)
        return {
            "received_at": delivery.received_at,
            "token_sha256": token_digest(delivery.token),
            "token_tail": token_tail(delivery.token),
            "source_ip": delivery.source_ip,
            "content_type": (delivery.content_type or "")[:128] or None,
            "size_bytes": delivery.size_bytes,
            "body": text,
            "truncated": truncated or delivery.too_large,
        }


# Statements of the hot path, built once on the tables: the ORM's handling of DML on a mapped class costs
# several times the statement itself (bench/webhook_ack measures the path).
_GUARDS = DuplicateGuard.__table__


def _claim_guard(insert):
    statement = insert(_GUARDS).values(fingerprint=bindparam("guard_fingerprint"), expires_at=bindparam("guard_expires_at"))
    statement = statement.on_conflict_do_update(
        index_elements=[_GUARDS.c.fingerprint],
        set_={"expires_at": statement.excluded.expires_at},
        where=_GUARDS.c.expires_at <= bindparam("guard_now"),
    )
    # A row comes back when the guard was inserted or renewed, none when a live guard kept it.
    return statement.returning(_GUARDS.c.fingerprint)


_CLAIM_GUARD = {"postgresql": _claim_guard(postgresql.insert), "sqlite": _claim_guard(sqlite.insert)}
_RECORDER = select(*filters.RECORDER_COLUMNS).where(Recorder.webhook_token == bindparam("recorder_token"))
_MARK_SIGNAL = (
    update(Recorder.__table__)
    .where(Recorder.__table__.c.id == bindparam("signal_recorder_id"))
    .values(last_signal_at=bindparam("signal_at"))
)
_JOBS = ExecutionJob.__table__
# One executemany with RETURNING; sort_by_parameter_order pairs each id with its row.
_INSERT_JOBS = insert(_JOBS).returning(_JOBS.c.id, sort_by_parameter_order=True)
# The job of a recorder with one trader.
_INSERT_JOB = insert(_JOBS).returning(_JOBS.c.id)
_INSERT_ACTIVITY = insert(WebhookActivity.__table__)
_RAW = RawWebhook.__table__
_INSERT_RAW = insert(_RAW)
_CLOSE_RAW = (
    update(_RAW)
    .where(_RAW.c.id == bindparam("raw_id"))
    .values(http_status=bindparam("raw_http_status"), outcome=bindparam("raw_outcome"), action=bindparam("raw_action"))
)


def _breakdown_action(decision: _Decision) -> str | None:
    return BREAKDOWN_NAMES[decision.alert.action.value] if decision.alert else None


def _counter_names(decision: _Decision, new_raw: bool) -> list[str]:
    """Return the counters one delivery raises: raw total (once per raw row), raw action and activity status."""
    names = [RAW_ACTION_COUNTER + (_breakdown_action(decision) or "unparsed")]
    if new_raw:
        names.append(RAW_TOTAL_COUNTER)
    if decision.activity_status:
        names.append(ACTIVITY_COUNTER + decision.activity_status)
    return names


def _fingerprint(delivery: Delivery) -> str:
    # A resent alert repeats its bytes. Two alerts that differ only in spelling ("close" and "exit") are two
    # signals, so the fingerprint is the token and the body as sent, without surrounding white space.
    digest = hashlib.sha256(delivery.token.encode())
    digest.update(b"\0")
    digest.update(delivery.body.strip())
    return digest.hexdigest()


def _elapsed_ms(delivery: Delivery) -> int:
    return int((time.monotonic() - delivery.started) * 1000)
