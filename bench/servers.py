"""Start the platform and the bare baseline app as separate processes on 127.0.0.1, on OS-picked ports."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests
import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
BENCH_API_KEY = "bench-admin-key-0123456789"
HTTP_THREADS = 16  # the default of `justtrades serve`; the bare app gets the same
_LISTENING = re.compile(r"listening on (http://\S+)")


class ServerProcess:
    """A server subprocess that prints "... listening on http://HOST:PORT" on stdout once it accepts requests."""

    def __init__(self, name: str, argv: list[str], env: dict, workdir: Path, health_path: str = "/health",
                 url_pattern: re.Pattern = _LISTENING, url_in_log: bool = False, health_timeout: float = 2.0):
        self.name = name
        self.health_timeout = health_timeout
        self.url_pattern = url_pattern
        self.url_in_log = url_in_log
        self.argv = argv
        self.env = env
        self.workdir = workdir
        self.health_path = health_path
        self.log_path = workdir / f"{name}.log"
        self.process: subprocess.Popen | None = None
        self.url = ""

    @property
    def pid(self) -> int:
        return self.process.pid

    def start(self, timeout: float = 60.0) -> "ServerProcess":
        log = open(self.log_path, "wb")
        self.process = subprocess.Popen(
            self.argv, env=self.env, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL
        )
        self.url = self._read_url(timeout)
        self._wait_healthy(timeout)
        return self

    def _read_url(self, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.url_in_log:
                match = self.url_pattern.search(self.log_tail(100_000))
                if match:
                    return match.group(1)
                if self.process.poll() is not None:
                    break
                time.sleep(0.1)
                continue
            line = self.process.stdout.readline().decode(errors="replace")
            match = self.url_pattern.search(line)
            if match:
                return match.group(1)
            if not line and self.process.poll() is not None:
                break
        self.stop()
        raise RuntimeError(f"{self.name} did not start; the end of {self.log_path}:\n{self.log_tail()}")

    def _wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if requests.get(self.url + self.health_path, timeout=self.health_timeout).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{self.name} at {self.url} did not return HTTP 200 on {self.health_path} within {timeout:.0f} s; see {self.log_path}")

    def log_tail(self, characters: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-characters:]
        except OSError:
            return ""

    def rss_bytes(self) -> int:
        """Resident set size of the server process, from /proc (Linux)."""
        with open(f"/proc/{self.pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        raise RuntimeError(f"no VmRSS line for pid {self.pid}")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)

    def __enter__(self) -> "ServerProcess":
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()


# Every outside service the platform would reach by default points at a closed loopback port or is switched
# off, so a benchmark sends nothing beyond 127.0.0.1 (signal_to_order points the REST URL at its stub).
_CLOSED_PORT = "http://127.0.0.1:9"
LOOPBACK_ONLY = {
    "JT_TRADINGVIEW_ENABLED": "false",
    "JT_TRADINGVIEW_WS_URL": "ws://127.0.0.1:9/socket.io/websocket",
    "JT_TRADINGVIEW_POLL_URL": _CLOSED_PORT + "/futures/scan",
    "JT_TRADINGVIEW_JWT_REFRESH_URL": _CLOSED_PORT + "/chart/",
    "JT_POSITION_MONITOR_ENABLED": "false",
    "JT_TRADOVATE_WS_URL": "ws://127.0.0.1:9/v1/websocket",
    "JT_TRADOVATE_URL": _CLOSED_PORT + "/v1",
    "JT_TRADOVATE_LIVE_URL": _CLOSED_PORT + "/v1",
    "JT_WHOP_API_URL": _CLOSED_PORT + "/api/v1",
    "JT_WHOP_API_KEY": "",
    "JT_SMTP_HOST": "",
}


def platform_env(database_url: str, extra: dict | None = None) -> dict:
    return {
        **os.environ,
        **LOOPBACK_ONLY,
        "DATABASE_URL": database_url,
        "JT_ADMIN_API_KEY": BENCH_API_KEY,
        "JT_SECRET_KEY": "bench-secret",
        "PYTHONUNBUFFERED": "1",
        **(extra or {}),
    }


def seed_platform(database_url: str, seed: dict, workdir: Path, env_extra: dict | None = None) -> None:
    """Write the seed data to a YAML file and load it with `justtrades seed` (which also migrates)."""
    path = workdir / "seed.yaml"
    path.write_text(yaml.safe_dump(seed, sort_keys=False), encoding="utf-8")
    subprocess.run(
        [sys.executable, "-m", "justtrades.cli", "seed", str(path)],
        env=platform_env(database_url, env_extra), cwd=REPO_ROOT, check=True, capture_output=True, timeout=300,
    )


def start_platform(database_url: str, workdir: Path, env_extra: dict | None = None,
                   threads: int = HTTP_THREADS) -> ServerProcess:
    argv = [sys.executable, "-m", "justtrades.cli", "serve", "--host", "127.0.0.1", "--port", "0",
            "--threads", str(threads)]
    return ServerProcess("platform", argv, platform_env(database_url, env_extra), workdir).start()


def start_bare(workdir: Path, threads: int = HTTP_THREADS, exposition: Path | None = None) -> ServerProcess:
    """Start bench.bare_app; with an exposition file its /metrics serves the same series as that file."""
    argv = [sys.executable, "-m", "bench.bare_app", "--port", "0", "--threads", str(threads)]
    if exposition is not None:
        argv += ["--exposition", str(exposition)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return ServerProcess("bare", argv, env, workdir).start()


def start_tradovate_stub(workdir: Path, accounts: int, latency_ms: float) -> ServerProcess:
    """Start bench.tradovate_stub; its REST API is at url + "/v1"."""
    argv = [sys.executable, "-m", "bench.tradovate_stub", "--accounts", str(accounts), "--latency-ms", str(latency_ms)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return ServerProcess("tradovate-stub", argv, env, workdir, health_path="/_peer/requests").start()


def start_exporter(platform_url: str, workdir: Path) -> ServerProcess:
    """Start `justtrades-exporter serve` against the platform; it logs its /metrics URL on stderr."""
    key_file = workdir / "exporter-api-key"
    key_file.write_text(BENCH_API_KEY, encoding="utf-8")
    key_file.chmod(0o600)
    argv = [sys.executable, "-m", "justtrades_exporter", "serve", "--platform-url", platform_url,
            "--listen-address", "127.0.0.1", "--port", "0", "--api-key-file", str(key_file)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    pattern = re.compile(r"on (http://127\.0\.0\.1:\d+)/metrics")
    # The exporter has no cheaper page than /metrics, and one scrape polls every endpoint of the platform.
    return ServerProcess("exporter", argv, env, workdir, health_path="/metrics", url_pattern=pattern,
                         url_in_log=True, health_timeout=60.0).start(timeout=180.0)


def broker_queue_size(platform_url: str) -> int:
    """Return the platform's jobs that are queued or running, from /api/broker-queue/stats."""
    return requests.get(platform_url + "/api/broker-queue/stats", timeout=10).json()["queue_size"]


def wait_for_empty_queue(platform_url: str, timeout: float, interval: float = 0.2) -> float | None:
    """Return the seconds until the platform's job queue was empty, or None when it was not within timeout."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if broker_queue_size(platform_url) == 0:
            return time.monotonic() - started
        time.sleep(interval)
    return None


@contextlib.contextmanager
def work_folder(name: str, keep: bool):
    """Create a run's temporary folder for databases and server logs, and remove it afterwards unless `keep`."""
    workdir = Path(tempfile.mkdtemp(prefix=f"jt-bench-{name}-"))
    try:
        yield workdir
    finally:
        if keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def add_keep_argument(parser) -> None:
    parser.add_argument("--keep", action="store_true", help="keep the work folder with the server logs")


def add_database_argument(parser) -> None:
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite", help="default sqlite")
