"""Samples of contract metrics read from the JSON endpoints, and their rendering into metric families."""

from __future__ import annotations

import dataclasses
from typing import Iterable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from .contract import CONTRACT_BY_NAME, CONTRACT_METRICS, MetricSpec


@dataclasses.dataclass(frozen=True)
class Sample:
    name: str
    labels: tuple[tuple[str, str], ...]
    value: float


class SampleSet:
    """The contract samples of one scrape; `add` with a None value adds nothing, so no sample is ever made up."""

    def __init__(self) -> None:
        self._samples: list[Sample] = []

    def add(self, name: str, value: float | None, **labels: str) -> None:
        spec = CONTRACT_BY_NAME.get(name)
        if spec is None:
            raise KeyError(f"{name} is not a contract metric; add it to contract.CONTRACT_METRICS first")
        if tuple(labels) != spec.labels:
            raise ValueError(f"{name} takes labels {spec.labels}, got {tuple(labels)}")

        if value is not None:
            self._samples.append(Sample(name, tuple(labels.items()), float(value)))

    def extend(self, samples: Iterable[Sample]) -> None:
        self._samples.extend(samples)

    def __iter__(self) -> Iterator[Sample]:
        return iter(self._samples)

    def __len__(self) -> int:
        return len(self._samples)

    def value(self, name: str, **labels: str) -> float | None:
        """Return the value of one sample, or None when this scrape has none."""
        wanted = tuple(labels.items())
        for sample in self._samples:
            if sample.name == name and sample.labels == wanted:
                return sample.value
        return None

    def with_name(self, name: str) -> list[Sample]:
        return [sample for sample in self._samples if sample.name == name]

    def names(self) -> set[str]:
        return {sample.name for sample in self._samples}


def render_families(samples: SampleSet, help_suffix: str = "") -> list[Metric]:
    """Build one metric family per contract metric that has samples, in catalogue order.

    A metric without samples is left out entirely rather than shown as an empty family.
    """
    by_name: dict[str, list[Sample]] = {}
    for sample in samples:
        by_name.setdefault(sample.name, []).append(sample)

    families = []
    for spec in CONTRACT_METRICS:
        if spec.name in by_name:
            families.append(_family(spec, by_name[spec.name], help_suffix))
    return families


def _family(spec: MetricSpec, samples: list[Sample], help_suffix: str) -> Metric:
    documentation = spec.help + help_suffix
    if spec.type == "counter":
        family: Metric = CounterMetricFamily(spec.name, documentation, labels=spec.labels)
    else:
        family = GaugeMetricFamily(spec.name, documentation, labels=spec.labels)

    # A platform that repeats a key (two spellings of one symbol) must not produce a duplicate series.
    seen = set()
    for sample in samples:
        if sample.labels in seen:
            continue
        seen.add(sample.labels)
        family.add_metric([value for _, value in sample.labels], sample.value)
    return family
