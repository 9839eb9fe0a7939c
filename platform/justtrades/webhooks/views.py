"""POST /webhook/<token>: the TradingView delivery endpoint."""

from __future__ import annotations

import ipaddress
import logging
import time

from flask import Blueprint, current_app, jsonify, request
from werkzeug.middleware.proxy_fix import ProxyFix

from .ingest import Delivery, WebhookIngestor

logger = logging.getLogger(__name__)

blueprint = Blueprint("webhooks", __name__)


def init_app(app, runtime) -> None:
    runtime.webhooks = WebhookIngestor(runtime)
    allowed = [ipaddress.ip_network(network) for network in runtime.settings.webhook_allowed_networks]
    runtime.webhook_sender_allowed = lambda address: _address_allowed(allowed, address)
    if runtime.settings.trusted_proxies:
        proxies = runtime.settings.trusted_proxies
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=proxies, x_proto=proxies, x_host=proxies)
    app.register_blueprint(blueprint)


def _address_allowed(networks: list, address: str | None) -> bool:
    if not networks:
        return True
    try:
        ip = ipaddress.ip_address(address or "")
    except ValueError:
        return False
    return any(ip in network for network in networks)


@blueprint.post("/webhook/<token>")
def receive_webhook(token: str):
    runtime = current_app.extensions["justtrades"]
    started = time.monotonic()
    delivery = _read_delivery(token, runtime.settings.webhook_max_body_bytes, started, runtime.clock())

    if not runtime.webhook_sender_allowed(delivery.source_ip):
        return _forbidden(runtime, delivery, started)

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


def _forbidden(runtime, delivery: Delivery, started: float):
    """Keep the delivery in the raw log, so an operator sees who tried, and reject it."""
    logger.warning("webhook for token ...%s from %s rejected: address not in JT_WEBHOOK_ALLOWED_IPS",
                   delivery.token[-4:], delivery.source_ip)
    runtime.webhooks.record_forbidden(delivery)
    runtime.webhook_stats.record("forbidden", time.monotonic() - started)
    response = jsonify({
        "error": f"source address {delivery.source_ip} is not allowed to send webhooks; "
                 "add it to JT_WEBHOOK_ALLOWED_IPS if it is a legitimate sender",
    })
    response.status_code = 403
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
