"""End to end: fills drive a trader past its loss limit, and the webhook path then refuses its new entries."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

from sqlalchemy import func, select

from justtrades.db.models import ExecutionJob, WebhookActivity

from .conftest import add_fill, add_trading_setup


def _post(client, token: str, action: str):
    body = json.dumps({"action": action, "ticker": "NQ1!", "price": "21500"})
    return client.post(f"/webhook/{token}", data=body, content_type="application/json")


def _jobs(runtime, trader_id: int) -> list[str]:
    with runtime.session_factory() as session:
        return session.scalars(select(ExecutionJob.action).where(ExecutionJob.trader_id == trader_id)).all()


def test_breached_trader_takes_closes_only(app, runtime):
    ids = add_trading_setup(runtime, max_daily_loss=Decimal("500"))
    now = dt.datetime.now(dt.timezone.utc)
    add_fill(runtime, ids["trader"], ids["account"], "Buy", 1, "21500", now - dt.timedelta(seconds=2))
    add_fill(runtime, ids["trader"], ids["account"], "Sell", 1, "21470", now - dt.timedelta(seconds=1))
    client = app.test_client()

    assert _post(client, "token-JADNQ", "buy").status_code == 200
    assert _jobs(runtime, ids["trader"]) == ["buy"]  # 600 USD lost, but no breach is recorded yet

    assert runtime.accounts.max_loss.check(dt.datetime.now(dt.timezone.utc)) == [ids["trader"]]
    assert _post(client, "token-JADNQ", "sell").status_code == 200
    assert _post(client, "token-JADNQ", "close").status_code == 200

    assert _jobs(runtime, ids["trader"]) == ["buy", "close"]
    with runtime.session_factory() as session:
        blocked = session.scalar(
            select(func.count(WebhookActivity.id)).where(WebhookActivity.status == "blocked")
        )
    assert blocked == 1
