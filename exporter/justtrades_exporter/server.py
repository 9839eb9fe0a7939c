"""The exporter's HTTP side: a landing page at /, the metrics at /metrics, served by waitress.

The server is waitress rather than prometheus_client's own wsgiref server. Waitress serves from a fixed pool of
threads and buffers slow clients, so a burst of scrapes (several Prometheus replicas, a stuck client) cannot start
an unbounded number of concurrent polls against the platform.
"""

from __future__ import annotations

import dataclasses
import html
import logging
import signal
import sys
import threading

import waitress
from waitress import wasyncore
from prometheus_client import CollectorRegistry, make_wsgi_app

from . import __version__
from .collector import PlatformCollector, scrape_timeout_var
from .polling import PlatformClient
from .scraper import PlatformScraper

logger = logging.getLogger(__name__)

DEFAULT_PORT = 9877
SERVER_THREADS = 4


@dataclasses.dataclass(frozen=True)
class ExporterSettings:
    platform_url: str
    api_key: str | None = dataclasses.field(default=None, repr=False)
    timeout_seconds: float = 5.0
    scrape_timeout_seconds: float = 10.0
    cache_max_age_seconds: float = 0.0


class Exporter:
    """One exporter for one platform, with its own registry (never prometheus_client's global one)."""

    def __init__(self, settings: ExporterSettings):
        self.settings = settings
        self.client = PlatformClient(settings.platform_url, settings.api_key, settings.timeout_seconds)
        self.scraper = PlatformScraper(self.client, cache_max_age_seconds=settings.cache_max_age_seconds)
        self.collector = PlatformCollector(self.scraper, settings.scrape_timeout_seconds)

        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self.collector)
        self._metrics_app = make_wsgi_app(self.registry)

    def close(self) -> None:
        self.client.close()

    def wsgi_app(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        if path == "/metrics":
            return self._serve_metrics(environ, start_response)
        if path == "/":
            return self._serve_landing_page(start_response)

        start_response("404 Not Found", [("Content-Type", "text/plain; charset=utf-8")])
        return [f"not found: {path}; the metrics are at /metrics\n".encode()]

    def _serve_metrics(self, environ, start_response):
        token = scrape_timeout_var.set(_announced_scrape_timeout(environ))
        try:
            return self._metrics_app(environ, start_response)
        finally:
            scrape_timeout_var.reset(token)

    def _serve_landing_page(self, start_response):
        platform = html.escape(self.settings.platform_url)
        page = (
            "<!DOCTYPE html>\n<html><head><title>Just Trades exporter</title></head><body>\n"
            "<h1>Just Trades exporter</h1>\n"
            f"<p>Version {__version__}. Polls the JSON endpoints of <code>{platform}</code> on every scrape.</p>\n"
            '<p><a href="/metrics">Metrics</a></p>\n'
            "</body></html>\n"
        )
        start_response("200 OK", [("Content-Type", "text/html; charset=utf-8")])
        return [page.encode()]


def _announced_scrape_timeout(environ) -> float | None:
    raw = environ.get("HTTP_X_PROMETHEUS_SCRAPE_TIMEOUT_SECONDS")
    if not raw:
        return None
    try:
        return float(raw)
    except ValueError:
        return None


def create_server(exporter: Exporter, host: str, port: int):
    """Build the waitress server without starting it; port 0 picks a free port (see `server.effective_port`)."""
    return waitress.create_server(
        exporter.wsgi_app, host=host, port=port, threads=SERVER_THREADS, ident="justtrades-exporter"
    )


def serve(exporter: Exporter, host: str, port: int) -> None:
    """Serve until SIGTERM or SIGINT; waitress finishes the scrapes in progress before returning."""
    server = create_server(exporter, host, port)
    logger.info(
        "serving metrics of %s on http://%s:%s/metrics", exporter.settings.platform_url, host, server.effective_port
    )

    # waitress stops its loop and joins its workers on SystemExit; SIGTERM is how containers ask to stop.
    signal.signal(signal.SIGTERM, lambda _signum, _frame: sys.exit(0))
    try:
        server.run()
    finally:
        exporter.close()
        logger.info("stopped serving on port %s", server.effective_port)


class BackgroundServer:
    """Runs the exporter's waitress server in a thread, for embedding and tests; `stop` returns once it has ended."""

    def __init__(self, exporter: Exporter, host: str = "127.0.0.1", port: int = 0):
        self._server = create_server(exporter, host, port)
        self._thread = threading.Thread(target=self._server.run, name="justtrades-exporter-server", daemon=True)
        self.url = f"http://{host}:{self._server.effective_port}"

    def start(self) -> "BackgroundServer":
        self._thread.start()
        return self

    def stop(self, timeout_seconds: float = 5.0) -> None:
        # Closing the sockets from the loop's own thread empties its map, so the loop returns without a select()
        # on a closed descriptor.
        # NOTE: waitress 3.0 has no public stop; this relies on its trigger and its private socket map.
        try:
            self._server.trigger.pull_trigger(lambda: wasyncore.close_all(self._server._map, ignore_all=True))
        except OSError:
            # The trigger's pipe is already closed: the loop has ended, so there is nothing left to wake.
            pass
        self._thread.join(timeout_seconds)
        self._server.task_dispatcher.shutdown(timeout=timeout_seconds)
