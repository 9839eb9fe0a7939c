"""The `justtrades-exporter` console script serving over HTTP, started and stopped as a container would."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import pytest
import requests


@pytest.fixture
def exporter_process(fake_platform, tmp_path):
    key_file = tmp_path / "api-key"
    key_file.write_text("test-admin-key-0123456789\n")
    script = os.path.join(os.path.dirname(sys.executable), "justtrades-exporter")
    environment = {key: value for key, value in os.environ.items() if not key.startswith("JT_EXPORTER_")}
    environment["JT_EXPORTER_API_KEY_FILE"] = str(key_file)

    process = subprocess.Popen(
        [script, "--platform-url", fake_platform.url, "--listen-address", "127.0.0.1", "--port", "0"],
        env=environment,
        stderr=subprocess.PIPE,
        text=True,
    )
    yield process
    if process.poll() is None:
        process.kill()
    process.wait(timeout=10)
    process.stderr.close()


def wait_for_port(process: subprocess.Popen, timeout_seconds: float = 30) -> int:
    """Read the log until the exporter names its port."""
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        if not line:
            break
        match = re.search(r"serving metrics of \S+ on http://127\.0\.0\.1:(\d+)/metrics", line)
        if match:
            return int(match.group(1))
    raise AssertionError(f"the exporter did not report its port; exit code {process.poll()}")


def test_serve_answers_and_stops_on_sigterm(exporter_process):
    port = wait_for_port(exporter_process)

    response = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
    assert response.status_code == 200
    assert "justtrades_up 1.0" in response.text
    assert "justtrades_broker_workers_alive 10.0" in response.text

    exporter_process.send_signal(signal.SIGTERM)
    assert exporter_process.wait(timeout=10) == 0
    remaining_log = exporter_process.stderr.read()
    assert "stopped serving" in remaining_log
    assert "test-admin-key" not in remaining_log
