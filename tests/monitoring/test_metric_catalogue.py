"""Every metric the platform exposes is listed in docs/metrics.md."""

from __future__ import annotations

import re

from prometheus_client.parser import text_string_to_metric_families

from ..conftest import REPO_ROOT

CATALOGUE = REPO_ROOT / "docs" / "metrics.md"
# Series of prometheus_client's process collector, listed in the catalogue as one row.
PROCESS_PREFIXES = ("process_",)


def catalogue_names() -> set[str]:
    names = set()
    for line in CATALOGUE.read_text(encoding="utf-8").splitlines():
        match = re.match(r"\|\s*`([a-z_:]+)`", line)
        if match:
            names.add(match.group(1))
    return names


def exposed_names(text: str) -> set[str]:
    names = set()
    for family in text_string_to_metric_families(text):
        # The parser strips _total from counters; the catalogue lists the exposed sample name.
        suffix = "_total" if family.type == "counter" else ""
        names.add(family.name + suffix)
    return names


def test_every_exposed_metric_is_catalogued(app):
    app.test_client().post("/webhook/demo-nq-7f3a9c2e41b8d605", data='{"action":"buy","ticker":"NQ1!","price":1}')
    text = app.test_client().get("/metrics").get_data(as_text=True)

    missing = sorted(
        name for name in exposed_names(text) - catalogue_names() if not name.startswith(PROCESS_PREFIXES)
    )

    assert missing == []
