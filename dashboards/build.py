"""Write the Grafana dashboards of the Just Trades stack as JSON files.

The dashboards are code (boards.py, with the building blocks in grafana_model.py) so that every panel follows
the same conventions: the `datasource`, `job` and `instance` variables, a unit and a description on every
panel, `$__rate_interval` in every range. Grafana loads the JSON files this script writes next to it. Edit
boards.py, then run

    python dashboards/build.py          # rewrite the JSON files
    python dashboards/build.py --check  # exit 1 when a JSON file differs from what boards.py builds

tests/dashboards lints the JSON and runs every panel query against a real Prometheus.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

DASHBOARD_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(DASHBOARD_DIR))

from boards import build_all  # noqa: E402  (the folder is not a package, so it goes on the path first)
from grafana_model import render  # noqa: E402


def stale_files() -> list[str]:
    """Return the names of the JSON files that are missing or differ from the built dashboards."""
    stale = []
    for name, board in build_all().items():
        path = DASHBOARD_DIR / name
        if not path.exists() or path.read_text(encoding="utf-8") != render(board):
            stale.append(name)
    return stale


def write_all() -> None:
    for name, board in build_all().items():
        (DASHBOARD_DIR / name).write_text(render(board), encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write the Grafana dashboard JSON files from boards.py.")
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 when a JSON file is missing or differs from the built one")
    args = parser.parse_args(argv)

    if not args.check:
        write_all()
        return 0

    stale = stale_files()
    if stale:
        print(f"out of date: {', '.join(stale)}; run python dashboards/build.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
