"""Whop membership sync: users for valid memberships, revoked access for ended ones, activation emails.

One run:
1. reads every membership from the Whop API (network first, outside any transaction);
2. creates or approves a user per email with a valid membership (active, trialing), and revokes the approval
   of users whose memberships all ended (canceled, expired, completed), except admins;
3. emails an activation link to new users, and again after `activation_resend_after_seconds` while they
   have not activated, at most `activation_max_resends` times;
4. records the run in `whop_sync_state` and adds to the `whop_synced` and `whop_resent` counters.

Memberships in other states (past_due, unresolved, ...) only update the user's `whop_status`, and a user
missing from the list keeps its access, because a filtered or partial list must not lock users out.
On PostgreSQL a run holds an advisory lock, so with several replicas one of them syncs at a time. Every replica
reads the shared `whop_sync_state` row, so all of them report the same last run.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from collections import defaultdict

from sqlalchemy import func, or_, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from ..daemons import redact_error
from ..db import counters
from ..db.engine import transaction
from ..db.models import User, WhopSyncState
from .mailer import Mailer, MailError
from .settings import AccountsSettings
from .users import new_activation_token
from .whop_client import Membership, WhopAPIError, WhopClient

logger = logging.getLogger(__name__)

VALID_STATUSES = frozenset({"active", "trialing"})
ENDED_STATUSES = frozenset({"canceled", "cancelled", "expired", "completed"})

SYNCED_COUNTER = "whop_synced"
RESENT_COUNTER = "whop_resent"

# pg_try_advisory_lock key: the bytes of "jtwhop" read as an integer, unlikely to collide with other locks.
ADVISORY_LOCK_KEY = int.from_bytes(b"jtwhop", "big")

_STATE_ID = 1
_INSERTS = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}


def _iso(moment: dt.datetime | None) -> str | None:
    return moment.isoformat().replace("+00:00", "Z") if moment else None


@dataclasses.dataclass
class SyncOutcome:
    """The result of one run; `error` is set when the run failed or an email could not be sent."""

    synced: int = 0
    emailed: int = 0
    resent: int = 0
    skipped_without_email: int = 0
    error: str | None = None
    completed: bool = False


class WhopSync:
    def __init__(
        self,
        session_factory: sessionmaker[Session],
        engine: Engine,
        settings: AccountsSettings,
        mailer: Mailer,
        client: WhopClient | None = None,
        instance_id: str = "",
    ):
        self._session_factory = session_factory
        self._engine = engine
        self.settings = settings
        self._mailer = mailer
        self._client = client
        self._instance_id = instance_id

    # Running

    def run_once(self, now: dt.datetime) -> SyncOutcome | None:
        """Run one sync; return None when another replica holds the lock and is syncing now."""
        if self._client is None:
            raise RuntimeError("the Whop sync has no API client: set JT_WHOP_API_KEY")

        with self._engine.connect() as lock_connection:
            if not self._try_lock(lock_connection):
                logger.debug("Whop sync skipped: another replica has the sync lock")
                return None
            try:
                return self._run_locked(now)
            finally:
                self._unlock(lock_connection)

    def _run_locked(self, now: dt.datetime) -> SyncOutcome:
        outcome = SyncOutcome()

        try:
            memberships = self._client.list_memberships()
        except WhopAPIError as error:
            outcome.error = f"Whop API: {error}"
            logger.warning("Whop sync failed at %s: %s", self._client.base_url, error)
            self._record(now, outcome)
            return outcome

        with transaction(self._session_factory) as session:
            outcome.synced, outcome.skipped_without_email = self._apply(session, memberships, now)
            if outcome.synced:
                counters.increment(session, SYNCED_COUNTER, outcome.synced)

        self._send_activation_emails(now, outcome)
        outcome.completed = True
        self._record(now, outcome)
        logger.info(
            "Whop sync read %d membership(s): %d user(s) changed, %d activation email(s), %d resent, %d without email",
            len(memberships), outcome.synced, outcome.emailed, outcome.resent, outcome.skipped_without_email,
        )
        return outcome

    def _try_lock(self, connection) -> bool:
        if connection.dialect.name != "postgresql":
            return True  # SQLite serves one machine, where one process runs the daemons
        acquired = connection.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": ADVISORY_LOCK_KEY}).scalar()
        connection.commit()
        return bool(acquired)

    def _unlock(self, connection) -> None:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": ADVISORY_LOCK_KEY})
            connection.commit()

    # Memberships to users

    def _apply(self, session: Session, memberships: list[Membership], now: dt.datetime) -> tuple[int, int]:
        """Create, approve or revoke users; return the number of users changed and of memberships skipped."""
        groups: dict[str, list[Membership]] = defaultdict(list)
        skipped = 0
        for membership in memberships:
            if not membership.id:
                skipped += 1
                continue
            key = membership.email.strip().lower() if membership.email else f"membership:{membership.id}"
            groups[key].append(membership)

        changed = 0
        for key, group in groups.items():
            email = None if key.startswith("membership:") else key
            user = self._find_user(session, email, group)
            if user is None and email is None:
                skipped += 1  # without an email there is no one to invite
                continue
            if self._apply_group(session, user, email, group, now):
                changed += 1
        return changed, skipped

    @staticmethod
    def _find_user(session: Session, email: str | None, group: list[Membership]) -> User | None:
        ids = [membership.id for membership in group]
        user = session.scalars(select(User).where(User.whop_membership_id.in_(ids))).first()
        if user is None and email is not None:
            user = session.scalars(select(User).where(func.lower(User.email) == email)).first()
        return user

    def _apply_group(self, session, user: User | None, email: str | None, group: list[Membership], now) -> bool:
        valid = [membership for membership in group if membership.status in VALID_STATUSES]
        ended = all(membership.status in ENDED_STATUSES for membership in group)
        current = valid[0] if valid else group[-1]

        if valid:
            if user is None:
                session.add(_invited_user(email, current, now))
                logger.info("Whop membership %s: invited a new user", current.id)
                return True
            return self._grant(user, current)

        if user is None:
            return False
        if ended and user.approved and user.role != "admin":
            user.approved = False
            user.whop_status = current.status
            logger.info("Whop membership %s %s: revoked access of user %s", current.id, current.status, user.id)
            return True

        user.whop_status = current.status
        return False

    @staticmethod
    def _grant(user: User, membership: Membership) -> bool:
        changed = not user.approved
        user.approved = True
        user.whop_status = membership.status
        user.whop_membership_id = membership.id
        if changed:
            logger.info("Whop membership %s %s: approved user %s", membership.id, membership.status, user.id)
        return changed

    # Activation emails

    def _send_activation_emails(self, now: dt.datetime, outcome: SyncOutcome) -> None:
        if not self._mailer.configured:
            if self._awaiting_activation_count():
                outcome.error = "activation emails not sent: SMTP is not configured, set JT_SMTP_HOST"
            return

        resend_before = now - dt.timedelta(seconds=self.settings.activation_resend_after_seconds)
        try:
            for user_id, email in self._users_never_emailed():
                self._email(user_id, email, now, reminder=False)
                outcome.emailed += 1
            for user_id, email in self._users_due_a_resend(resend_before):
                self._email(user_id, email, now, reminder=True)
                outcome.resent += 1
        except MailError as error:
            # One failure usually means the server is down: stop here and try the rest in the next run.
            outcome.error = f"activation email: {error}"
            logger.warning("Whop sync could not send an activation email: %s", error)

    def _email(self, user_id: int, email: str, now: dt.datetime, *, reminder: bool) -> None:
        # The digest is stored before sending, so a delivered link always matches the database.
        token, token_hash = new_activation_token()
        with transaction(self._session_factory) as session:
            user = session.get(User, user_id)
            if user is None:
                return  # deleted since the query that listed it
            user.activation_token_hash = token_hash

        self._mailer.send_activation(email, token, reminder=reminder)

        with transaction(self._session_factory) as session:
            user = session.get(User, user_id)
            if user is None:
                return
            user.activation_sent_at = now
            if reminder:
                user.activation_resends = (user.activation_resends or 0) + 1
                counters.increment(session, RESENT_COUNTER)
        logger.info("sent %s activation email to user %s", "a reminder" if reminder else "an", user_id)

    def _users_never_emailed(self) -> list[tuple[int, str]]:
        with self._session_factory() as session:
            query = _awaiting_activation().where(User.activation_sent_at.is_(None)).order_by(User.id)
            return [(user.id, user.email) for user in session.scalars(query)]

    def _users_due_a_resend(self, resend_before: dt.datetime) -> list[tuple[int, str]]:
        with self._session_factory() as session:
            query = (
                _awaiting_activation()
                .where(User.activation_sent_at <= resend_before)
                .where(User.activation_resends < self.settings.activation_max_resends)
                .order_by(User.id)
            )
            return [(user.id, user.email) for user in session.scalars(query)]

    def _awaiting_activation_count(self) -> int:
        with self._session_factory() as session:
            return session.scalar(select(func.count()).select_from(_awaiting_activation().subquery()))

    # State

    def _record(self, now: dt.datetime, outcome: SyncOutcome) -> None:
        with transaction(self._session_factory) as session:
            state = _state_row(session)
            state.last_attempt_at = now
            state.last_error = outcome.error
            state.last_instance = self._instance_id[:128]
            if outcome.completed:
                state.last_run_at = now
                state.last_synced = outcome.synced
                state.last_resent = outcome.resent

    def record_crash(self, now: dt.datetime, error: BaseException) -> None:
        """Store an unexpected error of a run as the last error, so the status endpoint shows it."""
        self._record(now, SyncOutcome(error=f"internal error: {redact_error(error)}"))

    def snapshot(self, now: dt.datetime) -> dict:
        """Return /api/admin/whop-sync-status; `last_run` is the last successful run."""
        stuck_before = now - dt.timedelta(seconds=self.settings.activation_stuck_after_seconds)
        with self._session_factory() as session:
            state = session.get(WhopSyncState, _STATE_ID)
            totals = counters.read(session, [SYNCED_COUNTER, RESENT_COUNTER])
            pending = session.scalar(
                select(func.count()).select_from(
                    _awaiting_activation()
                    .where(User.activation_resends < self.settings.activation_max_resends)
                    .subquery()
                )
            )
            stuck = session.scalars(
                _awaiting_activation().where(User.created_at <= stuck_before).order_by(User.created_at, User.id)
            ).all()

        last_run = state.last_run_at if state else None
        return {
            "last_run": _iso(last_run),
            "last_synced": state.last_synced if state else 0,
            "last_resent": state.last_resent if state else 0,
            "total_synced": totals[SYNCED_COUNTER],
            "total_resent": totals[RESENT_COUNTER],
            "sync_interval_seconds": self.settings.whop_sync_interval_seconds,
            "pending_resends": pending,
            "stuck_users": [_stuck_user(user, now) for user in stuck],
            "last_attempt": _iso(state.last_attempt_at if state else None),
            "last_error": state.last_error if state else None,
            "last_run_age_seconds": round((now - last_run).total_seconds(), 3) if last_run else None,
            "enabled": self._client is not None,
        }


def _awaiting_activation():
    """Select the Whop users with access who have not set a password yet."""
    return select(User).where(
        User.whop_membership_id.is_not(None),
        User.approved.is_(True),
        User.activated_at.is_(None),
        or_(User.password_hash.is_(None), User.password_hash == ""),
    )


def _invited_user(email: str, membership: Membership, now: dt.datetime) -> User:
    return User(
        email=email,
        role="user",
        approved=True,
        is_affiliate=False,
        whop_membership_id=membership.id,
        whop_status=membership.status,
        activation_resends=0,
        created_at=now,
    )


def _stuck_user(user: User, now: dt.datetime) -> dict:
    return {
        "user_id": user.id,
        "email": user.email,
        "whop_membership_id": user.whop_membership_id,
        "created_at": _iso(user.created_at),
        "days_waiting": round((now - user.created_at).total_seconds() / 86400, 1),
        "activation_emails_sent": (1 if user.activation_sent_at else 0) + (user.activation_resends or 0),
        "last_email_at": _iso(user.activation_sent_at),
    }


def _state_row(session: Session) -> WhopSyncState:
    insert = _INSERTS[session.get_bind().dialect.name]
    session.execute(
        insert(WhopSyncState)
        .values(id=_STATE_ID, last_synced=0, last_resent=0)
        .on_conflict_do_nothing(index_elements=["id"])
    )
    return session.get(WhopSyncState, _STATE_ID)
