"""JSON endpoints of the feeds: TradingView, market data, the position monitor and account auth status."""

from __future__ import annotations

import datetime as dt
import logging
import math

from flask import Blueprint, current_app, jsonify
from sqlalchemy.exc import SQLAlchemyError

from ..auth import admin_or_api_key_required
from .tokens import account_auth_status

logger = logging.getLogger(__name__)

blueprint = Blueprint("feeds", __name__)


def _runtime():
    return current_app.extensions["justtrades"]


def to_json(value):
    """Convert datetimes (to ISO 8601 with Z) inside dicts and lists, so every endpoint writes times the same way."""
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.timezone.utc).isoformat().replace("+00:00", "Z")
    if isinstance(value, dict):
        return {key: to_json(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json(item) for item in value]
    return value


def _database_unavailable(error: SQLAlchemyError, endpoint: str):
    logger.error("reading accounts for %s failed: %s", endpoint, type(error).__name__)
    response = jsonify({"error": "the database is unavailable; check /health/detailed and retry"})
    response.status_code = 503
    return response


@blueprint.get("/api/tradingview/status")
def tradingview_status():
    return jsonify(_runtime().price_feed.snapshot())


@blueprint.get("/api/tradingview/auth-status")
def tradingview_auth_status():
    return jsonify(_runtime().price_feed.auth_status())


@blueprint.post("/api/tradingview/refresh")
def tradingview_refresh():
    status, body, retry_after = _runtime().price_feed.manual_refresh()
    response = jsonify(body)
    response.status_code = status
    if retry_after is not None:
        response.headers["Retry-After"] = str(max(1, math.ceil(retry_after)))
    return response


@blueprint.get("/api/market-data/status")
def market_data_status():
    runtime = _runtime()
    try:
        accounts = account_auth_status(runtime.session_factory)
    except SQLAlchemyError as error:
        return _database_unavailable(error, "/api/market-data/status")
    return jsonify(market_data_document(runtime.price_feed.snapshot(), accounts))


def market_data_document(feed: dict, accounts: dict) -> dict:
    """Build /api/market-data/status; available_tokens counts Tradovate token groups holding an unexpired token."""
    updates = [entry["updated"] for entry in feed["cached_prices"].values()]
    return {
        "available_tokens": accounts["valid_token_groups"],
        "last_update": max(updates) if updates else None,
        "cached_prices": {root: entry["last"] for root, entry in feed["cached_prices"].items()},
        "symbol_count": len(feed["subscribed_symbols"]),
        "websocket_connected": feed["websocket_connected"],
        "delayed": feed["delayed"],
        "price_source": feed["price_source"],
    }


@blueprint.get("/api/accounts/auth-status")
def accounts_auth_status():
    runtime = _runtime()
    try:
        document = account_auth_status(runtime.session_factory)
    except SQLAlchemyError as error:
        return _database_unavailable(error, "/api/accounts/auth-status")
    document["token_refresh"] = runtime.token_refresher.snapshot()
    return jsonify(to_json(document))


@blueprint.get("/api/position-monitor/status")
@admin_or_api_key_required
def position_monitor_status():
    return jsonify(to_json(_runtime().position_monitor.snapshot()))
