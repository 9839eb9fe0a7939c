"""Durable execution jobs: claimed atomically, leased, retried at a time moved forward, finished once."""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import os
import secrets
import socket
from pathlib import Path
from typing import Callable, NamedTuple, Sequence, TypeVar

from sqlalchemy import and_, bindparam, func, or_, select, update
from sqlalchemy.engine import Row
from sqlalchemy.orm import Session, sessionmaker

from ..db.models import Account, ExecutionJob, utcnow

logger = logging.getLogger(__name__)

QUEUED = "queued"
RUNNING = "running"
DONE = "done"
FAILED = "failed"

T = TypeVar("T")


def new_instance_id() -> str:
    """Name this process in the claims it makes: host:pid:nonce.

    The nonce distinguishes a restarted container process (same pid) from its predecessor; release_dead_local_claims
    reads the host and pid.
    """
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


@dataclasses.dataclass(frozen=True)
class BrokerScope:
    """The jobs of the named brokers, or with `others`, every other job, those of deleted accounts included."""

    brokers: tuple[str, ...]
    others: bool = False

    def condition(self):
        if self.others:
            return or_(Account.broker.is_(None), Account.broker.not_in(self.brokers))
        return Account.broker.in_(self.brokers)

    def covers(self, broker: str | None) -> bool:
        return (broker in self.brokers) != self.others


class JobStore:
    def __init__(self, session_factory: sessionmaker[Session], instance_id: str, lease_seconds: float):
        self._session_factory = session_factory
        self.instance_id = instance_id
        self._lease = dt.timedelta(seconds=lease_seconds)

    def claim(self, job_id: int, now: dt.datetime | None = None, *, within: Callable[[Session, Row], T] | None = None,
              ) -> tuple[Row, T | None] | None:
        """Claim one job for this process; None when another worker or replica holds it, or it is finished.

        The conditional update must change exactly one row: that is the whole claim, with no read-then-write race.
        It returns the job's columns, and `within(session, job)` runs in the same transaction, so what it writes
        commits together with the claim or not at all. Returns (job, what `within` returned).
        """
        now = now or utcnow()
        values = {"job_id": job_id, "job_now": now, "job_owner": self.instance_id, "job_lease": now + self._lease}
        with self._session_factory() as session, session.begin():
            job = session.connection().execute(_CLAIM, values).first()
            if job is None:
                return None
            return job, (within(session, job) if within is not None else None)

    def claim_batch(self, session: Session, job_ids: Sequence[int], now: dt.datetime | None = None) -> list[Row]:
        """Claim, in one statement of the caller's transaction, those of the jobs that are due; return them by id.

        A job another worker or replica holds, or one already finished, is left out, as `claim` returns None for it.
        """
        now = now or utcnow()
        values = {"job_ids": list(job_ids), "job_now": now, "job_owner": self.instance_id,
                  "job_lease": now + self._lease}
        jobs = session.connection().execute(_CLAIM_BATCH, values).all()
        return sorted(jobs, key=lambda job: job.id)

    def finish(self, job_id: int, status: str, error: str | None = None, *, session: Session | None = None) -> None:
        """Mark the job done or failed; with `session`, inside that session's open transaction."""
        values = {"job_id": job_id, "job_owner": self.instance_id, "job_status": status, "job_error": error,
                  "job_finished_at": utcnow()}
        if session is not None:
            session.connection().execute(_FINISH, values)
            return
        with self._session_factory() as own_session, own_session.begin():
            own_session.connection().execute(_FINISH, values)

    def finish_batch(self, session: Session, job_ids: Sequence[int], status: str) -> None:
        """Mark the jobs done or failed, without an error, in one statement of the caller's transaction."""
        if not job_ids:
            return
        values = {"job_ids": list(job_ids), "job_owner": self.instance_id, "job_status": status,
                  "job_finished_at": utcnow()}
        session.connection().execute(_FINISH_BATCH, values)

    def retry_later(self, job_id: int, delay_seconds: float, error: str) -> None:
        """Put the job back in the queue at a later time, so a failing job cannot spin in a hot loop."""
        with self._session_factory() as session, session.begin():
            session.execute(
                update(ExecutionJob)
                .where(ExecutionJob.id == job_id, ExecutionJob.claimed_by == self.instance_id)
                .values(
                    status=QUEUED,
                    last_error=error,
                    next_attempt_at=utcnow() + dt.timedelta(seconds=delay_seconds),
                    lease_expires_at=None,
                )
            )

    def due_jobs(self, limit: int, now: dt.datetime | None = None, *, scope: "BrokerScope | None" = None
                 ) -> list[tuple[int, int, str, str | None]]:
        """Return (id, account id, symbol, broker) of jobs to run now: queued and due, or running with a lapsed lease.

        The broker is None for a job whose account no longer exists. A scope keeps the jobs of some brokers only,
        for a pool that runs those.
        """
        now = now or utcnow()
        query = (
            select(ExecutionJob.id, ExecutionJob.account_id, ExecutionJob.symbol, Account.broker)
            .outerjoin(Account, Account.id == ExecutionJob.account_id)
            .where(
                or_(
                    and_(ExecutionJob.status == QUEUED, ExecutionJob.next_attempt_at <= now),
                    and_(ExecutionJob.status == RUNNING, ExecutionJob.lease_expires_at < now),
                )
            )
            .order_by(ExecutionJob.id)
            .limit(limit)
        )
        if scope is not None:
            query = query.where(scope.condition())

        with self._session_factory() as session:
            rows = session.execute(query).all()
        return [tuple(row) for row in rows]

    def release_dead_local_claims(self) -> int:
        """Expire the leases of jobs claimed by processes of this host that no longer exist.

        After a crash and restart on one machine this resumes the jobs at once instead of after the lease.
        """
        host = socket.gethostname()
        with self._session_factory() as session, session.begin():
            claims = session.execute(
                select(ExecutionJob.claimed_by)
                .where(ExecutionJob.status == RUNNING, ExecutionJob.claimed_by.like(f"{host}:%"))
                .distinct()
            ).scalars()
            dead = [claim for claim in claims if claim != self.instance_id and not _claimant_alive(claim)]
            if not dead:
                return 0

            result = session.execute(
                update(ExecutionJob)
                .where(ExecutionJob.status == RUNNING, ExecutionJob.claimed_by.in_(dead))
                .values(lease_expires_at=utcnow() - dt.timedelta(seconds=1))
            )
        logger.warning("released %d job(s) claimed by dead processes %s", result.rowcount, ", ".join(dead))
        return result.rowcount

    def queue_size(self) -> int:
        """Jobs waiting or running; uses the (status, next_attempt_at) index, never a full scan."""
        with self._session_factory() as session:
            return session.scalar(
                select(func.count()).select_from(ExecutionJob).where(ExecutionJob.status.in_((QUEUED, RUNNING)))
            )

    def queue_state(self) -> QueueState:
        """Read the queue's size and the storage time of its oldest job together, in one statement.

        A deep queue whose oldest job is a second old is steady work; one whose oldest job keeps ageing is stuck.
        Read together, the two describe the same moment of the table.
        """
        with self._session_factory() as session:
            size, oldest = session.execute(
                select(func.count(), func.min(ExecutionJob.created_at))
                .where(ExecutionJob.status.in_((QUEUED, RUNNING)))
            ).one()
        return QueueState(size=size, oldest_created_at=oldest)


class QueueState(NamedTuple):
    """Jobs queued or running, and when the oldest of them was stored (None while the queue is empty)."""

    size: int
    oldest_created_at: dt.datetime | None


# Statements run for every job, built once on the table: the ORM's handling of an UPDATE on the mapped class
# costs several times the statement itself, and on SQLite every write holds the database's one write lock.
_JOBS = ExecutionJob.__table__
_DUE = or_(
    and_(_JOBS.c.status == QUEUED, _JOBS.c.next_attempt_at <= bindparam("job_now")),
    and_(_JOBS.c.status == RUNNING, _JOBS.c.lease_expires_at < bindparam("job_now")),
)
_CLAIMED_VALUES = {
    "status": RUNNING,
    "claimed_by": bindparam("job_owner"),
    "lease_expires_at": bindparam("job_lease"),
    "attempts": _JOBS.c.attempts + 1,
}
_CLAIM = update(_JOBS).where(_JOBS.c.id == bindparam("job_id"), _DUE).values(_CLAIMED_VALUES).returning(*_JOBS.c)
_CLAIM_BATCH = (
    update(_JOBS)
    .where(_JOBS.c.id.in_(bindparam("job_ids", expanding=True)), _DUE)
    .values(_CLAIMED_VALUES)
    .returning(*_JOBS.c)
)
_FINISH = (
    update(_JOBS)
    .where(_JOBS.c.id == bindparam("job_id"), _JOBS.c.claimed_by == bindparam("job_owner"))
    .values(status=bindparam("job_status"), last_error=bindparam("job_error"),
            finished_at=bindparam("job_finished_at"), lease_expires_at=None)
)
_FINISH_BATCH = (
    update(_JOBS)
    .where(_JOBS.c.id.in_(bindparam("job_ids", expanding=True)), _JOBS.c.claimed_by == bindparam("job_owner"))
    .values(status=bindparam("job_status"), last_error=None, finished_at=bindparam("job_finished_at"),
            lease_expires_at=None)
)


def _claimant_alive(claimed_by: str) -> bool:
    """Tell whether the process named by a host:pid:nonce claim on this host still runs."""
    try:
        pid = int(claimed_by.split(":")[1])
    except (IndexError, ValueError):
        return True  # not a claim format we know: leave it to the lease

    if pid == os.getpid():
        return False  # our pid with another nonce: a previous process in a restarted container

    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not _is_zombie(pid)


def _is_zombie(pid: int) -> bool:
    """Tell whether the process has exited and waits to be reaped, which makes no more claims.

    A killed platform's paper worker process stays so until its new parent collects it. Without /proc: False.
    """
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state == "Z"
