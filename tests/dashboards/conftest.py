"""Fixtures of the dashboard tests: the dashboards as Grafana loads them and the metric catalogue."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# The helper modules sit next to the tests; put this folder on the path whatever pytest's import mode is.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from dashlint_catalogue import load_catalogue, load_dashboards  # noqa: E402


@pytest.fixture(scope="session")
def catalogue():
    return load_catalogue()


@pytest.fixture(scope="session")
def dashboards():
    return load_dashboards()
