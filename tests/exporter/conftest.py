"""Fixtures of the exporter tests: a fake platform serving reference-shaped JSON over HTTP on 127.0.0.1.

The documents are the monitoring reference's example responses, plus the fields the metric catalogue adds
(market_open, version, database, workers_configured, failures_by_reason, the TradingView counters, the position
monitor, the thread table, total_accounts, earliest_token_expiry).
"""

from __future__ import annotations

import copy
import dataclasses
import http.server
import json
import re
import socket
import threading
from pathlib import Path
from typing import Any, Callable

import pytest
from prometheus_client.parser import text_string_to_metric_families

from justtrades_exporter.server import BackgroundServer, Exporter, ExporterSettings

API_KEY = "test-admin-key-0123456789"

# Endpoints the reference marks as needing the admin API key (or a login, which the key also opens).
KEYED_PATHS = frozenset(
    {
        "/api/webhook-spool",
        "/health/detailed",
        "/api/broker-execution/status",
        "/api/broker-execution/failures",
        "/api/webhook-activity",
        "/api/raw-webhooks",
        "/api/thread-health",
        "/api/admin/dashboard-stats",
        "/api/admin/max-loss-monitor/status",
        "/api/admin/whop-sync-status",
        "/api/position-monitor/status",
    }
)


def reference_documents() -> dict[str, dict[str, Any]]:
    """Return the JSON documents of a healthy platform, keyed by path."""
    return {
        "/health": {
            "status": "ok",
            "service": "just-trades",
            "purpose": "Trading automation platform",
            "port": 5000,
            "timestamp": "2026-02-21T14:30:00Z",
            "market_open": True,
            "version": "1.4.2",
        },
        "/health/detailed": {
            "status": "ok",
            "database": {"ok": True, "pool": {"size": 5, "checked_out": 2, "idle": 3, "overflow": 0}},
            "memory": {"rss_bytes": 183500800},
        },
        "/status": {
            "open_trades": 3,
            "indexed_positions": 5,
            "indexed_trades": 142,
            "websocket_connected": True,
            "subscribed_symbols": ["NQ", "ES", "GC", "MNQ", "MGC", "CL"],
            "cached_prices": {
                "NQ": {"last": 21534.75, "updated": "2026-02-21T14:30:00Z"},
                "GC": {"last": 2945.30, "updated": "2026-02-21T14:30:00Z"},
            },
            "timestamp": "2026-02-21T14:30:00Z",
        },
        "/api/broker-execution/status": {
            "external_engine_mode": False,
            "fast_webhook": {"workers_alive": 10, "requests_waiting": 0, "total_processed": 1543, "avg_latency_ms": 42},
            "broker_execution": {
                "workers_alive": 10,
                "workers_configured": 10,
                "worker_restarts": 1,
                "queue_size": 0,
                "oldest_job_created_at": None,
                "oldest_job_age_seconds": 0.0,
                "total_processed": 892,
                "total_failures": 3,
                "failures_by_reason": {"token_expired": 2, "rate_limit_exceeded": 1, "timeout": 0},
                "avg_execution_ms": 168,
            },
            "traders": {"total_enabled": 45, "total_accounts": 12},
            "signal_blocking": {"currently_blocked": [{"recorder_name": "JADNQ", "until": "2026-02-21T15:00:00Z"}]},
        },
        "/api/broker-execution/failures": {
            "failures": [
                {
                    "timestamp": "2026-02-21T14:25:00Z",
                    "recorder_name": "JADNQ",
                    "trader_id": 1359,
                    "account_id": 456,
                    "error": "Token expired - needs re-authentication",
                    "symbol": "NQH6",
                    "action": "buy",
                }
            ]
        },
        "/api/broker-queue/stats": {"queue_size": 0, "processing_rate": 12.5, "success_rate": 99.2},
        "/api/webhook-activity": {
            "stats": {"total": 150, "success": 142, "failed": 5, "blocked": 3, "success_rate": 94.7},
            "activity": [
                {
                    "timestamp": "2026-02-21T14:30:00Z",
                    "recorder_name": "JADNQ",
                    "action": "buy",
                    "ticker": "NQH6",
                    "status": "success",
                    "latency_ms": 45,
                    "traders_notified": 7,
                }
            ],
        },
        "/api/raw-webhooks": {
            "total": 200,
            "action_breakdown": {"buy": 85, "sell": 72, "closelong": 20, "closeshort": 18, "close": 5},
            "webhooks": [
                {
                    "timestamp": "2026-02-21T14:30:00Z",
                    "webhook_token": "abc-123-def",
                    "raw_body": '{"action":"buy","ticker":"NQH6","price":21500.00}',
                    "source_ip": "52.89.214.238",
                }
            ],
        },
        "/api/tradingview/status": {
            "websocket_connected": True,
            "subscribed_symbols": ["NQ", "ES", "GC", "MNQ", "MGC", "CL", "SI", "MES"],
            "cached_prices": {
                "NQ": {"last": 21534.75, "updated": "2026-02-21T14:30:00Z"},
                "GC": {"last": 2945.30, "updated": "2026-02-21T14:30:00Z"},
            },
            "session_updated_at": "2026-02-20T10:00:00Z",
            "auto_refresh_enabled": True,
            "jwt_token_valid": True,
            "delayed": False,
            "polling_fallback_active": False,
            "reconnects": 4,
            "last_message_at": "2026-02-21T14:30:05Z",
        },
        "/api/market-data/status": {
            "available_tokens": 8,
            "last_update": "2026-02-21T14:30:00Z",
            "cached_prices": {"NQ": 21534.75, "ES": 6120.50, "GC": 2945.30},
            "symbol_count": 8,
        },
        "/api/accounts/auth-status": {
            "all_accounts_valid": False,
            "accounts_needing_reauth": [
                {"id": 123, "name": "Demo Account 1", "status": "expired", "action": "Re-authenticate via OAuth"}
            ],
            "count": 1,
            "total_accounts": 12,
            "earliest_token_expiry": "2026-02-21T15:00:00-05:00",
        },
        "/api/position-monitor/status": {
            "connections_by_state": {"subscribed": 12, "connecting": 0, "disconnected": 1},
            "connections": [{"state": "subscribed", "accounts": 1}] * 12 + [{"state": "disconnected", "accounts": 1}],
            "accounts": 13,
            "last_message_at": "2026-02-21T14:29:58Z",
            "events": {"position": 40, "fill": 22, "order": 31, "other": 5},
            "auth_failures": 0,
            "stale_detections": 2,
            "account_group_errors": 0,
        },
        "/api/thread-health": {
            "threads": {
                "position_monitor": {"status": "running", "restarts": 0, "last_beat": "2026-02-21T14:29:55Z"},
                "whop_sync": {"status": "stopped", "restarts": 2, "last_beat": "2026-02-21T14:00:00Z"},
            }
        },
        "/api/paper-trades/service-status": {
            "v2_database_exists": True,
            "total_paper_trades": 342,
            "open_count": 5,
            "closed_count": 337,
            "last_close_time": "2026-02-21T14:15:00Z",
        },
        "/api/admin/dashboard-stats": {
            "user_count": 52,
            "total_users": 60,
            "approved_users": 52,
            "recorders": 8,
            "strategies": 5,
            "affiliated": 3,
            "daily_pnl": 1250.00,
        },
        "/api/admin/max-loss-monitor/status": {
            "monitored_traders": 45,
            "daily_loss_breach_count": 2,
            "breach_details": [
                {
                    "trader_id": 1359,
                    "recorder_name": "JADNQ",
                    "max_daily_loss": 1000.00,
                    "current_daily_loss": -1250.00,
                    "status": "breached",
                }
            ],
        },
        "/api/admin/whop-sync-status": {
            "last_run": "2026-02-21T14:29:30Z",
            "last_synced": 0,
            "last_resent": 0,
            "total_synced": 47,
            "total_resent": 12,
            "sync_interval_seconds": 30,
            "pending_resends": 0,
            "stuck_users": [],
        },
        "/api/webhook-spool": {
            "enabled": True,
            "disabled_reason": None,
            "depth": 3,
            "bytes": 1536,
            "max_bytes": 268435456,
            "spooled_total": 40,
            "replayed_total": 37,
            "rejected_total": 1,
            "quarantined_total": 0,
            "failed_files": 0,
            "oldest_spooled_at": "2026-02-21T14:29:50Z",
            "oldest_age_seconds": 10.5,
        },
    }


@dataclasses.dataclass
class Route:
    status: int = 200
    body: bytes = b"{}"
    content_type: str = "application/json"
    delay_seconds: float = 0.0
    drip_seconds: float = 0.0  # pause between single bytes of the body: a server that never quite times out


class _Server(http.server.ThreadingHTTPServer):
    # The exporter opens one connection per endpoint at once. The default backlog of 5 would drop some SYNs,
    # and the kernel's one-second SYN retransmit would then show up as slow scrapes.
    request_queue_size = 128

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()

    def get_request(self):
        connection, address = super().get_request()
        with self.connections_lock:
            self.connections.add(connection)
        return connection, address

    def close_connections(self) -> None:
        """Cut kept-alive connections too, so a stopped platform looks like a dead process."""
        with self.connections_lock:
            for connection in self.connections:
                try:
                    connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            self.connections.clear()


class FakePlatform:
    """A platform on 127.0.0.1 (OS-picked port) whose responses each test sets per path."""

    def __init__(self, documents: dict[str, dict[str, Any]], api_key: str | None = API_KEY):
        self.api_key = api_key
        self.routes: dict[str, Route] = {}
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self._release = threading.Event()
        self._lock = threading.Lock()
        for path, document in documents.items():
            self.set_json(path, document)

        self._server = _Server(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-platform", daemon=True
        )
        self._thread.start()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def set_json(self, path: str, document: Any, status: int = 200) -> None:
        self.routes[path] = Route(status, json.dumps(document).encode())

    def set_raw(self, path: str, body: bytes, status: int = 200, content_type: str = "text/html") -> None:
        self.routes[path] = Route(status, body, content_type)

    def set_delay(self, path: str, seconds: float) -> None:
        self.routes[path].delay_seconds = seconds

    def set_drip(self, path: str, seconds_per_byte: float) -> None:
        self.routes[path].drip_seconds = seconds_per_byte

    def paths_requested(self) -> list[str]:
        with self._lock:
            return [path for path, _query, _headers in self.requests]

    def stop(self) -> None:
        self._release.set()
        self._server.shutdown()
        self._server.server_close()
        self._server.close_connections()
        self._thread.join(timeout=5)

    def _handler_class(self):
        platform = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                path, _, query = self.path.partition("?")
                with platform._lock:
                    platform.requests.append((path, query, dict(self.headers)))
                route = platform.routes.get(path)

                if route is None:
                    self._answer(Route(404, json.dumps({"error": f"not found: {path}"}).encode()))
                    return
                if path in KEYED_PATHS and platform.api_key and self.headers.get("X-API-Key") != platform.api_key:
                    self._answer(Route(401, b'{"error": "API key required"}'))
                    return
                if route.delay_seconds:
                    # Waits on an event rather than sleeping, so stop() releases a slow response at once.
                    platform._release.wait(route.delay_seconds)
                self._answer(route)

            def _answer(self, route: Route):
                try:
                    self.send_response(route.status)
                    self.send_header("Content-Type", route.content_type)
                    self.send_header("Content-Length", str(len(route.body)))
                    self.end_headers()
                    if not route.drip_seconds:
                        self.wfile.write(route.body)
                        return
                    for index in range(len(route.body)):
                        self.wfile.write(route.body[index : index + 1])
                        self.wfile.flush()
                        if platform._release.wait(route.drip_seconds):
                            return
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the exporter gave up on a slow answer

            def log_message(self, format, *args):
                pass

        return Handler


@pytest.fixture
def documents() -> dict[str, dict[str, Any]]:
    return copy.deepcopy(reference_documents())


@pytest.fixture
def make_platform():
    """Start fake platforms serving the given documents; all are stopped after the test."""
    platforms: list[FakePlatform] = []

    def start(documents: dict[str, dict[str, Any]], api_key: str | None = API_KEY) -> FakePlatform:
        platform = FakePlatform(documents, api_key)
        platforms.append(platform)
        return platform

    yield start
    for platform in platforms:
        platform.stop()


@pytest.fixture
def fake_platform(make_platform, documents) -> FakePlatform:
    return make_platform(documents)


@pytest.fixture
def make_exporter():
    """Build exporters against a platform URL; each has its own registry and is closed after the test."""
    exporters: list[Exporter] = []

    def build(platform_url: str, api_key: str | None = API_KEY, **options) -> Exporter:
        settings = ExporterSettings(platform_url=platform_url, api_key=api_key, **options)
        exporter = Exporter(settings)
        exporters.append(exporter)
        return exporter

    yield build
    for exporter in exporters:
        exporter.close()


@pytest.fixture
def exporter(fake_platform, make_exporter) -> Exporter:
    return make_exporter(fake_platform.url, timeout_seconds=2.0, scrape_timeout_seconds=5.0)


@pytest.fixture
def exporter_server(exporter):
    """Serve the exporter with waitress on 127.0.0.1, port 0; yields the base URL."""
    server = BackgroundServer(exporter).start()
    yield server.url
    server.stop()


SampleKey = tuple[str, frozenset]


def parse_exposition(text: str) -> dict[SampleKey, float]:
    """Map (sample name, labels) to the value for every sample of a text exposition."""
    samples: dict[SampleKey, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def family_types(text: str) -> dict[str, str]:
    return {family.name: family.type for family in text_string_to_metric_families(text)}


@pytest.fixture
def parse() -> Callable[[str], dict[SampleKey, float]]:
    return parse_exposition


@pytest.fixture
def scrape() -> Callable[[Exporter], dict[SampleKey, float]]:
    """Collect an exporter's registry in-process and parse the exposition."""
    from prometheus_client import generate_latest

    def run(exporter: Exporter) -> dict[SampleKey, float]:
        return parse_exposition(generate_latest(exporter.registry).decode())

    return run


CATALOGUE = Path(__file__).resolve().parents[2] / "docs" / "metrics.md"


@dataclasses.dataclass(frozen=True)
class CatalogueEntry:
    name: str
    type: str
    labels: tuple[str, ...]
    producer: str


def read_catalogue(path: Path = CATALOGUE) -> dict[str, CatalogueEntry]:
    """Parse the metric tables of docs/metrics.md.

    Contract tables have rows `| `name` | type | unit | labels | JSON field | producer |`; the exporter's own table
    has `| `name` | type | unit | labels | meaning |`, read here with producer "exporter".
    """
    entries: dict[str, CatalogueEntry] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) not in (5, 6) or not cells[0].startswith("`justtrades_"):
            continue
        name = cells[0].strip("`")
        # The labels cell names each label in backticks, followed by its values in brackets.
        labels = tuple(re.findall(r"`([a-z_]+)`", cells[3]))
        producer = cells[5] if len(cells) == 6 else "exporter"
        entries[name] = CatalogueEntry(name, cells[1], labels, producer)
    return entries


@pytest.fixture(scope="session")
def contract_catalogue() -> dict[str, CatalogueEntry]:
    """The catalogue's metrics that both the platform and the exporter produce."""
    entries = {name: entry for name, entry in read_catalogue().items() if entry.producer == "both"}
    assert entries, f"no metric with producer 'both' found in {CATALOGUE}"
    return entries


@pytest.fixture(scope="session")
def exporter_catalogue() -> dict[str, CatalogueEntry]:
    """The catalogue's table of the exporter's own metrics."""
    entries = {name: entry for name, entry in read_catalogue().items() if entry.producer == "exporter"}
    assert entries, f"no exporter metric table found in {CATALOGUE}"
    return entries
