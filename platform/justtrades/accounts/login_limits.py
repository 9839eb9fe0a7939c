"""Failed-login throttling per account (or per known device) and per client address, stored in the database.

The failures are rows of the `login_failures` table, so every thread and every replica sharing the database
counts the same failures. A key is throttled once it has `max_failures` failures inside the sliding window; the
Retry-After value is the time until the oldest of those failures leaves the window.

A client with a device cookie for the account (see login_devices.py) is counted under its device instead of the
account, so failures by strangers do not lock out the account's owner.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import logging
import math

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session, sessionmaker

from ..db.engine import transaction
from ..db.models import LoginFailure

logger = logging.getLogger(__name__)

ACCOUNT = "account"
DEVICE = "device"
ADDRESS = "address"


@dataclasses.dataclass(frozen=True)
class Throttle:
    """A refusal: which scope hit its limit and how many seconds until one more attempt is allowed."""

    scope: str
    retry_after_seconds: int


def _key_hash(scope: str, key: str) -> str:
    return hashlib.sha256(f"{scope}:{key}".encode()).hexdigest()


class LoginThrottle:
    def __init__(self, session_factory: sessionmaker[Session], *, max_failures: int, window_seconds: float):
        self._session_factory = session_factory
        self.max_failures = max_failures
        self.window = dt.timedelta(seconds=window_seconds)

    def check(self, account_key: str, address: str, now: dt.datetime, device: str | None = None) -> Throttle | None:
        """Return a Throttle when the account (or the known device) or the address has too many recent failures."""
        with self._session_factory() as session:
            for scope, key in (self._client_key(account_key, device), (ADDRESS, address)):
                retry_after = self._retry_after(session, scope, key, now)
                if retry_after is not None:
                    return Throttle(scope, retry_after)
        return None

    def record_failure(self, account_key: str, address: str, now: dt.datetime, device: str | None = None) -> None:
        """Store one failure for the account (or the known device) and one for the address, and drop expired rows."""
        scope, key = self._client_key(account_key, device)
        with transaction(self._session_factory) as session:
            session.add(LoginFailure(scope=scope, key_hash=_key_hash(scope, key), failed_at=now))
            session.add(LoginFailure(scope=ADDRESS, key_hash=_key_hash(ADDRESS, address), failed_at=now))
            session.execute(delete(LoginFailure).where(LoginFailure.failed_at < now - self.window))

    def clear_account(self, account_key: str, device: str | None = None) -> None:
        """Forget the failures of an account, and of the device used, after a successful login.

        The address keeps its count, so one good password does not reset a guesser's budget for other accounts.
        """
        keys = [_key_hash(ACCOUNT, account_key)]
        if device is not None:
            keys.append(_key_hash(DEVICE, self._client_key(account_key, device)[1]))
        with transaction(self._session_factory) as session:
            session.execute(
                delete(LoginFailure).where(LoginFailure.scope.in_((ACCOUNT, DEVICE)), LoginFailure.key_hash.in_(keys))
            )

    @staticmethod
    def _client_key(account_key: str, device: str | None) -> tuple[str, str]:
        if device is None:
            return ACCOUNT, account_key
        return DEVICE, f"{account_key}\n{device}"

    def _retry_after(self, session: Session, scope: str, key: str, now: dt.datetime) -> int | None:
        since = now - self.window
        recent = (
            select(LoginFailure.failed_at)
            .where(LoginFailure.scope == scope, LoginFailure.key_hash == _key_hash(scope, key))
            .where(LoginFailure.failed_at > since)
        )
        count = session.scalar(select(func.count()).select_from(recent.subquery()))
        if count < self.max_failures:
            return None

        # The count drops below the limit once the oldest (count - max_failures + 1) failures leave the window,
        # so the last of those, at offset count - max_failures in age order, sets Retry-After.
        expiring = session.scalars(
            recent.order_by(LoginFailure.failed_at).offset(count - self.max_failures).limit(1)
        ).first()
        seconds = (expiring + self.window - now).total_seconds()
        return max(1, math.ceil(seconds))
