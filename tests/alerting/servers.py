"""Local servers for the live alerting tests: a canned /metrics target, a webhook receiver that records what
Alertmanager delivers, and real Prometheus and Alertmanager processes on 127.0.0.1."""

from __future__ import annotations

import json
import logging
import socket
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable

import requests

logger = logging.getLogger(__name__)


def free_port() -> int:
    # Prometheus and Alertmanager cannot report a port they picked themselves, so the OS picks one here and the
    # socket is released just before the process binds it.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until(condition: Callable[[], object], timeout: float, description: str, interval: float = 0.25):
    """Poll `condition` until it returns a truthy value and return that value; raise after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {description}")


class _QuietHandler(BaseHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the signature of BaseHTTPRequestHandler
        logger.debug("%s %s", self.address_string(), format % args)


class CannedMetricsServer:
    """A scrape target on 127.0.0.1 serving `render()` as its /metrics page; tests change the samples live.

    `port` keeps the address of a stopped server, so `start()` after `stop()` brings the same target back.
    """

    def __init__(self, render: Callable[[], str], port: int = 0):
        self.render = render
        self.port = port
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> "CannedMetricsServer":
        render = self.render

        class Handler(_QuietHandler):
            def do_GET(self):
                if self.path.split("?")[0] != "/metrics":
                    self.send_error(404, "only /metrics is served")
                    return
                body = render().encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name=f"canned-metrics-{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
        self._server = None


class WebhookCapture:
    """Records every Alertmanager webhook notification, by URL path (one path per receiver)."""

    def __init__(self):
        self.notifications: list[tuple[str, dict]] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> "WebhookCapture":
        capture = self

        class Handler(_QuietHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length", "0"))
                payload = json.loads(self.rfile.read(length) or b"{}")
                with capture._lock:
                    capture.notifications.append((self.path, payload))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, name="webhook-capture", daemon=True).start()
        return self

    def alerts(self, path: str) -> list[dict]:
        """Return every alert delivered to `path`, in delivery order."""
        with self._lock:
            return [alert for received, payload in self.notifications if received == path for alert in payload["alerts"]]

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


class _Process:
    """A child process on 127.0.0.1 with its log in `workdir`, stopped by terminate, then kill."""

    name = "process"

    def __init__(self, binary: str, workdir: Path):
        self.binary = binary
        self.workdir = workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / f"{self.name}.log"
        self.process: subprocess.Popen | None = None

    def arguments(self) -> list[str]:
        raise NotImplementedError

    def start(self, timeout: float = 30.0):
        log = open(self.log_path, "wb")
        self.process = subprocess.Popen([self.binary, *self.arguments()], stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir)
        log.close()
        self._wait_ready(timeout)
        return self

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                if requests.get(f"{self.url}/-/ready", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} on {self.url} did not become ready; log:\n{self.log_tail()}")

    def log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:] if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)


class AlertmanagerProcess(_Process):
    """Alertmanager with clustering off and its own storage folder."""

    name = "alertmanager"

    def __init__(self, binary: str, workdir: Path, config_path: Path):
        super().__init__(binary, workdir)
        self.config_path = config_path

    def arguments(self) -> list[str]:
        return [
            f"--config.file={self.config_path}",
            f"--storage.path={self.workdir / 'alertmanager-data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--cluster.listen-address=",
        ]

    def post_alerts(self, alerts: list[dict]) -> None:
        response = requests.post(f"{self.url}/api/v2/alerts", json=alerts, timeout=10)
        assert response.status_code == 200, response.text

    def alerts(self) -> list[dict]:
        response = requests.get(f"{self.url}/api/v2/alerts", timeout=10)
        response.raise_for_status()
        return response.json()


class PrometheusProcess(_Process):
    """Prometheus with its own TSDB folder, started from a configuration file written by the test."""

    name = "prometheus"

    def __init__(self, binary: str, workdir: Path, config_path: Path):
        super().__init__(binary, workdir)
        self.config_path = config_path

    def arguments(self) -> list[str]:
        return [
            f"--config.file={self.config_path}",
            f"--storage.tsdb.path={self.workdir / 'prometheus-data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            # Alerts evaluated before the notifier has discovered the Alertmanager are dropped and resent only
            # after this delay (1m by default), so every first notification would wait a minute.
            "--rules.alert.resend-delay=1s",
        ]

    def alerts(self) -> list[dict]:
        """Return the pending and firing alerts of /api/v1/alerts."""
        response = requests.get(f"{self.url}/api/v1/alerts", timeout=10)
        response.raise_for_status()
        return response.json()["data"]["alerts"]

    def query(self, expr: str) -> list[dict]:
        response = requests.post(f"{self.url}/api/v1/query", data={"query": expr}, timeout=10)
        document = response.json()
        if document.get("status") != "success":
            raise RuntimeError(f"query {expr!r} failed: {document.get('error')}")
        return document["data"]["result"]
