"""Token refresh daemon and the account auth status: Tradovate tokens renewed ahead of expiry, per token group.

Every `interval_seconds` the `token-refresh` thread reads the enabled Tradovate accounts, and for each token
group whose token is missing, expired or expiring within `renew_before_seconds` asks the process's TokenManager
(brokers.tradovate_auth) for a new one. A renewed token and its expiry are written to every account of the group;
a group that cannot be renewed is marked `expired` (or `missing`) until someone re-authenticates it via OAuth.
On PostgreSQL an advisory lock keeps the daemon to one replica.

`account_auth_status()` is the one snapshot behind /api/accounts/auth-status and the justtrades_accounts* metrics.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import threading
from typing import Callable

from sqlalchemy import select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from ..brokers.base import BrokerError, FailureReason
from ..daemons import ThreadContext, redact_error
from ..db.engine import transaction
from ..db.models import Account
from .account_groups import group_key
from .advisory_lock import AdvisoryLock
from .settings import TokenRefreshSettings

logger = logging.getLogger(__name__)

REAUTH_ACTION = "Re-authenticate via OAuth"


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def iso(moment: dt.datetime | None) -> str | None:
    return moment.isoformat().replace("+00:00", "Z") if moment else None


def token_status(account: Account, now: dt.datetime) -> str:
    """Classify an account's token: "missing", "expired" or "valid"."""
    if not account.access_token or account.auth_status == "missing":
        return "missing"
    if account.auth_status == "expired":
        return "expired"
    if account.token_expires_at is not None and account.token_expires_at <= now:
        return "expired"
    return "valid"


def _tradovate_accounts(session: Session) -> list[Account]:
    return list(
        session.scalars(
            select(Account).where(Account.broker == "tradovate", Account.enabled.is_(True)).order_by(Account.id)
        )
    )


def account_auth_status(session_factory: sessionmaker[Session], now: dt.datetime | None = None) -> dict:
    """Return the auth health of the enabled Tradovate accounts (never a token)."""
    now = now or _utc_now()
    with session_factory() as session:
        accounts = _tradovate_accounts(session)

    needing = []
    valid_groups = set()
    expiries = []
    for account in accounts:
        status = token_status(account, now)
        if status == "valid":
            valid_groups.add((account.environment, group_key(account)))
            if account.token_expires_at is not None:
                expiries.append(account.token_expires_at)
        else:
            needing.append({"id": account.id, "name": account.name, "status": status, "action": REAUTH_ACTION})

    return {
        "all_accounts_valid": not needing,
        "accounts_needing_reauth": needing,
        "count": len(needing),
        "total_accounts": len(accounts),
        "valid_token_groups": len(valid_groups),
        "earliest_token_expiry": min(expiries) if expiries else None,
    }


@dataclasses.dataclass
class _Group:
    token_group: str
    environment: str
    account_ids: list[int]
    current_token: str | None = dataclasses.field(repr=False)
    expires_at: dt.datetime | None
    statuses: set[str]


class TokenRefresher:
    """Renews the Tradovate tokens of every token group ahead of expiry, through one shared TokenManager."""

    def __init__(
        self,
        settings: TokenRefreshSettings,
        session_factory: sessionmaker[Session],
        engine,
        token_manager: Callable[[], object],
    ):
        self.settings = settings
        self.session_factory = session_factory
        self._token_manager = token_manager  # resolved on each pass: the broker that owns it may start later
        self.lock = AdvisoryLock(engine, "justtrades.token-refresh")

        self._lock = threading.Lock()
        self.leader = False
        self.last_run_at: dt.datetime | None = None
        self.last_error: str | None = None
        self.renewed_total = 0
        self.failed_total = 0

    def register_threads(self, threads) -> None:
        threads.register("token-refresh", self.run, restart="always", on_stop=self.lock.release)

    def run(self, context: ThreadContext) -> None:
        while not context.stopping():
            context.beat()
            self.leader = self.lock.acquire()
            if self.leader:
                try:
                    self.refresh_once()
                except SQLAlchemyError as error:
                    self._note_error(f"reading accounts failed: {redact_error(error)}")
            if context.wait(self.settings.interval_seconds):
                return

    def _note_error(self, message: str) -> None:
        with self._lock:
            self.last_error = message
        logger.error("token refresh pass failed: %s", message)

    # One pass

    def refresh_once(self, now: dt.datetime | None = None) -> int:
        """Renew every group that needs it; return how many groups got a new token."""
        now = now or _utc_now()
        renewed = 0

        for group in self._groups_due(now):
            if self._renew_group(group, now):
                renewed += 1

        with self._lock:
            self.last_run_at = _utc_now()
        return renewed

    def _groups_due(self, now: dt.datetime) -> list[_Group]:
        margin = dt.timedelta(seconds=self.settings.renew_before_seconds)
        with self.session_factory() as session:
            accounts = _tradovate_accounts(session)

        groups: dict[tuple[str, str], _Group] = {}
        for account in accounts:
            key = (account.environment, group_key(account))
            group = groups.setdefault(key, _Group(key[1], key[0], [], None, None, set()))
            group.account_ids.append(account.id)
            group.statuses.add(token_status(account, now))
            if account.access_token and self._is_later(account.token_expires_at, group):
                # Accounts of a group should share one token; the one expiring last is the newest.
                group.current_token, group.expires_at = account.access_token, account.token_expires_at

        return [
            group
            for group in groups.values()
            if group.statuses != {"valid"} or (group.expires_at is not None and group.expires_at - margin <= now)
        ]

    @staticmethod
    def _is_later(expires_at: dt.datetime | None, group: _Group) -> bool:
        if group.current_token is None:
            return True
        if expires_at is None or group.expires_at is None:
            return False
        return expires_at > group.expires_at

    def _renew_group(self, group: _Group, now: dt.datetime) -> bool:
        manager = self._token_manager()
        if manager is None:
            self._note_error("no Tradovate token manager is configured, so tokens cannot be renewed")
            return False

        if not self._is_renewable(manager, group, now):
            self._mark_needing_reauth(group, "the token expired and the group has no credentials to request a new one")
            return False

        try:
            token, expires_at = self._request_token(manager, group)
        except BrokerError as error:
            self._record_failure(group, error)
            return False

        self._store(group, token, expires_at)
        with self._lock:
            self.renewed_total += 1
        logger.info(
            "renewed the Tradovate token of group %s (%s) for accounts %s; it expires at %s",
            group.token_group,
            group.environment,
            group.account_ids,
            iso(expires_at),
        )
        return True

    @staticmethod
    def _is_renewable(manager, group: _Group, now: dt.datetime) -> bool:
        """Tell whether the group can get a token: from its credentials, or by renewing a token not expired or rejected."""
        if manager.has_credentials(group.token_group):
            return True
        if group.current_token is None or group.statuses <= {"expired", "missing"}:
            return False
        return group.expires_at is None or group.expires_at > now

    def _request_token(self, manager, group: _Group) -> tuple[str, dt.datetime | None]:
        token = manager.access_token(group.token_group, group.environment, group.current_token)

        # The manager treats a stored OAuth token as fresh (it does not know its expiry), so a token that is
        # still the stored one is renewed explicitly here.
        if token == group.current_token and group.current_token:
            token = manager.renew(group.token_group, group.environment, group.current_token)

        return token, manager.token_expiry(group.token_group, group.environment)

    def _store(self, group: _Group, token: str, expires_at: dt.datetime | None) -> None:
        with transaction(self.session_factory) as session:
            session.execute(
                update(Account)
                .where(Account.id.in_(group.account_ids))
                .values(access_token=token, token_expires_at=expires_at, auth_status="valid")
            )

    def _record_failure(self, group: _Group, error: BrokerError) -> None:
        with self._lock:
            self.failed_total += 1
            self.last_error = f"group {group.token_group} ({group.environment}): {error}"

        if error.reason is FailureReason.TOKEN_EXPIRED or error.permanent:
            self._mark_needing_reauth(group, str(error))
        else:
            logger.warning(
                "renewing the Tradovate token of group %s (%s) failed; retrying next pass: %s",
                group.token_group,
                group.environment,
                error,
            )

    def _mark_needing_reauth(self, group: _Group, reason: str) -> None:
        """Mark the group's accounts expired (or missing) so auth-status lists them; log only on a change."""
        status = "missing" if group.current_token is None else "expired"
        with transaction(self.session_factory) as session:
            changed = session.execute(
                update(Account)
                .where(
                    Account.id.in_(group.account_ids),
                    Account.auth_status != status,
                    # A re-login may have stored a new token since this pass read the group; leave that one valid.
                    _same_token(group.current_token),
                )
                .values(auth_status=status)
            ).rowcount

        if changed:
            logger.error(
                "Tradovate token of group %s (%s) cannot be renewed, so accounts %s need OAuth: %s",
                group.token_group,
                group.environment,
                group.account_ids,
                reason,
            )

    def snapshot(self) -> dict:
        with self._lock:
            return {
                "enabled": self.settings.enabled,
                "leader": self.leader,
                "last_run_at": iso(self.last_run_at),
                "renewed_total": self.renewed_total,
                "failed_total": self.failed_total,
                "last_error": self.last_error,
            }


def _same_token(token: str | None):
    if token is None:
        return Account.access_token.is_(None)
    return Account.access_token == token
