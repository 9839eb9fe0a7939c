"""Fixtures of the dashboard tests: the dashboards as Grafana loads them and the metric catalogue."""

from __future__ import annotations

import pytest

from tests.dashboards.dashlint_catalogue import load_catalogue, load_dashboards


@pytest.fixture(scope="session")
def catalogue():
    return load_catalogue()


@pytest.fixture(scope="session")
def dashboards():
    return load_dashboards()
