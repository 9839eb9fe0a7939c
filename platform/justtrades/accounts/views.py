"""JSON endpoints of the accounts area: admin stats, max daily loss, Whop sync, broker state, migrations."""

from __future__ import annotations

import datetime as dt
import logging

from flask import Blueprint, current_app, jsonify

from .. import auth
from ..daemons import redact_error
from .broker_state import BrokerStateError, account_broker_state, trader_broker_state
from .schema import run_migrations
from .stats import dashboard_stats

logger = logging.getLogger(__name__)

blueprint = Blueprint("accounts", __name__)


def _runtime():
    return current_app.extensions["justtrades"]


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


@blueprint.get("/api/admin/dashboard-stats")
@auth.login_required
def admin_dashboard_stats():
    accounts = _runtime().accounts
    return jsonify(dashboard_stats(accounts.session_factory, accounts.max_loss, _now()))


@blueprint.get("/api/admin/max-loss-monitor/status")
@auth.login_required
def max_loss_monitor_status():
    return jsonify(_runtime().accounts.max_loss.snapshot(_now()))


@blueprint.get("/api/admin/whop-sync-status")
@auth.api_key_required
def whop_sync_status():
    return jsonify(_runtime().accounts.whop.snapshot(_now()))


@blueprint.get("/api/traders/<row_id:trader_id>/broker-state")
@auth.entity_debugging_access
def trader_state(trader_id: int):
    try:
        return jsonify(trader_broker_state(_runtime(), trader_id, _now()))
    except BrokerStateError as error:
        return jsonify(error.body), error.status


@blueprint.get("/api/account/<row_id:account_id>/broker-state")
@auth.entity_debugging_access
def account_state(account_id: int):
    try:
        return jsonify(account_broker_state(_runtime(), account_id, _now()))
    except BrokerStateError as error:
        return jsonify(error.body), error.status


@blueprint.post("/api/run-migrations")
@auth.admin_or_api_key_required
def run_pending_migrations():
    runtime = _runtime()
    try:
        report = run_migrations(runtime.engine)
    except Exception as error:
        logger.exception("running the migrations failed")
        return jsonify({"success": False, "error": f"migration failed: {redact_error(error)}", "migrations": []}), 500
    return jsonify(report), 200 if report["success"] else 500
