"""POST /webhook/<token>: the TradingView delivery endpoint."""

from __future__ import annotations

import logging
import time

from flask import Blueprint, current_app, jsonify, request

from .ingest import Delivery, WebhookIngestor

logger = logging.getLogger(__name__)

blueprint = Blueprint("webhooks", __name__)


def init_app(app, runtime) -> None:
    runtime.webhooks = WebhookIngestor(runtime)
    app.register_blueprint(blueprint)


@blueprint.post("/webhook/<token>")
def receive_webhook(token: str):
    runtime = current_app.extensions["justtrades"]
    started = time.monotonic()
    delivery = _read_delivery(token, runtime.settings.webhook_max_body_bytes, started, runtime.clock())

    try:
        result = runtime.webhooks.ingest(delivery)
    except Exception:
        # Usually the database is down. A 5xx tells TradingView and other senders that nothing was accepted.
        logger.exception("webhook for token ...%s failed inside ingestion", token[-4:])
        runtime.webhook_stats.record("error", time.monotonic() - started)
        response = jsonify({"error": "the webhook could not be processed; it was logged and can be retried"})
        response.status_code = 503
        return response

    for job_id, account_id, symbol in result.jobs:
        runtime.workers.submit(job_id, account_id, symbol)

    runtime.webhook_stats.record(result.outcome, time.monotonic() - started, result.blocked_reason)
    response = jsonify(result.payload)
    response.status_code = result.status_code
    return response


def _read_delivery(token: str, limit: int, started: float, received_at) -> Delivery:
    """Read at most limit + 1 bytes, so an oversized body is detected without buffering all of it."""
    body = request.stream.read(limit + 1)
    too_large = len(body) > limit or (request.content_length or 0) > limit
    size = request.content_length if request.content_length is not None else len(body)

    return Delivery(
        token=token,
        body=body[:limit] if too_large else body,
        size_bytes=size,
        too_large=too_large,
        content_type=request.content_type,
        source_ip=request.remote_addr,
        received_at=received_at,
        started=started,
    )
