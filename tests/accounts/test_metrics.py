"""The accounts metrics: every contract name is exposed, and each value equals its JSON field."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from justtrades.accounts.settings import AccountsSettings
from tests.peers.whop_api import WhopPeer, membership

from .conftest import API_KEY, add_fill, add_trading_setup, add_user

METRIC_NAMES = [
    "justtrades_users",
    "justtrades_users_approved",
    "justtrades_users_affiliated",
    "justtrades_recorders",
    "justtrades_strategies",
    "justtrades_daily_pnl_usd",
    "justtrades_max_loss_monitored_traders",
    "justtrades_max_loss_breached_traders",
    "justtrades_whop_sync_last_run_timestamp_seconds",
    "justtrades_whop_sync_interval_seconds",
    "justtrades_whop_synced_total",
    "justtrades_whop_resent_total",
    "justtrades_whop_pending_resends",
    "justtrades_whop_stuck_users",
]
CATALOGUE = Path(__file__).resolve().parents[2] / "docs" / "metrics.md"
HEADERS = {"X-API-Key": API_KEY}


def _samples(app) -> dict[str, float]:
    exposition = generate_latest(app.extensions["justtrades"].registry).decode()
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
        if not sample.labels
    }


@pytest.fixture
def populated_app(db_url, app_factory):
    with WhopPeer(api_key="whop-key", memberships=[membership("mem_a", "alice@example.com", "active")]) as whop:
        settings = AccountsSettings(whop_api_url=whop.v1_url, whop_api_key="whop-key", whop_sync_interval_seconds=45)
        app = app_factory(db_url, settings)
        runtime = app.extensions["justtrades"]
        add_user(runtime, "admin@example.com", "admin-password", "admin")
        add_user(runtime, "partner@example.com", "partner-password", is_affiliate=True)
        add_user(runtime, "waiting@example.com", "waiting-password", approved=False)
        ids = add_trading_setup(runtime, max_daily_loss=Decimal("100"))
        add_trading_setup(runtime, recorder_name="SECOND", account_name="Paper 2")
        now = dt.datetime.now(dt.timezone.utc)
        add_fill(runtime, ids["trader"], ids["account"], "Buy", 1, "21500", now - dt.timedelta(seconds=2))
        add_fill(runtime, ids["trader"], ids["account"], "Sell", 1, "21490.5", now - dt.timedelta(seconds=1))
        runtime.accounts.max_loss.check(now)
        runtime.accounts.whop.run_once(now.replace(microsecond=0))
        yield app


def test_every_contract_metric_exposed(populated_app):
    samples = _samples(populated_app)

    missing = [name for name in METRIC_NAMES if name not in samples]
    assert missing == []


def test_metrics_equal_json_fields(populated_app):
    client = populated_app.test_client()
    stats = client.get("/api/admin/dashboard-stats", headers=HEADERS).get_json()
    loss = client.get("/api/admin/max-loss-monitor/status", headers=HEADERS).get_json()
    whop = client.get("/api/admin/whop-sync-status", headers=HEADERS).get_json()
    samples = _samples(populated_app)

    assert samples["justtrades_users"] == stats["total_users"] == 4
    assert samples["justtrades_users_approved"] == stats["approved_users"] == 3
    assert stats["user_count"] == stats["approved_users"]
    assert samples["justtrades_users_affiliated"] == stats["affiliated"] == 1
    assert samples["justtrades_recorders"] == stats["recorders"] == 2
    assert samples["justtrades_strategies"] == stats["strategies"] == 1
    assert samples["justtrades_daily_pnl_usd"] == stats["daily_pnl"] == -190.0
    assert samples["justtrades_max_loss_monitored_traders"] == loss["monitored_traders"] == 2
    assert samples["justtrades_max_loss_breached_traders"] == loss["daily_loss_breach_count"] == 1
    last_run = dt.datetime.fromisoformat(whop["last_run"].replace("Z", "+00:00"))
    assert samples["justtrades_whop_sync_last_run_timestamp_seconds"] == last_run.timestamp()
    assert samples["justtrades_whop_sync_interval_seconds"] == whop["sync_interval_seconds"] == 45
    assert samples["justtrades_whop_synced_total"] == whop["total_synced"] == 1
    assert samples["justtrades_whop_resent_total"] == whop["total_resent"] == 0
    assert samples["justtrades_whop_pending_resends"] == whop["pending_resends"] == 1
    assert samples["justtrades_whop_stuck_users"] == len(whop["stuck_users"]) == 0


def test_catalogue_lists_every_metric():
    catalogue = CATALOGUE.read_text(encoding="utf-8")

    missing = [name for name in METRIC_NAMES if f"`{name}`" not in catalogue]
    assert missing == []


def test_broken_area_leaves_others_scraped(populated_app, monkeypatch):
    runtime = populated_app.extensions["justtrades"]

    def broken(now):
        raise RuntimeError("database unreachable")

    monkeypatch.setattr(runtime.accounts.whop, "snapshot", broken)
    samples = _samples(populated_app)

    assert "justtrades_whop_synced_total" not in samples
    assert samples["justtrades_users"] == 4
    assert samples["justtrades_max_loss_breached_traders"] == 1
