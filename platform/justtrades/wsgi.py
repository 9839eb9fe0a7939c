"""Serving the app with waitress, with an access log that never records API keys."""

from __future__ import annotations

import logging
import time
from urllib.parse import parse_qsl, urlencode

import waitress

from .webhooks.redaction import REDACTED, is_secret_key, redact_text

access_logger = logging.getLogger("justtrades.access")


def redacted_query(query: str) -> str:
    """Return the query string with secret-looking parameters replaced and secrets inside other values redacted.

    A parameter counts as secret-looking by the same rule as a webhook body field (access_token, auth, X-Api-Key,
    client_secret...), and a value such as a URL with ?token=... in it is redacted like webhook text.
    """
    if not query:
        return ""
    pairs = parse_qsl(query, keep_blank_values=True)
    return urlencode([(key, REDACTED if is_secret_key(key) else redact_text(value)) for key, value in pairs])


def loggable_path(path: str) -> str:
    """Return the request path as one printable line: UTF-8 decoded, control characters escaped.

    PATH_INFO carries the raw path decoded as latin-1 (PEP 3333). A %0D%0A in a request's path would otherwise
    start a forged line in the access log.
    """
    try:
        path = path.encode("latin-1").decode("utf-8")
    except UnicodeError:
        pass  # not UTF-8: keep the latin-1 reading, still escaped below
    if path.isprintable():
        return path
    return "".join(char if char.isprintable() else char.encode("unicode_escape").decode("ascii") for char in path)


class AccessLogMiddleware:
    """Log one line per request: client, method, path, redacted query, status and duration."""

    def __init__(self, app):
        self.app = app

    def __call__(self, environ, start_response):
        started = time.monotonic()
        status_holder = []

        def _start_response(status, headers, exc_info=None):
            status_holder.append(status.split(" ", 1)[0])
            return start_response(status, headers, exc_info)

        try:
            return self.app(environ, _start_response)
        finally:
            path = loggable_path(environ.get("PATH_INFO", ""))
            if path.startswith("/webhook/"):
                path = "/webhook/..." + path[-4:]  # the token is the webhook's credential
            query = redacted_query(environ.get("QUERY_STRING", ""))
            access_logger.info(
                "%s %s %s%s %s %.1fms",
                environ.get("REMOTE_ADDR", "-"),
                environ.get("REQUEST_METHOD", "-"),
                path,
                f"?{query}" if query else "",
                status_holder[0] if status_holder else "-",
                (time.monotonic() - started) * 1000,
            )


def create_server(app, host: str, port: int, threads: int):
    """Create the waitress server and teach the runtime to count its live request threads."""
    runtime = app.extensions["justtrades"]
    # waitress removes X-Forwarded-* headers by default. With JT_TRUSTED_PROXIES set, the app's ProxyFix needs them
    # to find the client address for the webhook allow-list and the login throttle, so they are kept.
    keep_forwarded = runtime.settings.trusted_proxies > 0
    channel_timeout = runtime.settings.http_channel_timeout_seconds
    server = waitress.create_server(
        AccessLogMiddleware(app), host=host, port=port, threads=threads, ident="justtrades",
        clear_untrusted_proxy_headers=not keep_forwarded,
        channel_timeout=channel_timeout,
        # waitress looks for silent connections every cleanup_interval (30 s by default), so a stalled one
        # closes between channel_timeout and channel_timeout + cleanup_interval after its last byte.
        cleanup_interval=max(1, channel_timeout // 3),
    )
    runtime.port = int(server.effective_port)
    runtime.http_workers_probe = lambda: len(server.task_dispatcher.threads)
    # Connections whose request arrived in full and waits for a free thread. A saturated server shows here, while
    # the webhook latency, measured from the view's start, leaves this wait out.
    runtime.http_queue_probe = lambda: len(server.task_dispatcher.queue)
    return server
