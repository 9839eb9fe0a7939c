"""GET /api/paper-trades/service-status and its metrics, from one snapshot of the paper_trades table."""

from __future__ import annotations

import datetime as dt

from flask import Blueprint, current_app, jsonify
from prometheus_client.core import GaugeMetricFamily
from sqlalchemy import func, inspect, select

from ..db.models import PaperTrade
from ..monitoring.snapshots import iso

blueprint = Blueprint("paper", __name__)


def init_app(app, runtime) -> None:
    runtime.add_collector("paper trading", lambda: paper_families(runtime))
    app.register_blueprint(blueprint)


def service_status(runtime) -> dict:
    # The reference calls the paper-trade store "v2 database"; here it is the paper_trades table.
    table_exists = inspect(runtime.engine).has_table(PaperTrade.__tablename__)
    if not table_exists:
        return {"v2_database_exists": False, "total_paper_trades": 0, "open_count": 0, "closed_count": 0,
                "last_close_time": None}

    with runtime.session_factory() as session:
        open_count = session.scalar(select(func.count()).select_from(PaperTrade).where(PaperTrade.closed_at.is_(None)))
        closed_count = session.scalar(
            select(func.count()).select_from(PaperTrade).where(PaperTrade.closed_at.is_not(None))
        )
        last_close = session.scalar(select(func.max(PaperTrade.closed_at)))

    return {
        "v2_database_exists": True,
        "total_paper_trades": open_count + closed_count,
        "open_count": open_count,
        "closed_count": closed_count,
        "last_close_time": iso(last_close) if last_close else None,
    }


def paper_families(runtime):
    status = service_status(runtime)

    trades = GaugeMetricFamily("justtrades_paper_trades", "Paper trades by state.", labels=["state"])
    trades.add_metric(["open"], status["open_count"])
    trades.add_metric(["closed"], status["closed_count"])
    yield trades

    if status["last_close_time"]:
        last_close = GaugeMetricFamily(
            "justtrades_paper_last_close_timestamp_seconds", "Time the newest paper trade was closed."
        )
        last_close.add_metric([], _parse_iso(status["last_close_time"]))
        yield last_close


def _parse_iso(text: str) -> float:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


@blueprint.get("/api/paper-trades/service-status")
def paper_service_status():
    return jsonify(service_status(current_app.extensions["justtrades"]))
