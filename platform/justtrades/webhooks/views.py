"""POST /webhook/<token>: the TradingView delivery endpoint."""

from __future__ import annotations

import ipaddress
import logging
import sys
import time

from flask import Blueprint, current_app, jsonify, request
from werkzeug.middleware.proxy_fix import ProxyFix

from ..auth import admin_or_api_key_required
from ..db.engine import urgent_calls
from .ingest import Delivery, WebhookIngestor
from .spool import (
    SpoolFull,
    SpoolReplayer,
    SpoolSettings,
    SpoolUnavailable,
    WebhookSpool,
    collect_spool_metrics,
    is_database_unavailable,
)

logger = logging.getLogger(__name__)

blueprint = Blueprint("webhooks", __name__)


def init_app(app, runtime) -> None:
    runtime.webhooks = WebhookIngestor(runtime)
    _init_spool(runtime)
    allowed = [ipaddress.ip_network(network) for network in runtime.settings.webhook_allowed_networks]
    runtime.webhook_sender_allowed = lambda address: _address_allowed(allowed, address)
    if runtime.settings.trusted_proxies:
        proxies = runtime.settings.trusted_proxies
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=proxies, x_proto=proxies, x_host=proxies)
    app.register_blueprint(blueprint)


def _init_spool(runtime) -> None:
    settings = runtime.component_settings.get("spool") or SpoolSettings.from_environ()
    runtime.webhook_spool = spool = WebhookSpool(settings)
    replayer = SpoolReplayer(
        spool,
        lambda delivery: runtime.webhooks.ingest(delivery, replay=True),
        lambda result: _submit_jobs(runtime, result),
    )
    runtime.threads.register("webhook-spool-replayer", replayer.run, restart="always")
    runtime.on_stop(spool.close)
    runtime.add_collector("webhook spool", lambda: collect_spool_metrics(spool), live=True)


def _submit_jobs(runtime, result) -> None:
    for job_id, account_id, symbol, broker in result.jobs:
        runtime.workers.submit(job_id, account_id, symbol, broker)


def _address_allowed(networks: list, address: str | None) -> bool:
    if not networks:
        return True
    try:
        ip = ipaddress.ip_address(address or "")
    except ValueError:
        return False
    return any(ip in network for network in networks)


# The trailing slash of a pasted URL would otherwise get 404 before the raw log, and the alert would be lost.
@blueprint.post("/webhook/<token>")
@blueprint.post("/webhook/<token>/")
def receive_webhook(token: str):
    runtime = current_app.extensions["justtrades"]
    started = time.monotonic()
    delivery = _read_delivery(token, runtime.settings.webhook_max_body_bytes, started, runtime.clock())

    if not runtime.webhook_sender_allowed(delivery.source_ip):
        return _forbidden(runtime, delivery, started)

    # Deliveries spooled earlier for this recorder go first: ingesting this one before them would reorder its
    # signals, and positions, cooldowns and duplicate detection depend on the order.
    if runtime.webhook_spool.has_backlog(token):
        return _spool(runtime, delivery, started)

    try:
        # The sender gives up after 3 s: a database that does not reply within the urgent deadline is an outage.
        with urgent_calls():
            result = runtime.webhooks.ingest(delivery)
    except Exception as error:
        if is_database_unavailable(error):
            logger.warning("webhook for token ...%s: database unreachable (%s); spooling the delivery",
                           token[-4:], type(error).__name__)
            return _spool(runtime, delivery, started)
        # A bug, not an outage: the 503 signals to the sender that nothing was accepted.
        logger.exception("webhook for token ...%s failed inside ingestion", token[-4:])
        return _unavailable(runtime, started, "the webhook could not be processed; it was logged and can be retried")

    _submit_jobs(runtime, result)
    runtime.webhook_stats.record(result.outcome, time.monotonic() - started, result.blocked_reason)
    response = jsonify(result.payload)
    response.status_code = result.status_code
    return response


def _spool(runtime, delivery: Delivery, started: float):
    """Keep the delivery in the local spool and return 202, or 503 when the spool cannot take it."""
    try:
        spool_id = runtime.webhook_spool.append(delivery)
    except (SpoolFull, SpoolUnavailable) as error:
        spool_id = None
        if not delivery.too_large:
            logger.error("webhook for token ...%s lost: the database is unreachable and %s", delivery.token[-4:], error)
            return _unavailable(runtime, started, f"the database is unreachable and {error}; the alert was not accepted")

    if delivery.too_large:
        # Spooled only for the raw log: the sender must learn now that the alert is too long.
        logger.info("oversized webhook for token ...%s %s", delivery.token[-4:],
                    f"spooled as {spool_id} for the raw log" if spool_id else "not spooled")
        runtime.webhook_stats.record("too_large", time.monotonic() - started)
        limit = runtime.settings.webhook_max_body_bytes
        response = jsonify({"error": f"body of {delivery.size_bytes} bytes exceeds the {limit}-byte limit: "
                                     "shorten the alert message", "field": "body"})
        response.status_code = 413
        return response

    runtime.webhook_stats.record("spooled", time.monotonic() - started)
    response = jsonify({
        "status": "spooled",
        "spool_id": spool_id,
        "message": "the alert was stored on this server and will be processed in arrival order once the "
                   "database is reachable",
    })
    response.status_code = 202
    return response


def _unavailable(runtime, started: float, message: str):
    runtime.webhook_stats.record("error", time.monotonic() - started)
    response = jsonify({"error": message})
    response.status_code = 503
    response.headers["Retry-After"] = "30"
    return response


@blueprint.get("/api/webhook-spool")
@admin_or_api_key_required
def webhook_spool_status():
    return jsonify(current_app.extensions["justtrades"].webhook_spool.snapshot())


def _forbidden(runtime, delivery: Delivery, started: float):
    """Keep the delivery in the raw log, so an operator sees who tried, and reject it."""
    logger.warning("webhook for token ...%s from %s rejected: address not in JT_WEBHOOK_ALLOWED_IPS",
                   delivery.token[-4:], delivery.source_ip)
    try:
        with urgent_calls():
            runtime.webhooks.record_forbidden(delivery)
    except Exception as error:
        # The 403 is returned even without its raw-log row; a 500 would hide why the sender was rejected.
        if is_database_unavailable(error):
            logger.warning("raw log row of the rejected delivery from %s not written: database unreachable",
                           delivery.source_ip)
        else:
            logger.exception("raw log row of the rejected delivery from %s not written", delivery.source_ip)
    runtime.webhook_stats.record("forbidden", time.monotonic() - started)
    response = jsonify({
        "error": f"source address {delivery.source_ip} is not allowed to send webhooks; "
                 "add it to JT_WEBHOOK_ALLOWED_IPS if it is a legitimate sender",
    })
    response.status_code = 403
    return response


def _read_delivery(token: str, limit: int, started: float, received_at) -> Delivery:
    """Read at most limit + 1 bytes, so an oversized body is detected without buffering all of it."""
    # This bounded read replaces the app-wide MAX_CONTENT_LENGTH, which would reject a large delivery before it
    # reached the raw log.
    request.max_content_length = sys.maxsize
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
