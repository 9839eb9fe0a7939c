"""The exporter's metric table and output against the metric catalogue in docs/metrics.md."""

from __future__ import annotations

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from justtrades_exporter.contract import CONTRACT_METRICS


def test_exporter_covers_every_contract_metric(contract_catalogue):
    assert {spec.name for spec in CONTRACT_METRICS} == set(contract_catalogue)


def test_types_match_catalogue(contract_catalogue):
    for spec in CONTRACT_METRICS:
        assert spec.type == contract_catalogue[spec.name].type, spec.name


def test_labels_match_catalogue(contract_catalogue):
    for spec in CONTRACT_METRICS:
        assert spec.labels == contract_catalogue[spec.name].labels, spec.name


def test_own_metrics_match_catalogue(exporter, exporter_catalogue):
    text = generate_latest(exporter.registry).decode()

    own = {}
    for family in text_string_to_metric_families(text):
        if not family.name.startswith("justtrades_exporter_"):
            continue
        name = family.name + "_total" if family.type == "counter" else family.name
        labels = tuple(sorted({label for sample in family.samples for label in sample.labels}))
        own[name] = (family.type, labels)

    expected = {name: (entry.type, tuple(sorted(entry.labels))) for name, entry in exporter_catalogue.items()}
    assert own == expected


def test_every_contract_metric_served(exporter, contract_catalogue):
    # The reference documents carry every field, so a healthy scrape must show every contract metric.
    text = generate_latest(exporter.registry).decode()

    served = set()
    for family in text_string_to_metric_families(text):
        served.add(family.name + "_total" if family.type == "counter" else family.name)
    assert set(contract_catalogue) - served == set()
