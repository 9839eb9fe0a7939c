"""Helpers of the reliability and security scenarios: platform processes, a Tradovate peer process, waits, reports."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import REPO_ROOT, PlatformServer

TRADOVATE_USER = "jt-demo"
TRADOVATE_PASSWORD = "demo-password"
TRADOVATE_ACCOUNT_ID = 26029294
FRONT_ROOTS = ("NQ", "ES", "MNQ", "GC")
PRICES = {"NQ": ("0.25", "21500.25"), "ES": ("0.25", "6120.50"), "MNQ": ("0.25", "21500.25"), "GC": ("0.1", "2945.3")}


def wait_until(predicate, timeout: float, message: str, interval: float = 0.1):
    """Poll predicate until it returns a truthy value; fail the test with `message` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"{message}: not reached within {timeout:g}s", pytrace=False)
        time.sleep(interval)


def report_result(scenario: str, **figures) -> None:
    """Print a scenario's figures, and append them as a JSON line to $JT_RELIABILITY_REPORT when it is set.

    docs/reliability.md quotes these figures; run with `-s` to see them, or set the variable to collect them.
    """
    line = {"scenario": scenario, "at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), **figures}
    print(f"\nRESULT {json.dumps(line, default=str)}")
    target = os.environ.get("JT_RELIABILITY_REPORT")
    if target:
        with open(target, "a", encoding="utf-8") as report:
            report.write(json.dumps(line, default=str) + "\n")


def front_contracts(now: dt.datetime | None = None) -> dict[str, str]:
    """Return {root: front contract} as the platform resolves the continuous tickers today (NQ -> NQZ6)."""
    from justtrades.markets.symbols import resolve_symbol

    now = now or dt.datetime.now(dt.timezone.utc)
    return {root: resolve_symbol(f"{root}1!", now).symbol for root in FRONT_ROOTS}


def metric_samples(text: str) -> dict[tuple[str, tuple], float]:
    """Parse a Prometheus exposition into {(sample name, sorted labels): value}."""
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


# --- the Tradovate peer as a process ----------------------------------------------------------------------------


class TradovatePeerProcess:
    """tests.reliability.tradovate_peer_process in a subprocess, steered through its /_peer/ control endpoints."""

    def __init__(self, workdir: Path, latency_ms: float = 0):
        self.workdir = workdir
        self.latency_ms = latency_ms
        self.order_log = workdir / "tradovate-orders.jsonl"
        self.contracts = front_contracts()
        self.process: subprocess.Popen | None = None
        self.url = ""
        self.port = 0

    def start(self, port: int = 0) -> "TradovatePeerProcess":
        arguments = [sys.executable, "-m", "tests.reliability.tradovate_peer_process", "--port", str(port),
                     "--latency-ms", str(self.latency_ms), "--order-log", str(self.order_log), "--max-seconds", "1800"]
        for index, (root, symbol) in enumerate(sorted(self.contracts.items())):
            tick, price = PRICES[root]
            arguments += ["--contract", f"{symbol}={4001 + index}:{tick}:{price}"]

        self.process = subprocess.Popen(
            arguments, cwd=REPO_ROOT, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
            stdout=subprocess.PIPE, stderr=open(self.workdir / "tradovate-peer.log", "ab"), text=True,
        )
        line = self.process.stdout.readline().strip()  # bounded: the peer prints at once or exits
        if not line.startswith("http://127.0.0.1:"):
            self.stop()
            raise RuntimeError(f"the Tradovate peer printed {line!r} instead of its URL")
        self.url = line
        self.port = int(line.split(":")[2].split("/")[0])
        return self

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)

    @property
    def control_url(self) -> str:
        return self.url.rsplit("/v1", 1)[0] + "/_peer"

    def inject(self, path: str, kind: str, times: int = 1, **fields) -> None:
        response = requests.post(f"{self.control_url}/faults", json={"path": path, "kind": kind, "times": times, **fields},
                                 timeout=10)
        assert response.status_code == 200, response.text

    def request_counts(self) -> dict[str, int]:
        return requests.get(f"{self.control_url}/requests", timeout=10).json()["requests"]

    def logged_orders(self) -> list[dict]:
        if not self.order_log.exists():
            return []
        return [json.loads(line) for line in self.order_log.read_text().splitlines() if line.strip()]

    def write_credentials(self, path: Path) -> Path:
        path.write_text(yaml.safe_dump({"main": {
            "name": TRADOVATE_USER, "password": TRADOVATE_PASSWORD, "app_id": "JustTradesReliability",
            "cid": 4242, "sec": "reliability-api-secret-0d1e", "device_id": "reliability-tests",
        }}))
        path.chmod(0o600)
        return path


def tradovate_seed(path: Path, accounts: int, recorder_token: str, *, quantity: int = 1) -> Path:
    """Write a seed with `accounts` Tradovate accounts (one broker account, one token group) on one recorder.

    Every account row is its own worker lane, so jobs for different rows run in parallel against the peer.
    """
    document = {
        "accounts": [
            {"name": f"Tradovate {index}", "broker": "tradovate", "environment": "demo",
             "broker_account_id": TRADOVATE_ACCOUNT_ID, "token_group": "main"}
            for index in range(1, accounts + 1)
        ],
        "recorders": [{"name": "RELIABILITY", "webhook_token": recorder_token, "strategy": "reliability scenarios"}],
        "traders": [
            {"recorder": "RELIABILITY", "account": f"Tradovate {index}", "quantity": quantity}
            for index in range(1, accounts + 1)
        ],
    }
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


# --- platform processes -----------------------------------------------------------------------------------------


def platform_process(workdir: Path, *, database_url: str | None = None, seed: Path | None = None,
                     env: dict | None = None) -> PlatformServer:
    """A `justtrades serve` process (not started) whose data directory, spool and log are under workdir."""
    overrides = {"JT_DATA_DIR": str(workdir), "JT_FEEDS_ENABLED": "false", **(env or {})}
    if database_url:
        overrides["DATABASE_URL"] = database_url
    kwargs = {"seed": seed} if seed is not None else {}
    server = PlatformServer(workdir, overrides, **kwargs)
    if database_url:
        server.database_url = database_url
    return server


def kill_platform(server: PlatformServer) -> None:
    """SIGKILL the platform process, as the kernel's OOM killer or a lost host would."""
    server.process.kill()
    server.process.wait(timeout=10)


def restart_platform(server: PlatformServer, timeout: float = 30) -> PlatformServer:
    """Start a new process on the same database and data directory, logging to a new file.

    The seed runs again, which changes nothing because seeding is idempotent.
    """
    runs = len(list(server.workdir.glob("platform*.log")))
    server.log_path = server.workdir / f"platform-{runs + 1}.log"
    return server.start(timeout)


def platform_logs(server: PlatformServer) -> str:
    """Return every log file the platform processes of this server wrote (stderr: app log and access log)."""
    return "\n".join(path.read_text(errors="replace") for path in sorted(server.workdir.glob("platform*.log")))
