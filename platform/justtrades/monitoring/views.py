"""JSON endpoints of the signal path, and /metrics, served from the same snapshots."""

from __future__ import annotations

import logging

from flask import Blueprint, Response, current_app, jsonify, request
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client import ProcessCollector, disable_created_metrics

from ..auth import admin_or_api_key_required, entity_debugging_access
from . import metrics, refresher, snapshots

logger = logging.getLogger(__name__)

blueprint = Blueprint("monitoring", __name__)


def init_app(app, runtime) -> None:
    # _created series double the exposition size and no rule or dashboard here reads them.
    disable_created_metrics()
    ProcessCollector(registry=runtime.registry)
    # In the health lane, so its thread publishes the health check's result even while the signal path's
    # statements still wait for a hung database.
    runtime.metrics_snapshot.add("service", lambda: metrics.service_families(runtime), lane=refresher.HEALTH_LANE)
    runtime.add_collector("signal path", lambda: metrics.signal_path_families(runtime))
    refresher.init_app(runtime)
    app.register_blueprint(blueprint)


def _runtime():
    return current_app.extensions["justtrades"]


def _limit(default: int) -> int:
    """Read ?limit=N; invalid values are a 400 that says what is accepted."""
    raw = request.args.get("limit")
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if not 1 <= value <= snapshots.MAX_LIST_LIMIT:
        raise InvalidLimit(raw)
    return value


class InvalidLimit(ValueError):
    pass


@blueprint.errorhandler(InvalidLimit)
def _invalid_limit(error: InvalidLimit):
    response = jsonify({
        "error": f"limit={error.args[0]!r} is invalid: use a whole number from 1 to {snapshots.MAX_LIST_LIMIT}",
        "field": "limit",
    })
    response.status_code = 400
    return response


@blueprint.get("/health")
def health():
    document, healthy = snapshots.health(_runtime())
    response = jsonify(document)
    response.status_code = 200 if healthy else 503
    return response


@blueprint.get("/status")
def status():
    return jsonify(snapshots.system_status(_runtime()))


@blueprint.get("/health/detailed")
@admin_or_api_key_required
def health_detailed():
    return jsonify(snapshots.detailed_health(_runtime()))


@blueprint.get("/api/broker-execution/status")
@admin_or_api_key_required
def broker_execution_status():
    return jsonify(snapshots.broker_execution(_runtime()))


@blueprint.get("/api/broker-execution/failures")
@admin_or_api_key_required
def broker_execution_failures():
    return jsonify(snapshots.execution_failures(_runtime(), _limit(20)))


@blueprint.get("/api/broker-queue/stats")
def broker_queue_stats():
    return jsonify(snapshots.broker_queue_stats(_runtime()))


@blueprint.post("/api/broker-queue/clear-cache")
@admin_or_api_key_required
def clear_broker_cache():
    runtime = _runtime()
    for name, broker in runtime.brokers.items():
        broker.clear_caches()
        logger.info("cleared caches of broker %s", name)
    return jsonify({"success": True, "message": "All broker caches cleared"})


@blueprint.get("/api/webhook-activity")
@admin_or_api_key_required
def webhook_activity():
    return jsonify(snapshots.webhook_activity(_runtime(), _limit(10)))


@blueprint.get("/api/raw-webhooks")
@admin_or_api_key_required
def raw_webhooks():
    return jsonify(snapshots.raw_webhooks(_runtime(), _limit(10)))


@blueprint.get("/api/recorders/<row_id:recorder_id>/execution-status")
@entity_debugging_access
def recorder_execution_status(recorder_id: int):
    document = snapshots.recorder_execution_status(_runtime(), recorder_id)
    if document is None:
        response = jsonify({"error": f"recorder {recorder_id} not found: use the id of a recorder loaded with `justtrades seed`"})
        response.status_code = 404
        return response
    return jsonify(document)


@blueprint.get("/metrics")
def prometheus_metrics():
    runtime = _runtime()
    # content_type, not mimetype: CONTENT_TYPE_LATEST already names its charset, and Flask would add a second one.
    return Response(runtime.metrics_snapshot.render(runtime.registry), content_type=CONTENT_TYPE_LATEST)
