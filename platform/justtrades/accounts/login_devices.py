"""Device cookies: a browser that has logged in to an account before keeps its own failed-login count.

Without them, anyone with an email address could lock its owner out by failing five logins, because the
per-account limit would reject the right password too. A successful login sets a signed, HttpOnly cookie that names the
account (by digest) and a random device id. A later login that presents a valid cookie for the same account is
throttled by that device's failures only, so an attacker without the cookie locks out only other clients without
one. The scheme is OWASP's "Slow Down Online Guessing Attacks with Device Cookies".
"""

from __future__ import annotations

import dataclasses
import hashlib
import secrets

from itsdangerous import BadSignature, URLSafeTimedSerializer

COOKIE_NAME = "jt_login_device"
_SALT = "justtrades.login-device"


def _account_digest(account_key: str) -> str:
    return hashlib.sha256(f"login-device:{account_key}".encode()).hexdigest()[:32]


@dataclasses.dataclass(frozen=True)
class DeviceCookies:
    """Issues and verifies device cookies, signed with the app's secret key."""

    secret_key: str
    max_age_seconds: float

    @property
    def _serializer(self) -> URLSafeTimedSerializer:
        return URLSafeTimedSerializer(self.secret_key, salt=_SALT)

    def issue(self, account_key: str) -> str:
        """Return a new cookie value for a browser that has just logged in to `account_key`."""
        return self._serializer.dumps({"account": _account_digest(account_key), "device": secrets.token_urlsafe(16)})

    def device_id(self, account_key: str, cookie: str | None) -> str | None:
        """Return the device id of a valid, unexpired cookie issued for `account_key`, else None."""
        if not cookie:
            return None

        try:
            payload = self._serializer.loads(cookie, max_age=self.max_age_seconds)
        except BadSignature:  # also raised for an expired cookie
            return None

        if not isinstance(payload, dict) or payload.get("account") != _account_digest(account_key):
            return None
        device = payload.get("device")
        return device if isinstance(device, str) and device else None
