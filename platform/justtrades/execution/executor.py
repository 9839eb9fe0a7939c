"""Run one execution job: at most one broker order per job, whatever crashes or retries happen around it."""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Callable

from sqlalchemy import select
from sqlalchemy.engine import Row
from sqlalchemy.exc import IntegrityError

from ..brokers.base import AccountRef, BrokerError, FailureReason, OrderRequest, OrderResult
from ..db import counters
from ..db.models import ExecutionFailure, Order, Recorder, utcnow
from ..webhooks.redaction import redact_text
from . import orders
from .claim_rounds import ClaimRequest, ClaimRounds
from .jobs import DONE, FAILED, JobStore
from .orders import ENTRY_SIDES, OrderRow, PreparedJob, account_ref  # noqa: F401 - accounts.broker_state imports account_ref from here
from .slots import FifoSlots
from .stats import ExecutionStats

logger = logging.getLogger(__name__)

RETRY_BASE_SECONDS = 1.0
RETRY_MAX_SECONDS = 60.0


@dataclasses.dataclass(frozen=True)
class Placement:
    """The outcome of an order placed inside the claim transaction: the broker's result, or the error it raised."""

    result: OrderResult | None
    error: Exception | None
    seconds: float


# A claimed job, what its claim transaction read and wrote for it, and the order placed in that transaction, if any.
Claimed = tuple[Row, PreparedJob | None, Placement | None]


class Executor:
    def __init__(self, session_factory, store: JobStore, brokers: dict, stats: ExecutionStats, max_attempts: int,
                 claim_concurrency: int = 1, *, claim_interval: float = 0.0, hands_back_other_brokers: bool = False):
        self._session_factory = session_factory
        self._store = store
        self._brokers = brokers
        # The paper worker process runs the jobs of its brokers only. A job sent to it while its account used one
        # of them, whose account has since moved to another broker, goes back to the table for the platform's
        # workers instead of failing here as a broker that is not configured.
        self._hands_back_other_brokers = hands_back_other_brokers
        self._stats = stats
        self._max_attempts = max_attempts
        # Claims, and the paper orders placed in them, are CPU under this process's interpreter lock. Ten workers
        # claiming at once took it from the webhook threads: at 100 webhooks/s the acknowledgement p50 was 92 ms,
        # and 3.8 ms with one slot (docs/benchmarks.md, fix 16). Workers waiting on a broker's reply hold no slot.
        # A freed slot goes to the worker that has waited longest, so one worker cannot keep it (fix 24).
        self._claim_slots = FifoSlots(claim_concurrency)
        self._claim_rounds: ClaimRounds[list[Claimed]] = ClaimRounds(claim_concurrency, self._claim_round,
                                                                     interval=claim_interval)

    def execute(self, job_id: int) -> None:
        """Claim and run the job; a job another worker holds, or one already finished, is skipped."""
        try:
            with self._claim_slots:
                claimed = self._store.claim(job_id, within=self._prepare)
        except IntegrityError:
            # Only an earlier holder of the job, still running after its lease lapsed, can write the order row
            # between our read and insert. The claim is rolled back with the insert, and a later poll resumes
            # the job from that row.
            logger.warning("job %s: another attempt wrote its order row during the claim; leaving the job to it", job_id)
            return
        if claimed is None:
            return

        job, (prepared, placement) = claimed
        self._after_claim(job, prepared, placement)

    def execute_batch(self, job_ids: list[int], join: Callable[[], list[int]] | None = None) -> None:
        """Claim and run several jobs, with one transaction for all their claims and in-database placements.

        With a backlog of paper jobs, batches of 16 cut the platform's CPU per job by about a third and raised the
        rate at which the workers clear it by more than half (docs/benchmarks.md, fix 18). The fills' PnL totals
        are written once per claim, at its end (fix 21). `join`, when given, is called just before the claim and
        returns more jobs for the batch: those that arrived while the worker waited (fix 23). The batches of
        all workers waiting meanwhile are claimed in the same transaction (`ClaimRounds`, fix 24). Jobs that
        another worker holds, or that are finished, are skipped. Should an earlier holder write one of the order
        rows meanwhile, the whole claim rolls back and each job is run on its own.
        """
        request = ClaimRequest(job_ids, join)
        try:
            claimed = self._claim_rounds.submit(request)
        except IntegrityError:
            logger.warning("jobs %s: another attempt wrote an order row during the batch claim; claiming one by one",
                           ", ".join(map(str, request.job_ids)))
            for job_id in request.job_ids:
                self.execute(job_id)
            return

        # Orders already placed are settled first, so a remote broker's reply does not delay their results.
        for job, prepared, placement in sorted(claimed, key=lambda item: item[2] is None):
            self._after_claim(job, prepared, placement)

    def _claim_round(self, requests: list[ClaimRequest[list[Claimed]]]) -> None:
        """Claim the batches of a round in one transaction, and give each request the claims of its own jobs."""
        with self._claim_slots:
            for request in requests:
                if request.join is not None:
                    request.job_ids += request.join()
            claimed = self._claim_batch([job_id for request in requests for job_id in request.job_ids])

        by_job = {item[0].id: item for item in claimed}
        for request in requests:
            request.finish([by_job[job_id] for job_id in request.job_ids if job_id in by_job])

    def _claim_batch(self, job_ids: list[int]) -> list[Claimed]:
        with self._session_factory() as session, session.begin():
            jobs = self._store.claim_batch(session, job_ids)
            prepared = orders.prepare_batch(session, jobs, self._brokers)

            with counters.fills_totalled_at_end(session):
                placements = self._place_in_claim(session, [(job, prepared[job.id]) for job in jobs])

            placed = [job_id for job_id, placement in placements.items() if placement.error is None]
            self._store.finish_batch(session, placed, DONE)
            return [(job, prepared[job.id], placements.get(job.id)) for job in jobs]

    def _after_claim(self, job: Row, prepared: PreparedJob | None, placement: Placement | None) -> None:
        """Settle an order placed in the claim transaction, or place it now; a failure is retried or ends the job."""
        try:
            if placement is not None:
                self._settle_placement(job, placement)
            else:
                self._run(job, prepared)
        except BrokerError as error:
            self._handle_failure(job, error.reason, str(error), permanent=error.permanent,
                                 retry_after=error.retry_after, order_may_exist=error.order_may_exist)
        except Exception as error:
            # A bug must not lose the job: it is retried later and shows in failures with its class.
            logger.exception("job %s (trader %s) failed with an unexpected error", job.id, job.trader_id)
            self._handle_failure(job, FailureReason.INTERNAL_ERROR, f"{type(error).__name__}: {error}", permanent=False)
        except BaseException:
            # The worker thread is going down (SystemExit, KeyboardInterrupt), so give the job back at once
            # instead of leaving it to its lease. The order row written first keeps the next attempt safe.
            self._store.retry_later(job.id, 0.0, "worker stopped while running the job")
            raise

    def _prepare(self, session, job: Row) -> tuple[PreparedJob | None, Placement | None]:
        prepared = orders.prepare(session, job, self._brokers)
        placement = self._place_in_claim(session, [(job, prepared)]).get(job.id)
        if placement is not None and placement.error is None:
            self._store.finish(job.id, DONE, session=session)
        return prepared, placement

    def places_in_database(self, broker: str | None) -> bool:
        """Tell whether jobs of this broker are placed in their claim transaction, so batching them saves work."""
        return _placer_in_database(self._brokers.get(broker)) is not None

    def _place_in_claim(self, session, jobs: list[tuple[Row, PreparedJob | None]]) -> dict[int, Placement]:
        """Place, in the claim transaction, the new orders of brokers whose book is in our database (paper).

        The claim, the order rows, the broker's book and the jobs' ends then commit together: one transaction per
        claim instead of three per job. Returns the placements by job id; the other jobs are placed after the
        commit. A failed placement still lets the claim and the order row commit, and is handled after the
        commit like any broker's failure.
        """
        groups: dict[str, list[tuple[Row, PreparedJob]]] = {}
        for job, prepared in jobs:
            if prepared is None or prepared.order is None or prepared.earlier_attempt:
                continue
            if self.places_in_database(prepared.account.broker):
                groups.setdefault(prepared.account.broker, []).append((job, prepared))

        placements: dict[int, Placement] = {}
        for broker, group in groups.items():
            placements.update(self._place_group(session, _placer_in_database(self._brokers[broker]), group))
        return placements

    def _place_group(self, session, place_orders_in, group: list[tuple[Row, PreparedJob]]) -> dict[int, Placement]:
        """Place the orders of one broker with one call, in a savepoint; should the call fail, one order at a time.

        The broker's own refusals (a paper order without a price) come back per order. An exception, such as a
        database error, rolls back the savepoint with everything the call wrote. Placed alone, each order then
        fails or fills on its own, so one bad order cannot fail the others.
        """
        started = time.monotonic()
        fills_before = counters.pending_fill_count(session)
        try:
            with session.begin_nested():
                # The broker marks the order rows itself, because in our database those rows are the broker's record.
                requests = [self._request(job, prepared.account, prepared.order) for job, prepared in group]
                outcomes = place_orders_in(session, requests)
                if len(outcomes) != len(requests):
                    raise RuntimeError(f"the broker returned {len(outcomes)} outcome(s) for {len(requests)} order(s)")
        except Exception as error:  # a database error, or a bug that _settle_placement reports as internal
            counters.forget_fills_after(session, fills_before)
            if len(group) == 1:
                return {group[0][0].id: Placement(None, error, time.monotonic() - started)}
            logger.warning("jobs %s: placing their orders together failed (%s); placing them one by one",
                           ", ".join(str(job.id) for job, _ in group), type(error).__name__)
            placements = {}
            for item in group:
                placements.update(self._place_group(session, place_orders_in, [item]))
            return placements

        seconds = time.monotonic() - started
        return {
            job.id: Placement(None, outcome, seconds) if isinstance(outcome, Exception) else Placement(outcome, None, seconds)
            for (job, _), outcome in zip(group, outcomes)
        }

    def _settle_placement(self, job: Row, placement: Placement) -> None:
        if placement.error is not None:
            raise placement.error
        self._record_success(job, placement.result, placement.seconds)

    def _run(self, job: Row, prepared: PreparedJob | None) -> None:
        started = time.monotonic()
        if prepared is None:
            raise BrokerError(FailureReason.ACCOUNT_NOT_FOUND, f"account {job.account_id} of trader {job.trader_id} "
                              "no longer exists; bind the trader to an existing account", permanent=True)
        ref = prepared.account
        if self._hands_back_other_brokers and ref.broker not in self._brokers:
            self._hand_back(job, ref)
            return
        broker = self._broker_for(ref)
        order = prepared.order

        # 1. An order row from an earlier attempt means the broker may already have it: look before placing.
        if prepared.earlier_attempt and order.status in ("placed", "filled"):
            self._store.finish(job.id, DONE)
            return
        if prepared.earlier_attempt:
            found = broker.find_order(ref, order.client_order_id)
            if found is not None and found.status in ("rejected", "canceled"):
                # The broker has the order and ended it; placing it again would be a second order.
                self._mark_order(order.id, found)
                raise BrokerError(FailureReason.ORDER_REJECTED, f"order {order.client_order_id} is {found.status} "
                                  "at the broker", permanent=True)
            if found is not None:
                logger.info("job %s: order %s found at the broker after an earlier attempt", job.id, order.client_order_id)
                self._complete(job, order.id, found, started)
                return

        # 2. The claim transaction wrote an entry's order row. A close works out its order from the broker's
        # position, and with nothing to close the job ends without one.
        if order is None:
            side_quantity = self._side_and_quantity(job, broker, ref)
            if side_quantity is None:
                logger.info("job %s: no %s position in %s to close on account %s", job.id, job.action, job.symbol, ref.id)
                self._store.finish(job.id, DONE, error="nothing to close")
                self._stats.record_no_order()
                return
            order = self._create_order(job, *side_quantity)

        # 3. Place it. The row written above is what makes a later attempt look before placing again.
        result = broker.place_order(self._request(job, ref, order))
        self._complete(job, order.id, result, started)

    @staticmethod
    def _request(job: Row, account: AccountRef, order: OrderRow) -> OrderRequest:
        entry = job.action in ENTRY_SIDES
        return OrderRequest(
            account=account,
            symbol=job.symbol,
            side=order.side,
            quantity=order.quantity,
            client_order_id=order.client_order_id,
            price=job.price,
            take_profit=job.take_profit if entry else None,
            stop_loss=job.stop_loss if entry else None,
            trader_id=job.trader_id,
        )

    def _side_and_quantity(self, job: Row, broker, ref: AccountRef) -> tuple[str, int] | None:
        if job.action in ENTRY_SIDES:
            return ENTRY_SIDES[job.action], job.quantity

        net = sum(p.net_pos for p in broker.positions(ref) if p.symbol == job.symbol)
        if net > 0 and job.action in ("close", "close_long"):
            return "Sell", net
        if net < 0 and job.action in ("close", "close_short"):
            return "Buy", -net
        return None

    def _create_order(self, job: Row, side: str, quantity: int) -> OrderRow:
        try:
            with self._session_factory() as session, session.begin():
                return orders.insert_order(session, job, side, quantity)
        except IntegrityError:
            # Another attempt wrote it between our read and insert; its row is the one that counts.
            with self._session_factory() as session:
                return orders.find_order(session, job.id)

    def _mark_order(self, order_id: int, result: OrderResult) -> None:
        with self._session_factory() as session, session.begin():
            orders.mark_order(session, order_id, result)

    def _complete(self, job: Row, order_id: int, result: OrderResult, started: float) -> None:
        # The order's status and the job's end commit together: one transaction after the broker call.
        with self._session_factory() as session, session.begin():
            orders.mark_order(session, order_id, result)
            self._store.finish(job.id, DONE, session=session)
        self._record_success(job, result, time.monotonic() - started)

    def _record_success(self, job: Row, result: OrderResult, seconds: float) -> None:
        signal_to_order = (utcnow() - job.signal_received_at).total_seconds()
        self._stats.record_success(seconds, signal_to_order)
        logger.info("job %s: order %s %s for trader %s", job.id, result.broker_order_id, result.status, job.trader_id)

    def _handle_failure(self, job, reason, message: str, *, permanent: bool, retry_after=None, order_may_exist=False):
        # The message quotes the broker's error text, which may repeat a credential; it goes to a table, an
        # endpoint and the log.
        message = redact_text(message)
        final = permanent or job.attempts >= self._max_attempts
        self._stats.record_failure(reason, final)
        self._record_failure(job, reason, message, final)

        if final:
            # After a timeout the broker may hold the order: "unknown" tells the operator to look there.
            self._end_pending_order(job.id, "unknown" if order_may_exist else "rejected")
            self._store.finish(job.id, FAILED, error=message)
            logger.warning("job %s (trader %s) failed for good after %d attempt(s): %s", job.id, job.trader_id, job.attempts, message)
            return

        delay = min(RETRY_BASE_SECONDS * 2 ** (job.attempts - 1), RETRY_MAX_SECONDS)
        delay = max(delay, retry_after or 0.0)
        self._store.retry_later(job.id, delay, message)
        logger.warning("job %s (trader %s) attempt %d failed, retrying in %.1fs: %s", job.id, job.trader_id, job.attempts, delay, message)

    def _record_failure(self, job: Row, reason: FailureReason, message: str, final: bool) -> None:
        with self._session_factory() as session, session.begin():
            recorder_name = session.scalar(select(Recorder.name).where(Recorder.id == job.recorder_id))
            session.add(
                ExecutionFailure(
                    job_id=job.id,
                    recorder_name=recorder_name,
                    trader_id=job.trader_id,
                    account_id=job.account_id,
                    symbol=job.symbol,
                    action=job.action,
                    reason=reason.value,
                    error=message,
                    permanent=final,
                )
            )

    def _end_pending_order(self, job_id: int, status: str) -> None:
        with self._session_factory() as session, session.begin():
            order = session.scalars(select(Order).where(Order.job_id == job_id)).one_or_none()
            if order is not None and order.status == "pending":
                order.status = status

    def _hand_back(self, job: Row, account: AccountRef) -> None:
        # No order row was written for the job: prepare writes none for a broker this process does not have.
        self._store.retry_later(job.id, 0.0, f"account {account.id} moved to broker {account.broker!r} after the "
                                             "signal; handed to the workers of that broker")
        logger.warning("job %s: account %s moved to broker %r, which this process does not run; the job is back in "
                       "the table for the platform's workers", job.id, account.id, account.broker)

    def _broker_for(self, account: AccountRef):
        try:
            return self._brokers[account.broker]
        except KeyError:
            raise BrokerError(
                FailureReason.ACCOUNT_NOT_FOUND,
                f"account {account.id} uses broker {account.broker!r}, which is not configured; "
                f"use one of {', '.join(sorted(self._brokers))}",
                permanent=True,
            ) from None


def _placer_in_database(broker) -> Callable | None:
    """Return the broker's `place_orders_in`, or None for a broker whose book is not in our database."""
    return getattr(broker, "place_orders_in", None)
