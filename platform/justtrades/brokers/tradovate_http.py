"""HTTP transport shared by the Tradovate adapter and its token manager.

It owns the requests sessions (one per thread, because requests does not promise that a Session is
thread-safe) and translates transport failures and Tradovate's throttling responses into BrokerError, so
callers only deal with the project's own error type.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import email.utils
import json
import logging
import os
import threading
import urllib.parse
from decimal import Decimal
from typing import Any

import requests
import requests.utils
import urllib3.exceptions

from .base import BrokerError, FailureReason

logger = logging.getLogger(__name__)

DEMO_URL = "https://demo.tradovateapi.com/v1"
LIVE_URL = "https://live.tradovateapi.com/v1"

# Used when a 429 carries no Retry-After header. Tradovate's rate-limit documentation tells a user who got a
# 429 to wait an hour. One minute keeps retries rare without parking an order job for that long.
DEFAULT_RATE_LIMIT_RETRY_SECONDS = 60.0
# A retry sooner than this would be a hot loop, whatever the server asked for.
MIN_RETRY_SECONDS = 1.0
# Tradovate's penalty-ticket documentation: after a p-captcha response, wait about an hour for the count to clear.
CAPTCHA_WAIT_SECONDS = 3600.0

# Shown in error details instead of a response body that would be too long for a log line.
_BODY_EXCERPT_CHARS = 200


@dataclasses.dataclass(frozen=True)
class PenaltyTicket:
    """A Tradovate penalty response: HTTP 200 with p-ticket, p-time (seconds) and p-captcha in the body."""

    ticket: str = dataclasses.field(repr=False)
    wait_seconds: float
    captcha: bool

    @classmethod
    def from_body(cls, body: Any) -> "PenaltyTicket | None":
        if not isinstance(body, dict) or "p-ticket" not in body:
            return None

        try:
            wait_seconds = float(body.get("p-time") or 0)
        except (TypeError, ValueError):
            wait_seconds = 0.0
        return cls(str(body["p-ticket"]), max(wait_seconds, MIN_RETRY_SECONDS), bool(body.get("p-captcha")))


def parse_retry_after(header: str | None, now: dt.datetime) -> float:
    """Return the wait in seconds that a Retry-After header requests (delta-seconds or an HTTP date)."""
    if not header:
        return DEFAULT_RATE_LIMIT_RETRY_SECONDS

    header = header.strip()
    try:
        return max(float(header), MIN_RETRY_SECONDS)
    except ValueError:
        pass

    try:
        retry_at = email.utils.parsedate_to_datetime(header)
    except (TypeError, ValueError):
        return DEFAULT_RATE_LIMIT_RETRY_SECONDS
    if retry_at.tzinfo is None:
        retry_at = retry_at.replace(tzinfo=dt.timezone.utc)
    return max((retry_at - now).total_seconds(), MIN_RETRY_SECONDS)


def body_excerpt(response: requests.Response) -> str:
    text = response.text or ""
    if len(text) > _BODY_EXCERPT_CHARS:
        return text[:_BODY_EXCERPT_CHARS] + "..."
    return text


def decode_json(response: requests.Response, *, what: str, order_may_exist: bool = False) -> Any:
    """Return the JSON body, or raise BrokerError naming the endpoint and the start of the body."""
    try:
        return response.json(parse_float=Decimal)
    except (ValueError, json.JSONDecodeError):
        raise BrokerError(
            FailureReason.INTERNAL_ERROR,
            f"{what} returned HTTP {response.status_code} with a body that is not JSON: {body_excerpt(response)!r}",
            permanent=False,
            order_may_exist=order_may_exist,
        ) from None


def _connection_never_opened(error: requests.ConnectionError) -> bool:
    """Tell whether a ConnectionError happened before any byte of the request left this process."""
    if isinstance(error, requests.ConnectTimeout):
        return True

    cause = error.args[0] if error.args else None
    if isinstance(cause, urllib3.exceptions.MaxRetryError):
        cause = cause.reason
    return isinstance(cause, urllib3.exceptions.NewConnectionError)


class TradovateHttp:
    """HTTP client for Tradovate with explicit timeouts and one requests.Session per calling thread.

    Each thread's session keeps its connections to Tradovate open between requests. The proxy and CA bundle
    variables of the environment (HTTPS_PROXY, NO_PROXY, REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE) are read once per
    host, not on every request as requests does by default. ~/.netrc is not read, because a .netrc entry would
    replace the Authorization header that carries the access token.
    """

    def __init__(self, timeout_seconds: float, *, user_agent: str = "justtrades-tradovate/1"):
        if timeout_seconds <= 0:
            raise ValueError(f"timeout_seconds={timeout_seconds} must be positive; use a value such as 5")

        self.timeout_seconds = timeout_seconds
        self._user_agent = user_agent
        self._local = threading.local()
        self._sessions: list[requests.Session] = []
        self._sessions_lock = threading.Lock()
        self._verify = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
        self._proxies: dict[str, dict[str, str]] = {}

    def session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            session.headers.update({"Accept": "application/json", "User-Agent": self._user_agent})
            # Reading the environment costs about 0.25 ms of CPU a request (measured with 35 variables), a tenth
            # of a job's CPU, so proxies_for reads it once per host instead.
            session.trust_env = False
            self._local.session = session
            with self._sessions_lock:
                self._sessions.append(session)
        return session

    def proxies_for(self, url: str) -> dict[str, str]:
        """Return the environment's proxies for the URL's scheme and host, honouring NO_PROXY; read once per host."""
        parts = urllib.parse.urlsplit(url)
        origin = f"{parts.scheme}://{parts.netloc}"
        proxies = self._proxies.get(origin)
        if proxies is None:
            proxies = requests.utils.get_environ_proxies(origin)
            self._proxies[origin] = proxies
        return proxies

    def send(
        self,
        method: str,
        url: str,
        *,
        token: str | None = None,
        json_body: dict | None = None,
        params: dict | None = None,
        places_order: bool = False,
    ) -> requests.Response:
        """Send one request, or raise BrokerError(TIMEOUT or CONNECTION_ERROR) keeping the cause.

        `places_order` marks a request whose arrival at Tradovate would create an order: when it may have
        been sent before the failure, the error carries order_may_exist=True.
        """
        headers = {"Authorization": f"Bearer {token}"} if token else None

        try:
            return self.session().request(
                method,
                url,
                json=json_body,
                params=params,
                headers=headers,
                timeout=self.timeout_seconds,
                allow_redirects=False,
                proxies=self.proxies_for(url),
                verify=self._verify,
            )
        except requests.ConnectionError as error:
            never_sent = _connection_never_opened(error)
            raise BrokerError(
                FailureReason.CONNECTION_ERROR,
                f"{method} {url} failed: {type(error).__name__}: {error}",
                permanent=False,
                order_may_exist=places_order and not never_sent,
            ) from error
        except requests.Timeout as error:
            # Only read timeouts reach this branch (a connect timeout is a ConnectionError above):
            # the request was sent, so Tradovate may have acted on it.
            raise BrokerError(
                FailureReason.TIMEOUT,
                f"{method} {url} timed out: no response within {self.timeout_seconds} s",
                permanent=False,
                order_may_exist=places_order,
            ) from error
        except requests.RequestException as error:
            raise BrokerError(
                FailureReason.CONNECTION_ERROR,
                f"{method} {url} failed: {type(error).__name__}: {error}",
                permanent=False,
                order_may_exist=places_order,
            ) from error

    def close(self) -> None:
        with self._sessions_lock:
            sessions, self._sessions = self._sessions, []
        for session in sessions:
            session.close()
        self._local = threading.local()
