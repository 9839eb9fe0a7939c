"""The baseline: a bare Flask app served by waitress exactly as `justtrades serve` serves the platform.

POST /webhook/<token> parses the JSON body and returns 200 with a small JSON document, and GET /metrics renders a
prometheus_client registry holding the series of an exposition file (the platform's own /metrics output), so
the platform's figures can be set beside the cost of the web stack and of rendering alone.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import waitress
from flask import Flask, Response, jsonify, request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector


class StaticSeries(Collector):
    """Yields the metric families parsed from an exposition text, unchanged, on every scrape."""

    def __init__(self, text: str):
        self._families = list(text_string_to_metric_families(text))

    def collect(self):
        return iter(self._families)


def create_bare_app(exposition_text: str = "") -> Flask:
    app = Flask(__name__)
    registry = CollectorRegistry(auto_describe=False)
    if exposition_text:
        registry.register(StaticSeries(exposition_text))

    @app.get("/health")
    def health():
        return jsonify({"status": "ok"})

    @app.post("/webhook/<token>")
    def webhook(token: str):
        alert = json.loads(request.get_data())
        return jsonify({"status": "accepted", "action": alert.get("action"), "token_length": len(token)})

    @app.get("/metrics")
    def metrics():
        return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)

    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Serve the bare baseline app with waitress on 127.0.0.1.")
    parser.add_argument("--port", type=int, default=0, help="TCP port; 0 lets the OS pick one")
    parser.add_argument("--threads", type=int, default=16, help="waitress request threads")
    parser.add_argument("--exposition", type=Path, help="Prometheus text file whose series /metrics serves")
    args = parser.parse_args(argv)

    text = args.exposition.read_text(encoding="utf-8") if args.exposition else ""
    server = waitress.create_server(create_bare_app(text), host="127.0.0.1", port=args.port, threads=args.threads)
    print(f"bare app listening on http://127.0.0.1:{server.effective_port}", flush=True)
    server.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
