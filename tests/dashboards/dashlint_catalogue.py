"""Read the metric catalogue (docs/metrics.md) and the dashboards the tests check."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
CATALOGUE_PATH = REPO_ROOT / "docs" / "metrics.md"
DASHBOARD_DIR = REPO_ROOT / "dashboards"

HISTOGRAM_SUFFIXES = ("_bucket", "_count", "_sum")
# Series that Prometheus itself creates: the scrape health of every target and the state of every alert.
PROMETHEUS_SERIES = {"up", "ALERTS"}


@dataclasses.dataclass(frozen=True)
class CatalogueEntry:
    name: str
    kind: str  # the "type" column: gauge, counter, histogram (or a list for a family)
    producer: str  # "both", "platform-only", or "exporter" for the exporter's own metrics
    labels: str


class Catalogue:
    """The metrics of docs/metrics.md; `name_*` rows stand for every metric with that prefix."""

    def __init__(self, entries: list[CatalogueEntry]):
        self.entries = {entry.name: entry for entry in entries if not entry.name.endswith("*")}
        self.prefixes = {entry.name[:-1]: entry for entry in entries if entry.name.endswith("*")}

    def lookup(self, series: str) -> CatalogueEntry | None:
        """Return the entry that produces `series`, counting a histogram's _bucket/_count/_sum series."""
        if series in self.entries:
            return self.entries[series]

        for suffix in HISTOGRAM_SUFFIXES:
            base = self.entries.get(series.removesuffix(suffix))
            if series.endswith(suffix) and base is not None and base.kind == "histogram":
                return base

        for prefix, entry in self.prefixes.items():
            if series.startswith(prefix):
                return entry
        return None

    def is_counter_series(self, series: str) -> bool:
        entry = self.lookup(series)
        if entry is not None and entry.kind == "counter":
            return True
        return series.endswith(("_total",) + HISTOGRAM_SUFFIXES)


def _table_rows(text: str):
    """Yield (header cells, row cells) for every row of every Markdown table in `text`."""
    header = None
    for line in text.splitlines():
        if not line.startswith("|"):
            header = None
            continue

        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if header is None:
            header = [cell.lower() for cell in cells]
        elif not set("".join(cells)) <= set("-: "):
            yield header, cells


def load_catalogue(path: Path = CATALOGUE_PATH) -> Catalogue:
    entries = []
    for header, cells in _table_rows(path.read_text(encoding="utf-8")):
        if header[:2] != ["metric", "type"]:
            continue

        row = dict(zip(header, cells))
        # The producer cell may carry a note after the word: "platform-only (prometheus_client ...)".
        producer = row.get("producer", "exporter").split()[0]
        for name in re.findall(r"`([A-Za-z_:][A-Za-z0-9_:]*\*?)`", row["metric"]):
            entries.append(CatalogueEntry(name, row["type"], producer, row.get("labels", "")))
    return Catalogue(entries)


def load_dashboards(directory: Path = DASHBOARD_DIR) -> dict[str, dict]:
    """Return every dashboard JSON of `directory` by file name."""
    return {path.name: json.loads(path.read_text(encoding="utf-8")) for path in sorted(directory.glob("*.json"))}


def iter_panels(board: dict):
    """Yield every panel of a dashboard, including those nested in collapsed rows."""
    for panel in board.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def iter_targets(board: dict):
    """Yield (panel, target) for every query target of a dashboard."""
    for panel in iter_panels(board):
        for target in panel.get("targets", []):
            yield panel, target
