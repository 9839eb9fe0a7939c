"""HTTP polling of the platform's JSON endpoints: in parallel, each request bounded, the round bounded by a deadline."""

from __future__ import annotations

import concurrent.futures
import dataclasses
import http.cookiejar
import json
import logging
import time
from typing import Any, Iterable

import requests
from requests.adapters import HTTPAdapter

from . import __version__
from .contract import METRIC_ENDPOINTS, Endpoint

logger = logging.getLogger(__name__)

API_KEY_HEADER = "X-API-Key"

# The largest JSON document read from one endpoint; the lists the exporter reads are requested with small limits.
MAX_BODY_BYTES = 8 * 1024 * 1024
_CHUNK_BYTES = 64 * 1024

# Polling threads kept by each client: twice the endpoints of a scrape, so requests of an earlier scrape still
# finishing after its deadline do not delay the next one.
POOL_THREADS = 2 * len(METRIC_ENDPOINTS)


@dataclasses.dataclass(frozen=True)
class EndpointResult:
    """One poll of one endpoint: the JSON object it returned, or the reason it gave none."""

    endpoint: Endpoint
    fetched_at: float
    status: int | None = None
    document: dict[str, Any] | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.document is not None


class _DeadlineExceeded(Exception):
    pass


class PlatformClient:
    """Reads the JSON endpoints of one platform, sending the API key in the X-API-Key header (never in the URL)."""

    def __init__(self, base_url: str, api_key: str | None, timeout_seconds: float, max_body_bytes: int = MAX_BODY_BYTES):
        self.base_url = base_url.rstrip("/")
        self.timeout_seconds = timeout_seconds
        self.max_body_bytes = max_body_bytes
        self._session = _build_session(api_key)
        # Threads are kept between scrapes, because starting 17 of them took longer than the polls themselves
        # once the platform responded in a few milliseconds.
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=POOL_THREADS, thread_name_prefix="jt-poll")

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._session.close()

    def fetch_all(self, endpoints: Iterable[Endpoint], deadline: float) -> dict[Endpoint, EndpointResult]:
        """Poll the endpoints in parallel; one not finished by `deadline` (time.monotonic()) counts as timed out.

        The requests still running at the deadline are not waited for: each ends on its own within one socket
        timeout, because the body is read in chunks against the same deadline. Requests still queued are cancelled.
        """
        endpoints = list(endpoints)
        if not endpoints:
            return {}

        futures = {self._pool.submit(self.fetch, endpoint, deadline): endpoint for endpoint in endpoints}
        concurrent.futures.wait(futures, timeout=max(0.0, deadline - time.monotonic()))
        for future in futures:
            future.cancel()  # no effect on a request that finished or is running

        return {endpoint: _outcome(future, endpoint) for future, endpoint in futures.items()}

    def fetch(self, endpoint: Endpoint, deadline: float) -> EndpointResult:
        """Poll one endpoint; every failure becomes an EndpointResult with an error, never an exception."""
        fetched_at = time.time()
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return EndpointResult(endpoint, fetched_at, error="no time left before the scrape deadline")

        timeout = min(self.timeout_seconds, remaining)
        try:
            status, content_type, body, location = self._get(endpoint, timeout, deadline)
        except requests.Timeout:
            return EndpointResult(endpoint, fetched_at, error=f"timed out after {timeout:.1f}s")
        except _DeadlineExceeded:
            return EndpointResult(endpoint, fetched_at, error="response body not complete before the scrape deadline")
        except requests.RequestException as error:
            return EndpointResult(endpoint, fetched_at, error=f"request failed: {_root_cause(error)}")

        if status != 200:
            return EndpointResult(endpoint, fetched_at, status=status, error=_describe_status(status, location))
        return _parse_document(endpoint, fetched_at, status, content_type, body)

    def _get(self, endpoint: Endpoint, timeout: float, deadline: float) -> tuple[int, str, bytes, str]:
        url = self.base_url + endpoint.path
        with self._session.get(
            url, params=list(endpoint.params), timeout=(timeout, timeout), stream=True, allow_redirects=False
        ) as response:
            body = self._read_body(response, deadline)
            return (
                response.status_code,
                response.headers.get("Content-Type", ""),
                body,
                response.headers.get("Location", ""),
            )

    def _read_body(self, response: requests.Response, deadline: float) -> bytes:
        # requests' timeout bounds each socket read, not the whole body: a server that drips bytes is cut here.
        chunks = []
        size = 0
        for chunk in response.iter_content(chunk_size=_CHUNK_BYTES):
            chunks.append(chunk)
            size += len(chunk)
            if size > self.max_body_bytes:
                raise requests.RequestException(f"response body larger than {self.max_body_bytes} bytes")
            if time.monotonic() > deadline:
                raise _DeadlineExceeded()
        return b"".join(chunks)


def _outcome(future: concurrent.futures.Future, endpoint: Endpoint) -> EndpointResult:
    if not future.done() or future.cancelled():
        return EndpointResult(endpoint, time.time(), error="no response before the scrape deadline")

    error = future.exception()
    if error is not None:
        # fetch() turns every expected failure into a result, so this is a bug; it is logged and the scrape goes on.
        logger.error("polling %s failed unexpectedly", endpoint.path, exc_info=error)
        return EndpointResult(endpoint, time.time(), error=f"internal error: {type(error).__name__}")
    return future.result()


def _build_session(api_key: str | None) -> requests.Session:
    session = requests.Session()
    session.headers["User-Agent"] = f"justtrades-exporter/{__version__}"
    session.headers["Accept"] = "application/json"
    if api_key:
        session.headers[API_KEY_HEADER] = api_key

    # Every endpoint is polled at once; a pool smaller than that would open and drop connections on every scrape.
    adapter = HTTPAdapter(pool_connections=4, pool_maxsize=32, max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)

    # A session cookie from one response must not change what the next poll is allowed to see.
    session.cookies.set_policy(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))
    return session


def _describe_status(status: int, location: str) -> str:
    if status in (401, 403):
        return f"HTTP {status}: the endpoint needs the platform's API key; set JT_EXPORTER_API_KEY or --api-key-file"
    if 300 <= status < 400:
        return f"HTTP {status} redirect to {_shorten(location)}: the endpoint needs a login; set JT_EXPORTER_API_KEY"
    return f"HTTP {status}"


def _parse_document(endpoint: Endpoint, fetched_at: float, status: int, content_type: str, body: bytes) -> EndpointResult:
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):
        kind = content_type.split(";")[0].strip() or "no content type"
        return EndpointResult(endpoint, fetched_at, status=status, error=f"response is not JSON ({kind})")

    if not isinstance(document, dict):
        return EndpointResult(
            endpoint, fetched_at, status=status, error=f"response is a JSON {type(document).__name__}, expected an object"
        )
    return EndpointResult(endpoint, fetched_at, status=status, document=document)


def _root_cause(error: BaseException) -> str:
    """Name the innermost OS error (`Connection refused`) instead of urllib3's nested retry message."""
    cause: BaseException | None = error
    innermost_os_error = None
    while cause is not None:
        if isinstance(cause, OSError) and cause.strerror:
            innermost_os_error = cause
        cause = cause.__cause__ or cause.__context__

    if innermost_os_error is not None:
        return innermost_os_error.strerror
    return _shorten(str(error))


def _shorten(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
