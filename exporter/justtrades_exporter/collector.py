"""The Prometheus collector: one platform reading per scrape, rendered as fresh metric families."""

from __future__ import annotations

import contextvars
import logging
import time
from typing import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from . import contract
from .samples import render_families
from .scraper import PlatformReading, PlatformScraper, is_missing_extension

logger = logging.getLogger(__name__)

# The scrape timeout Prometheus announced for the request being served (X-Prometheus-Scrape-Timeout-Seconds).
scrape_timeout_var: contextvars.ContextVar[float | None] = contextvars.ContextVar("scrape_timeout", default=None)

# Time kept back from the scrape timeout for rendering and sending the response.
RESPONSE_MARGIN_SECONDS = 0.5


class PlatformCollector(Collector):
    """Polls the platform when Prometheus scrapes and yields the contract metrics plus the exporter's own."""

    def __init__(self, scraper: PlatformScraper, scrape_timeout_seconds: float):
        self.scraper = scraper
        self.scrape_timeout_seconds = scrape_timeout_seconds

    def describe(self) -> list[Metric]:
        # Registering must not poll the platform; an empty description tells the registry to skip the check.
        return []

    def collect(self) -> Iterator[Metric]:
        deadline = time.monotonic() + self.poll_budget_seconds()
        try:
            reading = self.scraper.read(deadline)
            families = render_families(reading.samples, self._help_suffix()) + list(self._own_metrics(reading))
        except Exception:
            # Every expected failure is handled inside the read; a bug must still not turn the scrape into a 500.
            logger.exception("reading %s failed; this scrape has no platform metrics", self.scraper.client.base_url)
            return

        yield from families

    def poll_budget_seconds(self) -> float:
        """Return the time the polls may take: the configured scrape timeout, or Prometheus' own if it is shorter."""
        timeout = self.scrape_timeout_seconds
        announced = scrape_timeout_var.get()
        if announced is not None and announced > 0:
            timeout = min(timeout, announced)
        return max(0.1, timeout - RESPONSE_MARGIN_SECONDS)

    def _help_suffix(self) -> str:
        max_age = self.scraper.cache_max_age_seconds
        if max_age <= 0:
            return ""
        return f" Exporter: read from the platform at most {max_age:g}s before the scrape (--cache-max-age)."

    def _own_metrics(self, reading: PlatformReading) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "justtrades_exporter_scrape_duration_seconds",
            "Time the exporter took to poll every endpoint for this scrape.",
            value=reading.duration_seconds,
        )

        endpoint_up = GaugeMetricFamily(
            "justtrades_exporter_endpoint_up",
            "1 when the endpoint answered HTTP 200 with a JSON object (a cached response counts); "
            "no sample when not polled, or when an optional endpoint answered 404.",
            labels=["endpoint"],
        )
        for endpoint in contract.METRIC_ENDPOINTS:
            result = reading.results.get(endpoint)
            if result is not None and not is_missing_extension(result):
                endpoint_up.add_metric([endpoint.path], 1.0 if result.ok else 0.0)
        yield endpoint_up

        endpoint_errors, field_errors = self.scraper.error_counts()
        errors = CounterMetricFamily(
            "justtrades_exporter_endpoint_errors_total",
            "Failed polls of the endpoint: timeout, refused connection, non-200 response, "
            "or a response that is not a JSON object.",
            labels=["endpoint"],
        )
        for path, count in sorted(endpoint_errors.items()):
            errors.add_metric([path], count)
        yield errors

        field_family = CounterMetricFamily(
            "justtrades_exporter_field_errors_total",
            "Fields that were null, missing or of an unexpected type, so their metric got no sample.",
            labels=["endpoint", "field"],
        )
        for (path, field), count in sorted(field_errors.items()):
            field_family.add_metric([path, field], count)
        yield field_family
