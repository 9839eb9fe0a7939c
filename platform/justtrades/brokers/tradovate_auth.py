"""Tradovate access tokens: credentials per token group, one token request per group, renewal ahead of expiry.

Tradovate ends older sessions when the same user requests too many tokens, and throttles the auth endpoint
hard (penalty tickets, then a CAPTCHA). So the process keeps one TokenManager, which requests a token at
most once per token group and environment at a time (a lock per group), caches it until shortly before its
expirationTime, and prefers /auth/renewaccesstoken, which extends the session, over a new token request.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import hashlib
import logging
import os
import stat
import threading
import uuid
from pathlib import Path
from typing import Callable, Mapping

import yaml

from .base import BrokerError, FailureReason
from .tradovate_http import CAPTCHA_WAIT_SECONDS, PenaltyTicket, TradovateHttp, decode_json, parse_retry_after

logger = logging.getLogger(__name__)

CREDENTIALS_FILE_VARIABLE = "JT_TRADOVATE_CREDENTIALS_FILE"

# Tradovate's pages give access tokens a life of 80 or 90 minutes. This is used only when a response has no
# readable expirationTime, so that the token is still renewed in time.
FALLBACK_TOKEN_LIFETIME = dt.timedelta(minutes=80)
# After a rejected login (errorText), wait this long before sending the same credentials again: repeated
# failed logins lead to penalties and a CAPTCHA that only a human can clear.
LOGIN_FAILURE_BACKOFF_SECONDS = 60.0

_REQUIRED_FIELDS = ("name", "password", "app_id", "cid", "sec")
_OPTIONAL_FIELDS = ("app_version", "device_id")


class CredentialsError(ValueError):
    """The credentials file cannot be used; the message names the file, the group and the field."""


@dataclasses.dataclass(frozen=True)
class TradovateCredentials:
    """The body of Tradovate's /auth/accesstokenrequest for one token group."""

    name: str
    password: str = dataclasses.field(repr=False)
    app_id: str
    app_version: str
    cid: int
    sec: str = dataclasses.field(repr=False)
    device_id: str

    def __repr__(self) -> str:
        return (
            f"TradovateCredentials(name={self.name!r}, app_id={self.app_id!r}, app_version={self.app_version!r}, "
            f"cid={self.cid}, device_id={self.device_id!r}, password=***, sec=***)"
        )

    __str__ = __repr__

    def request_body(self) -> dict:
        return {
            "name": self.name,
            "password": self.password,
            "appId": self.app_id,
            "appVersion": self.app_version,
            "cid": self.cid,
            "sec": self.sec,
            "deviceId": self.device_id,
        }


def token_group_key(token_group: str | None, access_token: str | None, account_id: int) -> str:
    """Name the token slot of an account: its token_group, else a hash of its stored token, else the account.

    Accounts without a group that store the same token then share one slot, and the hash keeps the token
    itself out of snapshots and logs.
    """
    if token_group:
        return token_group
    if access_token:
        return "token-" + hashlib.sha256(access_token.encode()).hexdigest()[:12]
    return f"account-{account_id}"


def _credentials_from_fields(source: str, group: str, fields: object) -> TradovateCredentials:
    where = f"{source}: token group {group!r}"
    if not isinstance(fields, dict):
        raise CredentialsError(f"{where} must be a mapping of fields ({', '.join(_REQUIRED_FIELDS)})")

    unknown = sorted(set(fields) - set(_REQUIRED_FIELDS) - set(_OPTIONAL_FIELDS))
    if unknown:
        allowed = ", ".join(_REQUIRED_FIELDS + _OPTIONAL_FIELDS)
        raise CredentialsError(f"{where} has unknown field(s) {', '.join(unknown)}; allowed fields: {allowed}")

    missing = [name for name in _REQUIRED_FIELDS if fields.get(name) in (None, "")]
    if missing:
        raise CredentialsError(f"{where} is missing {', '.join(missing)}; add them to the file")

    try:
        cid = int(fields["cid"])
    except (TypeError, ValueError):
        # The value is not echoed: a misplaced secret could sit in this field.
        raise CredentialsError(f"{where}: cid must be the numeric client id of the Tradovate API key") from None

    # A stable device id: Tradovate treats a new deviceId as a new device, which can ask for verification.
    device_id = fields.get("device_id") or str(uuid.uuid5(uuid.NAMESPACE_URL, f"justtrades:{group}:{fields['name']}"))

    return TradovateCredentials(
        name=str(fields["name"]),
        password=str(fields["password"]),
        app_id=str(fields["app_id"]),
        app_version=str(fields.get("app_version") or "1.0"),
        cid=cid,
        sec=str(fields["sec"]),
        device_id=str(device_id),
    )


def load_credentials(path: str | os.PathLike) -> dict[str, TradovateCredentials]:
    """Read a YAML or JSON file that maps each token group to its Tradovate credentials."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise CredentialsError(
            f"cannot read the Tradovate credentials file {str(path)!r} ({error.strerror}); "
            f"fix the path in {CREDENTIALS_FILE_VARIABLE} or create the file"
        ) from None

    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        position = f" at line {mark.line + 1}" if mark else ""
        raise CredentialsError(f"{path} is not valid YAML or JSON{position}; fix the syntax") from None

    if document is None:
        return {}
    if not isinstance(document, dict):
        raise CredentialsError(f"{path} must map token group names to credential fields, not {type(document).__name__}")

    _warn_if_readable_by_others(path)
    return {str(group): _credentials_from_fields(str(path), str(group), fields) for group, fields in document.items()}


def load_credentials_from_environ(environ: Mapping[str, str] | None = None) -> dict[str, TradovateCredentials]:
    """Load the file named by JT_TRADOVATE_CREDENTIALS_FILE, or return no credentials when it is unset."""
    environ = os.environ if environ is None else environ
    path = environ.get(CREDENTIALS_FILE_VARIABLE)
    if not path:
        return {}
    return load_credentials(path)


def _warn_if_readable_by_others(path: Path) -> None:
    try:
        mode = path.stat().st_mode
    except OSError:
        return
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        logger.warning("Tradovate credentials file %s can be read by other users; run chmod 600 on it", path)


def parse_expiration_time(value: object) -> dt.datetime | None:
    """Parse Tradovate's expirationTime ("2026-12-04T21:00:00.000Z") as an aware UTC datetime.

    A value without an offset is taken as UTC, never as the host's local time.
    """
    if not isinstance(value, str) or not value.strip():
        return None

    try:
        parsed = dt.datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=dt.timezone.utc)
    return parsed.astimezone(dt.timezone.utc)


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _iso(moment: dt.datetime | None) -> str | None:
    return moment.isoformat().replace("+00:00", "Z") if moment else None


@dataclasses.dataclass(eq=False)
class _TokenState:
    """Token state of one token group in one environment, guarded by `lock`."""

    token_group: str
    environment: str
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock, repr=False)
    access_token: str | None = dataclasses.field(default=None, repr=False)
    expires_at: dt.datetime | None = None
    rejected: bool = False
    # The token last seen on the account row, so a token stored by a new OAuth login replaces ours.
    stored_token: str | None = dataclasses.field(default=None, repr=False)
    source: str | None = None
    last_error: str | None = None
    last_refreshed_at: dt.datetime | None = None
    # No token request before this time; the error to raise until then.
    blocked_until: dt.datetime | None = None
    blocked_error: BrokerError | None = dataclasses.field(default=None, repr=False)
    penalty_ticket: str | None = dataclasses.field(default=None, repr=False)


class TokenManager:
    """Access tokens per (token group, environment), shared by every thread of the process.

    `access_token()` returns a cached token or gets one. `renew_rejected()` is called after Tradovate
    responded 401 to a token. Both raise BrokerError: TOKEN_EXPIRED (permanent) when a human must act,
    RATE_LIMIT_EXCEEDED (with retry_after) while Tradovate throttles, TIMEOUT or CONNECTION_ERROR.
    """

    def __init__(
        self,
        credentials: Mapping[str, TradovateCredentials],
        base_urls: Mapping[str, str],
        *,
        http: TradovateHttp | None = None,
        timeout_seconds: float = 5.0,
        renew_before_seconds: float = 600.0,
        clock: Callable[[], dt.datetime] = _utc_now,
    ):
        self._credentials = dict(credentials)
        self._base_urls = dict(base_urls)
        self._http = http or TradovateHttp(timeout_seconds)
        self._renew_before = dt.timedelta(seconds=renew_before_seconds)
        self._clock = clock
        self._lock_wait_seconds = 3 * self._http.timeout_seconds + 1
        self._states: dict[tuple[str, str], _TokenState] = {}
        self._states_lock = threading.Lock()

    # -- public interface --------------------------------------------------------------------------------

    def has_credentials(self, token_group: str | None) -> bool:
        return token_group is not None and token_group in self._credentials

    def access_token(self, token_group: str, environment: str, stored_token: str | None = None) -> str:
        """Return a token for the group, requesting or renewing it when it is missing or about to expire.

        `stored_token` is the token kept on the account row by an OAuth login. Groups without credentials use
        it, and a new value on the row replaces the cached token.
        """
        state = self._state(token_group, environment)
        with self._locked(state):
            self._adopt_stored_token(state, stored_token)
            now = self._clock()
            if self._is_fresh(state, now):
                return state.access_token
            return self._refresh(state, now)

    def renew(self, token_group: str, environment: str, stored_token: str | None = None) -> str:
        """Renew the group's token now, ahead of its expiry, and return the new one (for the refresh daemon).

        It uses /auth/renewaccesstoken while the token lives, else the credentials. While Tradovate
        throttles the group, a token that still works is returned unchanged.
        """
        state = self._state(token_group, environment)
        with self._locked(state):
            self._adopt_stored_token(state, stored_token)
            return self._refresh(state, self._clock())

    def token_expiry(self, token_group: str, environment: str) -> dt.datetime | None:
        """Return the expirationTime of the group's current token, or None when unknown."""
        with self._states_lock:
            state = self._states.get((token_group, environment))
        return state.expires_at if state is not None else None

    def renew_rejected(self, token_group: str, environment: str, rejected_token: str) -> str:
        """Return a token to retry with after Tradovate responded 401 to `rejected_token`.

        When another thread already replaced that token, its replacement is returned without a request.
        """
        state = self._state(token_group, environment)
        with self._locked(state):
            if state.access_token and state.access_token != rejected_token and not state.rejected:
                return state.access_token

            logger.info("Tradovate rejected the token of group %s (%s); renewing it", token_group, environment)
            state.rejected = True
            return self._refresh(state, self._clock())

    def renew_due(self) -> int:
        """Renew every token that expires within the renewal margin, and return how many were renewed.

        Errors are recorded in the snapshot and logged, not raised, because a daemon calls this.
        """
        renewed = 0
        for state in self._all_states():
            if state.access_token is None or state.expires_at is None:
                continue
            if state.expires_at - self._renew_before > self._clock():
                continue

            try:
                self.access_token(state.token_group, state.environment)
            except BrokerError as error:
                logger.warning(
                    "renewing the Tradovate token of group %s (%s) failed: %s",
                    state.token_group,
                    state.environment,
                    error,
                )
            else:
                renewed += 1
        return renewed

    def snapshot(self) -> list[dict]:
        """Return one row per token group and environment: valid, expires_at, last_error; never a token."""
        now = self._clock()
        rows = []
        for state in sorted(self._all_states(), key=lambda s: (s.token_group, s.environment)):
            blocked = state.blocked_until is not None and state.blocked_until > now
            rows.append(
                {
                    "token_group": state.token_group,
                    "environment": state.environment,
                    "source": state.source,
                    "valid": self._is_valid(state, now),
                    "expires_at": _iso(state.expires_at),
                    "last_refreshed_at": _iso(state.last_refreshed_at),
                    "last_error": state.last_error,
                    "blocked_until": _iso(state.blocked_until) if blocked else None,
                }
            )
        return rows

    def forget(self) -> None:
        """Drop every cached token (for tests and after the credentials file changed)."""
        with self._states_lock:
            self._states.clear()

    def close(self) -> None:
        self._http.close()

    # -- state --------------------------------------------------------------------------------------------

    def _state(self, token_group: str, environment: str) -> _TokenState:
        if environment not in self._base_urls:
            known = ", ".join(sorted(self._base_urls))
            raise BrokerError(
                FailureReason.ACCOUNT_NOT_FOUND,
                f"environment {environment!r} of token group {token_group!r} is unknown; use one of {known}",
                permanent=True,
            )

        key = (token_group, environment)
        with self._states_lock:
            state = self._states.get(key)
            if state is None:
                state = _TokenState(token_group, environment)
                state.source = "credentials" if token_group in self._credentials else "stored_token"
                self._states[key] = state
            return state

    def _all_states(self) -> list[_TokenState]:
        with self._states_lock:
            return list(self._states.values())

    @contextlib.contextmanager
    def _locked(self, state: _TokenState):
        # Bounded wait: the holder makes at most two requests, each bounded by the HTTP timeout.
        if not state.lock.acquire(timeout=self._lock_wait_seconds):
            raise BrokerError(
                FailureReason.TIMEOUT,
                f"waited {self._lock_wait_seconds:.0f} s for the token request of group "
                f"{state.token_group!r} ({state.environment}) that another thread is making",
                permanent=False,
            )
        try:
            yield
        finally:
            state.lock.release()

    def _adopt_stored_token(self, state: _TokenState, stored_token: str | None) -> None:
        if not stored_token or stored_token == state.stored_token:
            return

        state.stored_token = stored_token
        # Credentials groups keep the token they requested; a stored token only seeds them before that.
        if state.source == "credentials" and state.access_token:
            return
        state.access_token = stored_token
        state.expires_at = None
        state.rejected = False

    def _is_fresh(self, state: _TokenState, now: dt.datetime) -> bool:
        if not state.access_token or state.rejected:
            return False
        return state.expires_at is None or state.expires_at - self._renew_before > now

    @staticmethod
    def _is_valid(state: _TokenState, now: dt.datetime) -> bool:
        if not state.access_token or state.rejected:
            return False
        return state.expires_at is None or state.expires_at > now

    # -- requests -----------------------------------------------------------------------------------------

    def _refresh(self, state: _TokenState, now: dt.datetime) -> str:
        """Renew the current token if it can still be renewed, else request a new one with credentials."""
        token_alive = bool(state.access_token) and (state.expires_at is None or state.expires_at > now)

        # While Tradovate throttles this group, send nothing; a token that still works stays in use.
        if state.blocked_until and now < state.blocked_until and state.blocked_error is not None:
            if token_alive and not state.rejected:
                return state.access_token
            raise self._blocked_error(state, now)

        if token_alive:
            try:
                return self._renew(state)
            except BrokerError as error:
                if error.reason is not FailureReason.TOKEN_EXPIRED:
                    return self._keep_current_token_or_raise(state, error)
                # The session is gone; only the credentials can start a new one.

        credentials = self._credentials.get(state.token_group)
        if credentials is None:
            state.rejected = True
            problem = "expired" if state.access_token else "is missing"
            error = BrokerError(
                FailureReason.TOKEN_EXPIRED,
                f"the token of group {state.token_group!r} ({state.environment}) {problem} and the group has no "
                f"credentials in {CREDENTIALS_FILE_VARIABLE}; re-authenticate the account via OAuth "
                "or add the group's credentials",
                permanent=True,
            )
            state.last_error = error.detail
            raise error
        return self._request_token(state, credentials)

    def _keep_current_token_or_raise(self, state: _TokenState, error: BrokerError) -> str:
        """After a renewal failed on the network, keep using a token that has not expired yet."""
        state.last_error = f"renewal failed: {error.detail}"
        now = self._clock()
        if not state.rejected and state.access_token and (state.expires_at is None or state.expires_at > now):
            logger.warning(
                "renewing the Tradovate token of group %s (%s) failed, using the current one until %s: %s",
                state.token_group,
                state.environment,
                _iso(state.expires_at),
                error,
            )
            return state.access_token
        raise error

    def _renew(self, state: _TokenState) -> str:
        url = f"{self._base_urls[state.environment]}/auth/renewaccesstoken"
        response = self._http.send("GET", url, token=state.access_token)
        self._raise_if_throttled(state, response, "renewaccesstoken", keeps_ticket=False)

        if response.status_code == 401:
            raise BrokerError(FailureReason.TOKEN_EXPIRED, "renewaccesstoken returned 401", permanent=True)
        if response.status_code != 200:
            raise BrokerError(
                FailureReason.CONNECTION_ERROR,
                f"renewaccesstoken returned HTTP {response.status_code}",
                permanent=False,
            )

        body = decode_json(response, what="renewaccesstoken")
        if not isinstance(body, dict) or not body.get("accessToken"):
            text = body.get("errorText") if isinstance(body, dict) else None
            raise BrokerError(
                FailureReason.TOKEN_EXPIRED,
                f"renewaccesstoken returned no token ({text or 'no errorText'})",
                permanent=True,
            )

        self._store_token(state, body, "renewed")
        return state.access_token

    def _request_token(self, state: _TokenState, credentials: TradovateCredentials) -> str:
        body = credentials.request_body()
        if state.penalty_ticket:
            body["p-ticket"] = state.penalty_ticket

        url = f"{self._base_urls[state.environment]}/auth/accesstokenrequest"
        logger.info("requesting a Tradovate token for group %s (%s)", state.token_group, state.environment)
        response = self._http.send("POST", url, json_body=body)
        self._raise_if_throttled(state, response, "accesstokenrequest", keeps_ticket=True)

        if response.status_code != 200:
            error = BrokerError(
                FailureReason.CONNECTION_ERROR,
                f"accesstokenrequest returned HTTP {response.status_code}",
                permanent=False,
            )
            state.last_error = error.detail
            raise error

        body = decode_json(response, what="accesstokenrequest")
        body = body if isinstance(body, dict) else {}
        if body.get("accessToken"):
            self._store_token(state, body, "requested")
            return state.access_token

        error_text = body.get("errorText") or "the response has neither accessToken nor errorText"
        error = BrokerError(
            FailureReason.TOKEN_EXPIRED,
            f"Tradovate rejected the login of group {state.token_group!r} ({state.environment}): {error_text}; "
            "fix the credentials file",
            permanent=True,
        )
        self._block(state, LOGIN_FAILURE_BACKOFF_SECONDS, error)
        raise error

    def _raise_if_throttled(self, state: _TokenState, response, endpoint: str, *, keeps_ticket: bool) -> None:
        """Raise for a 429 or a penalty ticket, and refuse further auth requests until the wait is over.

        `keeps_ticket` stores a p-ticket for the next request: Tradovate wants it resent with the same body.
        """
        now = self._clock()
        if response.status_code == 429:
            wait = parse_retry_after(response.headers.get("Retry-After"), now)
            error = BrokerError(
                FailureReason.RATE_LIMIT_EXCEEDED,
                f"{endpoint} returned 429 for group {state.token_group!r}; retry in {wait:.0f} s",
                permanent=False,
                retry_after=wait,
            )
            self._block(state, wait, error)
            raise error

        if response.status_code != 200:
            return
        try:
            penalty = PenaltyTicket.from_body(response.json())
        except ValueError:
            return
        if penalty is None:
            return

        if penalty.captcha:
            state.penalty_ticket = None
            error = BrokerError(
                FailureReason.TOKEN_EXPIRED,
                f"Tradovate asks for a CAPTCHA before giving group {state.token_group!r} ({state.environment}) a "
                "token; log in once by hand in the Tradovate web trader, then wait about an hour",
                permanent=True,
            )
            self._block(state, CAPTCHA_WAIT_SECONDS, error)
            raise error

        state.penalty_ticket = penalty.ticket if keeps_ticket else None
        error = BrokerError(
            FailureReason.RATE_LIMIT_EXCEEDED,
            f"{endpoint} for group {state.token_group!r} got a penalty ticket; retry in {penalty.wait_seconds:.0f} s",
            permanent=False,
            retry_after=penalty.wait_seconds,
        )
        self._block(state, penalty.wait_seconds, error)
        raise error

    def _block(self, state: _TokenState, seconds: float, error: BrokerError) -> None:
        state.blocked_until = self._clock() + dt.timedelta(seconds=seconds)
        state.blocked_error = error
        state.last_error = error.detail
        logger.warning(
            "no Tradovate token request for group %s (%s) before %s: %s",
            state.token_group,
            state.environment,
            _iso(state.blocked_until),
            error.detail,
        )

    @staticmethod
    def _blocked_error(state: _TokenState, now: dt.datetime) -> BrokerError:
        original = state.blocked_error
        remaining = (state.blocked_until - now).total_seconds()
        return BrokerError(
            original.reason,
            original.detail,
            permanent=original.permanent,
            retry_after=remaining if original.retry_after is not None else None,
        )

    def _store_token(self, state: _TokenState, body: dict, action: str) -> None:
        now = self._clock()
        expires_at = parse_expiration_time(body.get("expirationTime"))
        if expires_at is None:
            logger.warning(
                "Tradovate gave group %s (%s) a token without a readable expirationTime; assuming %s",
                state.token_group,
                state.environment,
                FALLBACK_TOKEN_LIFETIME,
            )
            expires_at = now + FALLBACK_TOKEN_LIFETIME

        state.access_token = str(body["accessToken"])
        state.expires_at = expires_at
        state.rejected = False
        state.last_error = None
        state.last_refreshed_at = now
        state.blocked_until = None
        state.blocked_error = None
        state.penalty_ticket = None
        logger.info(
            "Tradovate token %s for group %s (%s), expires at %s",
            action,
            state.token_group,
            state.environment,
            _iso(expires_at),
        )
