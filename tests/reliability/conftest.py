"""Fixtures of the reliability scenarios: a private PostgreSQL cluster the tests may stop and start."""

from __future__ import annotations

import os

# Platform processes started here inherit this: their feed daemons must never reach TradingView or Tradovate.
os.environ.setdefault("JT_FEEDS_ENABLED", "false")

import pytest  # noqa: E402

from tests.conftest import require_component  # noqa: E402

from .private_postgres import PrivatePostgres, private_cluster_available  # noqa: E402


@pytest.fixture
def private_postgres():
    available, missing = private_cluster_available()
    require_component(available, f"a private PostgreSQL cluster ({missing})")
    cluster = PrivatePostgres().init()
    cluster.start()
    yield cluster
    cluster.destroy()
