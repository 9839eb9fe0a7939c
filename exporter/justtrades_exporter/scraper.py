"""One reading of a platform: poll the endpoints, translate their JSON into samples, count what failed."""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import threading
import time
from typing import Callable, Iterable

from . import contract, market_hours
from .contract import Endpoint
from .fields import FieldReader
from .logs import RateLimitedLog
from .polling import EndpointResult, PlatformClient
from .samples import Sample, SampleSet
from .translate import TRANSLATORS

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class EndpointReading:
    """A successful poll and the samples translated from it, kept for the cache."""

    result: EndpointResult
    samples: tuple[Sample, ...]
    read_at: float
    field_problems: tuple[str, ...] = ()


@dataclasses.dataclass
class PlatformReading:
    """Everything one scrape learnt: the contract samples and, per endpoint, the poll result (None if not polled)."""

    samples: SampleSet
    results: dict[Endpoint, EndpointResult | None]
    duration_seconds: float
    field_problems: dict[Endpoint, tuple[str, ...]] = dataclasses.field(default_factory=dict)

    @property
    def platform_up(self) -> bool:
        return self.samples.value("justtrades_up") == 1.0


class PlatformScraper:
    """Reader of one platform, with the exporter's error counters and the optional reading cache.

    With `cache_max_age_seconds` > 0 a successful reading of an endpoint is reused for that long, but /health is
    polled on every scrape, and when it fails every cached reading is dropped: a platform that stopped responding
    never has its business gauges served from memory.
    """

    def __init__(
        self,
        client: PlatformClient,
        *,
        cache_max_age_seconds: float = 0.0,
        monotonic: Callable[[], float] = time.monotonic,
        now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.timezone.utc),
    ):
        self.client = client
        self.cache_max_age_seconds = cache_max_age_seconds
        self._monotonic = monotonic
        self.now = now  # the wall clock for the CME session; tests set a fixed time

        self._lock = threading.Lock()
        self._cache: dict[Endpoint, EndpointReading] = {}
        self.endpoint_errors: dict[str, int] = {endpoint.path: 0 for endpoint in contract.METRIC_ENDPOINTS}
        self.field_errors: dict[tuple[str, str], int] = dict.fromkeys(KNOWN_FIELDS, 0)

        self._endpoint_log = RateLimitedLog(logger)
        self._field_log = RateLimitedLog(logger)

    def read(self, deadline: float, extra_endpoints: Iterable[Endpoint] = ()) -> PlatformReading:
        """Poll every metric endpoint (and the extra ones) once, finishing by `deadline` (time.monotonic())."""
        started = self._monotonic()
        endpoints = list(contract.METRIC_ENDPOINTS) + [e for e in extra_endpoints if e not in contract.METRIC_ENDPOINTS]

        # Poll what the cache does not cover, and /health always, because it decides whether the cache may be used.
        cached = self._fresh_cache(started)
        to_poll = [endpoint for endpoint in endpoints if endpoint == contract.HEALTH or endpoint not in cached]
        polled = self.client.fetch_all(to_poll, deadline)

        readings = {endpoint: self._translate(result) for endpoint, result in polled.items()}
        health_ok = polled[contract.HEALTH].ok
        self._update_cache(readings, health_ok)
        if health_ok:
            readings.update({endpoint: cached[endpoint] for endpoint in endpoints if endpoint not in polled})

        samples = self._merge(readings)
        results = {endpoint: readings[endpoint].result if endpoint in readings else None for endpoint in endpoints}
        problems = {endpoint: reading.field_problems for endpoint, reading in readings.items()}
        return PlatformReading(samples, results, self._monotonic() - started, problems)

    def _fresh_cache(self, now: float) -> dict[Endpoint, EndpointReading]:
        if self.cache_max_age_seconds <= 0:
            return {}
        with self._lock:
            return {e: r for e, r in self._cache.items() if now - r.read_at <= self.cache_max_age_seconds}

    def _update_cache(self, readings: dict[Endpoint, EndpointReading], health_ok: bool) -> None:
        if self.cache_max_age_seconds <= 0:
            return

        with self._lock:
            if not health_ok:
                self._cache.clear()
                return
            for endpoint, reading in readings.items():
                if endpoint == contract.HEALTH:
                    continue
                if reading.result.ok:
                    self._cache[endpoint] = reading
                else:
                    self._cache.pop(endpoint, None)

    def _translate(self, result: EndpointResult) -> EndpointReading:
        read_at = self._monotonic()
        if is_missing_extension(result):
            return EndpointReading(result, (), read_at)
        if not result.ok:
            self._count_endpoint_error(result)
            return EndpointReading(result, (), read_at)

        translator = TRANSLATORS.get(result.endpoint)
        if translator is None:
            # Endpoints polled only for the check command have no metrics.
            return EndpointReading(result, (), read_at)

        samples = SampleSet()
        problems: list[str] = []

        def on_field_error(endpoint: str, field: str, reason: str) -> None:
            problems.append(f"{field}: {reason}")
            self._count_field_error(endpoint, field, reason)

        reader = FieldReader(result.endpoint.path, result.document, on_field_error)
        try:
            translator(reader, samples)
        except Exception:
            # A translation bug must not fail the whole scrape with a 500; this endpoint's samples are left out.
            logger.exception(
                "translating the JSON of %s failed; its metrics are left out of this scrape", result.endpoint.path
            )
            failed = dataclasses.replace(result, document=None, error="internal error while reading the JSON")
            self._count_endpoint_error(failed)
            return EndpointReading(failed, (), read_at)
        return EndpointReading(result, tuple(samples), read_at, tuple(problems))

    def _merge(self, readings: dict[Endpoint, EndpointReading]) -> SampleSet:
        samples = SampleSet()
        for reading in readings.values():
            samples.extend(reading.samples)

        if samples.value("justtrades_up") is None:
            samples.add("justtrades_up", 0.0)
        if samples.value("justtrades_market_open") is None:
            # The session does not depend on the platform, so it is served even while the platform is down.
            samples.add("justtrades_market_open", 1.0 if market_hours.is_cme_globex_open(self.now()) else 0.0)
        return samples

    def _count_endpoint_error(self, result: EndpointResult) -> None:
        path = result.endpoint.path
        with self._lock:
            self.endpoint_errors[path] = self.endpoint_errors.get(path, 0) + 1
        self._endpoint_log.warning(path, "polling %s%s failed: %s", self.client.base_url, path, result.error)

    def _count_field_error(self, endpoint: str, field: str, reason: str) -> None:
        with self._lock:
            self.field_errors[(endpoint, field)] = self.field_errors.get((endpoint, field), 0) + 1
        self._field_log.warning((endpoint, field), "endpoint %s field %s gives no sample: %s", endpoint, field, reason)

    def error_counts(self) -> tuple[dict[str, int], dict[tuple[str, str], int]]:
        with self._lock:
            return dict(self.endpoint_errors), dict(self.field_errors)


def is_missing_extension(result: EndpointResult) -> bool:
    """Return True when an optional endpoint returned 404, because the platform predates it."""
    return result.endpoint.optional and result.status == 404


def _known_fields() -> list[tuple[str, str]]:
    """List the (endpoint, field) pairs of every top-level field, so their error counters start at 0.

    Running each translator over an empty document reports exactly the fields it reads.
    """
    fields: list[tuple[str, str]] = []
    for endpoint, translator in TRANSLATORS.items():
        reader = FieldReader(endpoint.path, {}, lambda e, field, _reason: fields.append((e, field)))
        translator(reader, SampleSet())
    return fields


KNOWN_FIELDS = tuple(_known_fields())
