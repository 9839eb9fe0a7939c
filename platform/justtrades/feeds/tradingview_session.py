"""TradingView credentials: the JWT the quote socket authenticates with, and the session cookies that renew it.

The JWT (TradingView calls it `auth_token`) expires after a few hours. With the `sessionid` and `sessionid_sign`
cookies of a logged-in browser session, a new one is read from a TradingView page, which embeds it as
`"auth_token":"<jwt>"`; a JSON body with an `auth_token` key is accepted too.

The session file is JSON: {"sessionid": "...", "sessionid_sign": "...", "auth_token": "...", "updated_at": "<ISO>"}.
A renewed JWT is written back to it, so a restart starts with the newest token. Nothing here logs a credential.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import logging
import os
import re
import tempfile
import threading
from pathlib import Path

import requests

from .settings import TradingViewSettings

logger = logging.getLogger(__name__)

_AUTH_TOKEN_IN_PAGE = re.compile(r'"auth_token"\s*:\s*"([^"]+)"')


class SessionRefreshError(Exception):
    """Fetching a new JWT failed; `rejected` tells whether TradingView refused the cookies (not a network error)."""

    def __init__(self, message: str, *, rejected: bool):
        super().__init__(message)
        self.rejected = rejected


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def jwt_expiry(token: str | None) -> dt.datetime | None:
    """Return the `exp` claim of a JWT as UTC, or None when the token is not a decodable JWT.

    The signature is not checked: TradingView checks it, this only tells when to renew.
    """
    if not token or token.count(".") != 2:
        return None

    payload = token.split(".")[1]
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (binascii.Error, ValueError):
        return None

    exp = claims.get("exp") if isinstance(claims, dict) else None
    if not isinstance(exp, (int, float)):
        return None
    return dt.datetime.fromtimestamp(exp, dt.timezone.utc)


class TradingViewSession:
    """Thread-safe holder of the JWT and cookies, with their validity as last observed."""

    def __init__(self, settings: TradingViewSettings):
        self.settings = settings
        self._lock = threading.Lock()

        self._jwt = settings.jwt
        self._session_id = settings.session_id
        self._session_id_sign = settings.session_id_sign
        self._updated_at: dt.datetime | None = _utc_now() if settings.jwt else None
        self._cookies_valid: bool | None = None
        self._jwt_rejected = False
        self.last_refresh_at: dt.datetime | None = None
        self.last_refresh_error: str | None = None

        self._load_session_file()

    # Loading and saving

    @property
    def session_file(self) -> Path | None:
        return self.settings.session_file

    def session_file_exists(self) -> bool:
        return self.session_file is not None and self.session_file.is_file()

    def _load_session_file(self) -> None:
        path = self.session_file
        if path is None or not path.is_file():
            return

        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            logger.error("TradingView session file %s is unreadable (%s); fix its JSON or remove it", path, type(error).__name__)
            return
        if not isinstance(data, dict):
            logger.error("TradingView session file %s must hold a JSON object; rewrite it as documented", path)
            return

        cookies = data.get("cookies") if isinstance(data.get("cookies"), dict) else data
        # Values given in the environment win over the file, so an operator can override one piece.
        self._session_id = self._session_id or cookies.get("sessionid") or None
        self._session_id_sign = self._session_id_sign or cookies.get("sessionid_sign") or None
        self._jwt = self._jwt or data.get("auth_token") or data.get("jwt") or None
        self._updated_at = self._parse_time(data.get("updated_at")) or dt.datetime.fromtimestamp(
            path.stat().st_mtime, dt.timezone.utc
        )
        logger.info("loaded TradingView session from %s (cookies: %s, JWT: %s)", path, self.has_cookies(), bool(self._jwt))

    @staticmethod
    def _parse_time(value) -> dt.datetime | None:
        if not isinstance(value, str):
            return None
        try:
            moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return moment if moment.tzinfo else moment.replace(tzinfo=dt.timezone.utc)

    def _save_session_file(self) -> None:
        path = self.session_file
        if path is None:
            return

        data = {
            "sessionid": self._session_id,
            "sessionid_sign": self._session_id_sign,
            "auth_token": self._jwt,
            "updated_at": self._updated_at.isoformat().replace("+00:00", "Z") if self._updated_at else None,
        }
        # Write to a private temporary file and rename it, so a crash never leaves half a credentials file.
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor, temporary = tempfile.mkstemp(prefix=".tradingview-session-", dir=path.parent)
        try:
            with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
                json.dump(data, handle)
            os.chmod(temporary, 0o600)
            os.replace(temporary, path)
        except OSError:
            logger.exception("could not write the TradingView session file %s; the renewed JWT stays in memory", path)
            Path(temporary).unlink(missing_ok=True)

    # State

    def has_cookies(self) -> bool:
        return bool(self._session_id)

    def has_credentials(self) -> bool:
        return bool(self._jwt) or self.has_cookies()

    @property
    def auto_refresh_enabled(self) -> bool:
        return self.settings.auto_refresh and self.has_cookies()

    def auth_token(self) -> str | None:
        """Return the JWT to send in set_auth_token, or None when only the unauthorized token can be used."""
        with self._lock:
            return self._jwt

    def jwt_valid(self, now: dt.datetime | None = None) -> bool:
        """A JWT is valid when present, not refused by TradingView, and (when it has an exp claim) not expired."""
        now = now or _utc_now()
        with self._lock:
            if not self._jwt or self._jwt_rejected:
                return False
            expiry = jwt_expiry(self._jwt)
        return expiry is None or expiry > now

    def jwt_expires_at(self) -> dt.datetime | None:
        with self._lock:
            return jwt_expiry(self._jwt)

    def cookies_valid(self) -> bool:
        with self._lock:
            return bool(self._session_id) and self._cookies_valid is True

    def cookies_checked(self) -> bool:
        with self._lock:
            return self._cookies_valid is not None

    def updated_at(self) -> dt.datetime | None:
        with self._lock:
            return self._updated_at

    def mark_jwt_rejected(self) -> None:
        """Record that TradingView refused the JWT (a protocol error after set_auth_token)."""
        with self._lock:
            self._jwt_rejected = True

    def refresh_due(self, now: dt.datetime | None = None) -> bool:
        """Tell whether the JWT should be renewed now: missing, refused, expired, or expiring within the margin."""
        if not self.auto_refresh_enabled:
            return False
        now = now or _utc_now()

        with self._lock:
            if not self._cookies_valid and self._cookies_valid is not None:
                # Refused cookies stay refused until an operator replaces them; retrying would only add noise.
                return False
            if not self._jwt or self._jwt_rejected or self._cookies_valid is None:
                return True
            expiry = jwt_expiry(self._jwt)
        margin = dt.timedelta(seconds=self.settings.jwt_refresh_margin_seconds)
        return expiry is not None and expiry - margin <= now

    # Refresh

    def refresh(self, http: requests.Session) -> None:
        """Fetch a new JWT with the session cookies; raise SessionRefreshError saying why when none comes back."""
        if not self.has_cookies():
            raise SessionRefreshError(
                "no TradingView session cookies; set JT_TRADINGVIEW_SESSIONID or the session file", rejected=False
            )

        try:
            token = self._fetch_token(http)
        except SessionRefreshError as error:
            with self._lock:
                self.last_refresh_at = _utc_now()
                self.last_refresh_error = str(error)
                if error.rejected:
                    self._cookies_valid = False
            raise

        with self._lock:
            self._jwt = token
            self._jwt_rejected = False
            self._cookies_valid = True
            self._updated_at = self.last_refresh_at = _utc_now()
            self.last_refresh_error = None
            self._save_session_file()
        logger.info("renewed the TradingView JWT; it expires at %s", jwt_expiry(token))

    def _fetch_token(self, http: requests.Session) -> str:
        url = self.settings.jwt_refresh_url
        cookies = {"sessionid": self._session_id}
        if self._session_id_sign:
            cookies["sessionid_sign"] = self._session_id_sign

        try:
            response = http.get(url, cookies=cookies, timeout=self.settings.http_timeout_seconds)
        except requests.RequestException as error:
            raise SessionRefreshError(f"JWT refresh request to {url} failed: {type(error).__name__}", rejected=False) from error

        if response.status_code in (401, 403):
            raise SessionRefreshError(
                f"TradingView refused the session cookies (HTTP {response.status_code}); log in again and update them",
                rejected=True,
            )
        if response.status_code != 200:
            raise SessionRefreshError(f"JWT refresh at {url} returned HTTP {response.status_code}", rejected=False)

        token = self._token_from_body(response)
        if not token:
            raise SessionRefreshError(
                "TradingView returned no auth_token for the session cookies, so they have expired; log in again "
                "and update them",
                rejected=True,
            )
        return token

    @staticmethod
    def _token_from_body(response: requests.Response) -> str | None:
        if "json" in response.headers.get("Content-Type", ""):
            try:
                body = response.json()
            except ValueError:
                body = None
            if isinstance(body, dict) and isinstance(body.get("auth_token"), str):
                return body["auth_token"] or None

        match = _AUTH_TOKEN_IN_PAGE.search(response.text)
        return match.group(1) if match else None
