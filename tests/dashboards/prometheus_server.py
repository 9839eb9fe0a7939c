"""A real Prometheus (/usr/bin/prometheus) on 127.0.0.1 with a temporary storage folder, for tests."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

import requests
import yaml

PROMETHEUS_BINARY = "/usr/bin/prometheus"


def prometheus_binary() -> str | None:
    """Return the path of the prometheus binary, or None when it is not installed."""
    if Path(PROMETHEUS_BINARY).exists():
        return PROMETHEUS_BINARY
    return shutil.which("prometheus")


def free_port() -> int:
    # Prometheus cannot report a port it picked itself, so the OS picks one here and the socket is released
    # just before Prometheus binds it.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class PrometheusServer:
    """Prometheus scraping `targets` (job name -> host:port) every second, with optional rule files.

    `slow_jobs` maps a job name to a longer scrape interval (also its scrape timeout), for producers whose
    scrape takes longer than a second.
    """

    def __init__(self, binary: str, workdir: Path, targets: dict[str, str], rules: list[dict] | None = None,
                 slow_jobs: dict[str, str] | None = None):
        self.binary = binary
        self.workdir = workdir
        self.targets = targets
        self.rules = rules or []
        self.slow_jobs = slow_jobs or {}
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / "prometheus.log"
        self.process: subprocess.Popen | None = None

    def write_config(self) -> Path:
        rule_path = self.workdir / "rules.yml"
        rule_path.write_text(yaml.safe_dump({"groups": self.rules}), encoding="utf-8")

        config = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(rule_path)],
            "scrape_configs": [self._scrape_config(job, address) for job, address in self.targets.items()],
        }
        config_path = self.workdir / "prometheus.yml"
        config_path.write_text(yaml.safe_dump(config), encoding="utf-8")
        return config_path

    def _scrape_config(self, job: str, address: str) -> dict:
        config = {"job_name": job, "static_configs": [{"targets": [address]}]}
        if job in self.slow_jobs:
            config["scrape_interval"] = config["scrape_timeout"] = self.slow_jobs[job]
        return config

    def start(self, timeout: float = 30.0) -> "PrometheusServer":
        config_path = self.write_config()
        log = open(self.log_path, "wb")
        self.process = subprocess.Popen(
            [
                self.binary,
                f"--config.file={config_path}",
                f"--storage.tsdb.path={self.workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
            ],
            stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir,
        )
        self._wait_ready(timeout)
        return self

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            try:
                if requests.get(f"{self.url}/-/ready", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"Prometheus on {self.url} did not become ready; log:\n{self.log_tail()}")

    def log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:] if self.log_path.exists() else ""

    def api(self, path: str, **params) -> dict:
        """Call the HTTP API and return the JSON document (status "success" or "error")."""
        response = requests.post(f"{self.url}/api/v1/{path}", data=params, timeout=10)
        return response.json()

    def instant(self, query: str) -> list[dict]:
        document = self.api("query", query=query)
        if document.get("status") != "success":
            raise RuntimeError(f"query {query!r} failed: {document.get('error')}")
        return document["data"]["result"]

    def wait_for(self, query, timeout: float, description: str) -> None:
        """Wait until the instant query returns a series; `query` is a string or a function returning one."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = query() if callable(query) else query
            if self.instant(text):
                return
            time.sleep(0.5)
        raise RuntimeError(f"timed out after {timeout} s waiting for {description} ({text}); Prometheus log:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)
