"""Fixtures of the alerting tests: the rule files and the Prometheus and Alertmanager binaries.

promtool, amtool, prometheus and alertmanager come from Debian's packages. A missing binary skips its tests
locally and fails them on CI (CI=true).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.alerting.rule_files import load_rules
from tests.conftest import require_component

BINARIES = {
    "promtool": "/usr/bin/promtool",
    "amtool": "/usr/bin/amtool",
    "prometheus": "/usr/bin/prometheus",
    "alertmanager": "/usr/bin/prometheus-alertmanager",
}


def _binary(name: str) -> str:
    preferred = BINARIES[name]
    path = preferred if Path(preferred).exists() else shutil.which(Path(preferred).name) or shutil.which(name)
    require_component(path is not None, f"{name} ({preferred}, Debian package prometheus or prometheus-alertmanager)")
    return path


@pytest.fixture(scope="session")
def promtool() -> str:
    return _binary("promtool")


@pytest.fixture(scope="session")
def amtool() -> str:
    return _binary("amtool")


@pytest.fixture(scope="session")
def prometheus_binary() -> str:
    return _binary("prometheus")


@pytest.fixture(scope="session")
def alertmanager_binary() -> str:
    return _binary("alertmanager")


@pytest.fixture(scope="session")
def alert_rules():
    return load_rules()
